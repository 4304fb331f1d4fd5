"""The sinks as plugins of ``pytest_dhc_verdict``: the run folder's log lines, CloudWatch Logs, the node, and
the check pod's termination message, registered by ``sink_plugins`` from the run configuration.

Each one reports what it did with ``say``; a sink that fails says so and returns, so the report and the
other sinks stand (an unexpected exception too: ``_Sink``). Each reads the typed ``Report`` and the
settings the run resolved once (``run_config.settings``), never the environment again. Clients (boto3,
kubernetes) are imported only by the sink that needs them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dhc.errors import DhcError, UsageError
from dhc.model.report import Report
from dhc.report.folder import LOG_NAME
from dhc.runconfig import RunConfig
from dhc.sinks.hooks import hookimpl
from dhc.sinks.logline import summary_line, verdict_lines, write_lines

Say = Callable[[str], None]


def sink_plugins(run_config: RunConfig) -> list[tuple[str, object]]:
    """(name, plugin) for every sink of the run: the log file always, then the ones asked for, in order."""
    chosen = {"cloudwatch": CloudWatchSink, "kubernetes": NodeSink, "termination": TerminationSink}
    return [("dhc-sink-log", LogFileSink()), *((f"dhc-sink-{n}", chosen[n]()) for n in run_config.sinks)]


class _Sink:
    """One sink: ``deliver`` does its work and returns what it did (None: nothing to say); the hook around it says that, or how the
    sink failed (and returns False: it is not journaled as delivered) (its own named error, or a bug), so a failing sink never costs the report or the other sinks."""

    name = ""

    @hookimpl
    def pytest_dhc_verdict(self, report: Report, run_config: RunConfig, say: Say) -> bool:
        try:
            done = self.deliver(report, run_config)
        except (DhcError, OSError) as exc:  # the sink's own failure (API, network, a file), named by it
            say(f"sink {self.name} failed, the local report is intact: {_failure(exc)}")
            return False
        except Exception as exc:  # a sink's bug must not cost the report or the other sinks
            say(f"sink {self.name} failed unexpectedly, the local report is intact: {type(exc).__name__}: {exc}")
            return False
        if done:
            say(done)
        return True

    def deliver(self, report: Report, run_config: RunConfig) -> str | None:
        raise NotImplementedError


def _failure(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot write {exc.filename}: {exc.strerror or exc}"
    return str(exc)


class LogFileSink(_Sink):
    """One JSON line per reason (failure or undecided check) appended to ``dhc.log.jsonl`` in the run folder."""

    name = "log"

    def deliver(self, report: Report, run_config: RunConfig) -> None:
        write_lines(verdict_lines(report), None, Path(run_config.out) / LOG_NAME)  # quiet: the run folder's own


class CloudWatchSink(_Sink):
    name = "cloudwatch"

    def deliver(self, report: Report, run_config: RunConfig) -> str:
        from dhc.sinks import cloudwatch  # boto3 only when asked for

        settings = run_config.settings
        where = cloudwatch.destination(report, settings.cluster, settings.cluster_id, run_config.log_group)
        sent = cloudwatch.send([*verdict_lines(report), summary_line(report)], where)
        return f"sent {sent} log event(s) to CloudWatch Logs {where.group} / {where.stream}"


class NodeSink(_Sink):
    """This node's verdict onto its Kubernetes Node (``NODE_NAME``, the downward API's spec.nodeName)."""

    name = "kubernetes"

    def deliver(self, report: Report, run_config: RunConfig) -> str:
        from dhc.sinks import node  # the kubernetes client only when asked for

        settings = run_config.settings
        if not settings.node_name:
            raise UsageError("it needs NODE_NAME (the downward API's spec.nodeName)")
        state = node.write_verdict(node.Kube(), settings.node_name, report, settings.k8s_prefix,
                                   run_config.stage == "final")
        return f"node {settings.node_name} marked {state.check_status} / {state.health}"


class TerminationSink(_Sink):
    """The controller's check pods: the verdict rides on the pod's status (``dhc.sinks.termination``)."""

    name = "termination"

    def deliver(self, report: Report, run_config: RunConfig) -> str:
        from dhc.sinks import termination

        path = run_config.settings.termination_log
        text = termination.write(report, run_config.stage, path)
        return (f"verdict {report.verdict.status} handed to the controller in {path} "
                f"({len(text.encode())} bytes)")
