"""The sinks as plugins of ``pytest_dhc_verdict``: the run folder's log lines, CloudWatch Logs, the node, and
the check pod's termination message, registered by ``sink_plugins`` from the run configuration.

Each one reports what it did with ``say``; a sink that fails says so and returns, so the report and the
other sinks stand (an unexpected exception too: ``_guarded``). Clients (boto3, kubernetes) are imported
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


def _guarded(name: str, say: Say, deliver: Callable[[], None]) -> None:
    try:
        deliver()
    except Exception as exc:  # a sink's bug must not cost the report or the other sinks
        say(f"sink {name} failed unexpectedly, the local report is intact: {type(exc).__name__}: {exc}")


class LogFileSink:
    """One JSON line per reason (failure or undecided check) appended to ``dhc.log.jsonl`` in the run folder."""

    @hookimpl
    def pytest_dhc_verdict(self, report: dict[str, Any], run_config: RunConfig, say: Say) -> None:
        _guarded("log", say, lambda: self._write(report, Path(run_config.out) / LOG_NAME, say))

    @staticmethod
    def _write(report: dict[str, Any], path: Path, say: Say) -> None:
        try:
            write_lines(verdict_lines(report), None, path)
        except OSError as exc:
            say(f"cannot write {path}: {exc.strerror or exc}; the report stands")


class CloudWatchSink:
    @hookimpl
    def pytest_dhc_verdict(self, report: dict[str, Any], run_config: RunConfig, say: Say) -> None:
        _guarded("cloudwatch", say, lambda: self._send(report, run_config.log_group, say))

    @staticmethod
    def _send(report: dict[str, Any], log_group: str | None, say: Say) -> None:
        from dhc.sinks import cloudwatch  # boto3 only when asked for

        settings = Settings.from_env()
        where = cloudwatch.destination(report, settings.cluster, settings.cluster_id, log_group)
        try:
            sent = cloudwatch.send([*verdict_lines(report), summary_line(report)], where)
        except cloudwatch.SinkError as exc:
            say(f"sink failed, the local report is intact: {exc}")
            return
        say(f"sent {sent} log event(s) to CloudWatch Logs {where.group} / {where.stream}")


class NodeSink:
    """This node's verdict onto its Kubernetes Node (``NODE_NAME``, the downward API's spec.nodeName)."""

    @hookimpl
    def pytest_dhc_verdict(self, report: dict[str, Any], run_config: RunConfig, say: Say) -> None:
        _guarded("kubernetes", say, lambda: self._mark(report, run_config.stage == "final", say))

    @staticmethod
    def _mark(report: dict[str, Any], final: bool, say: Say) -> None:
        from dhc.sinks import node  # the kubernetes client only when asked for

        settings = Settings.from_env()
        if not settings.node_name:
            say("sink kubernetes needs NODE_NAME (the downward API's spec.nodeName)")
            return
        try:
            state = node.write_verdict(node.Kube(), settings.node_name, report, settings.k8s_prefix, final)
        except node.K8sError as exc:
            say(f"sink kubernetes failed, the local report is intact: {exc}")
            return
        say(f"node {settings.node_name} marked {state.check_status} / {state.health}")


class TerminationSink:
    """The controller's check pods: the verdict rides on the pod's status (``dhc.sinks.termination``)."""

    @hookimpl
    def pytest_dhc_verdict(self, report: dict[str, Any], run_config: RunConfig, say: Say) -> None:
        _guarded("termination", say, lambda: self._hand_over(report, run_config.stage, say))

    @staticmethod
    def _hand_over(report: dict[str, Any], stage: str, say: Say) -> None:
        from dhc.sinks import termination

        termination.hand_over(report, stage, Settings.from_env().termination_log, say)
