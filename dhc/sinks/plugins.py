"""The sinks as plugins of ``pytest_dhc_verdict``: the run folder's log lines, CloudWatch Logs, the node, and
the check pod's termination message, registered by ``sink_plugins`` from the run configuration.

Each one reports what it did with ``say``; a sink that fails says so and returns, so the report and the
other sinks stand (an unexpected exception too: ``_Sink``). Clients (boto3, kubernetes) are imported
only by the sink that needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dhc.report.folder import LOG_NAME
from dhc.runconfig import RunConfig
from dhc.settings import Settings
from dhc.sinks.hooks import hookimpl
from dhc.sinks.logline import summary_line, verdict_lines, write_lines

Say = Callable[[str], None]


def sink_plugins(run_config: RunConfig) -> list[tuple[str, object]]:
    """(name, plugin) for every sink of the run: the log file always, then the ones asked for, in order."""
    chosen = {"cloudwatch": CloudWatchSink, "kubernetes": NodeSink, "termination": TerminationSink}
    return [("dhc-sink-log", LogFileSink()), *((f"dhc-sink-{n}", chosen[n]()) for n in run_config.sinks)]


class _Sink:
    """One sink: ``deliver`` does its work; the hook around it keeps a sink's bug from costing the report."""

    name = ""

    @hookimpl
    def pytest_dhc_verdict(self, report: dict[str, Any], run_config: RunConfig, say: Say) -> None:
        try:
            self.deliver(report, run_config, say)
        except Exception as exc:  # a sink's bug must not cost the report or the other sinks
            say(f"sink {self.name} failed unexpectedly, the local report is intact: {type(exc).__name__}: {exc}")

    def deliver(self, report: dict[str, Any], run_config: RunConfig, say: Say) -> None:
        raise NotImplementedError


class LogFileSink(_Sink):
    """One JSON line per reason (failure or undecided check) appended to ``dhc.log.jsonl`` in the run folder."""

    name = "log"

    def deliver(self, report: dict[str, Any], run_config: RunConfig, say: Say) -> None:
        path = Path(run_config.out) / LOG_NAME
        try:
            write_lines(verdict_lines(report), None, path)
        except OSError as exc:
            say(f"cannot write {path}: {exc.strerror or exc}; the report stands")


class CloudWatchSink(_Sink):
    name = "cloudwatch"

    def deliver(self, report: dict[str, Any], run_config: RunConfig, say: Say) -> None:
        from dhc.sinks import cloudwatch  # boto3 only when asked for

        settings = Settings.from_env()
        where = cloudwatch.destination(report, settings.cluster, settings.cluster_id, run_config.log_group)
        try:
            sent = cloudwatch.send([*verdict_lines(report), summary_line(report)], where)
        except cloudwatch.SinkError as exc:
            say(f"sink failed, the local report is intact: {exc}")
            return
        say(f"sent {sent} log event(s) to CloudWatch Logs {where.group} / {where.stream}")


class NodeSink(_Sink):
    """This node's verdict onto its Kubernetes Node (``NODE_NAME``, the downward API's spec.nodeName)."""

    name = "kubernetes"

    def deliver(self, report: dict[str, Any], run_config: RunConfig, say: Say) -> None:
        from dhc.sinks import node  # the kubernetes client only when asked for

        settings = Settings.from_env()
        if not settings.node_name:
            say("sink kubernetes needs NODE_NAME (the downward API's spec.nodeName)")
            return
        try:
            state = node.write_verdict(node.Kube(), settings.node_name, report, settings.k8s_prefix,
                                       run_config.stage == "final")
        except node.K8sError as exc:
            say(f"sink kubernetes failed, the local report is intact: {exc}")
            return
        say(f"node {settings.node_name} marked {state.check_status} / {state.health}")


class TerminationSink(_Sink):
    """The controller's check pods: the verdict rides on the pod's status (``dhc.sinks.termination``)."""

    name = "termination"

    def deliver(self, report: dict[str, Any], run_config: RunConfig, say: Say) -> None:
        from dhc.sinks import termination

        termination.hand_over(report, run_config.stage, Settings.from_env().termination_log, say)
