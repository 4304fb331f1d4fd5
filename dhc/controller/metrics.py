"""The controller's Prometheus metrics: the one module that imports ``prometheus_client``.

Served over HTTP on ``dhc controller --metrics-port`` (``/metrics``). Everything is read from the
controller's ``snapshot()`` at scrape time, so a scrape shows the cache as it is, never a copy
that drifted:

- ``dhc_nodes{check_status}`` and ``dhc_nodes_health{health}``: nodes by dhc's two labels;
- ``dhc_nodes_cannot_judge``: nodes dhc would check but cannot judge (no profile fits them), kept
  out of service with the reason; alert on it above 0;
- ``dhc_jobs_started_total{stage}``, ``dhc_verdicts_written_total{status}`` and
  ``dhc_unearned_labels_total`` (Passed labels without dhc's record of a check that earned them):
  counts since the controller started;
- ``dhc_controller_errors_total{kind}``: API errors met while reconciling a node: ``permanent`` ones
  (403, 401, 400, an invalid 422: reported in a Warning Event on the node and not retried until it
  changes; alert on any increase) and ``temporary`` ones (5xx, 429, timeouts: retried with backoff);
- ``dhc_remediations_total{action,outcome}``: remediation steps by action (Reboot, Replace) and
  outcome (dry-run, acted, unconfirmed, failed, stuck, refused, held, recovered, failed-again);
- ``dhc_remediation_breaker_tripped``: 1 while the circuit breaker waits for a person (alert on it);
- ``dhc_remediation_recovery_seconds``: a histogram of the time from detection to Schedulable again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from dhc.controller.loop import Snapshot
from dhc.model.choices import STAGES as VERDICT_STAGES

STATUSES = ("InProgress", "Passed", "Failed", "Incomplete")  # always shown, 0 included, so alerts have a series
HEALTH = ("Schedulable", "Unschedulable", "UnschedulablePendingReboot", "UnschedulablePendingReplacement")
STAGES = (*VERDICT_STAGES, "connectivity")  # a connectivity group's Job hands over a verdict too
VERDICTS = ("Passed", "Failed")
ERRORS = ("permanent", "temporary")
RECOVERY_BUCKETS = (300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0)


class ControllerCollector:
    """A custom collector: builds every family from one snapshot per scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        yield _gauge("dhc_nodes", "Nodes by dhc's deep-health-check-status label", "check_status",
                     snap.check_status, STATUSES)
        yield _gauge("dhc_nodes_health", "Nodes by dhc's node-health-status label", "health", snap.health, HEALTH)
        yield GaugeMetricFamily("dhc_nodes_cannot_judge", "Nodes dhc would check but cannot judge (no profile in "
                                "thresholds.yaml fits them): kept out of service", value=snap.unjudged)
        yield _counter("dhc_jobs_started", "Check Jobs the controller created, by stage", "stage", snap.tally, "jobs",
                       STAGES)
        yield _counter("dhc_verdicts_written", "Verdicts the controller wrote onto nodes, by status", "status",
                       snap.tally, "verdicts", VERDICTS)
        unearned = CounterMetricFamily("dhc_unearned_labels", "Passed labels found without dhc's record of a check "
                                       "that earned them (then checked)", value=snap.tally.get(("unearned", ""), 0))
        yield unearned
        yield _counter("dhc_controller_errors", "API errors met reconciling nodes: permanent (reported, not retried "
                       "until the node changes) or temporary (retried with backoff)", "kind", snap.tally, "errors", ERRORS)
        yield from _remediation(snap)


def _remediation(snap: Snapshot) -> Iterator[Metric]:
    family = CounterMetricFamily("dhc_remediations", "Remediation steps by action and outcome",
                                 labels=["action", "outcome"])
    for (what, kind), count in sorted(snap.tally.items()):
        if what == "remediations":
            family.add_metric(kind.split("/", 1), count)
    yield family
    yield GaugeMetricFamily("dhc_remediation_breaker_tripped", "1 while the remediation circuit breaker is "
                            "tripped and waits for a person to reset it", value=int(snap.breaker_tripped))
    buckets = [(f"{edge:g}", sum(1 for s in snap.recoveries if s <= edge)) for edge in RECOVERY_BUCKETS]
    yield HistogramMetricFamily("dhc_remediation_recovery_seconds", "Seconds from a node's detection to "
                                "Schedulable again after remediation", buckets=[*buckets, ("+Inf", len(snap.recoveries))],
                                sum_value=sum(snap.recoveries))


def _gauge(name: str, doc: str, label: str, counts: Any, always: tuple[str, ...]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value in sorted(set(always) | set(counts)):
        family.add_metric([value], counts.get(value, 0))
    return family


def _counter(name: str, doc: str, label: str, tally: dict[tuple[str, str], int], what: str,
             always: tuple[str, ...]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    kinds = set(always) | {kind for (w, kind) in tally if w == what}
    for kind in sorted(kinds):
        family.add_metric([kind], tally.get((what, kind), 0))
    return family


def serve(snapshot: Callable[[], Snapshot], port: int, address: str = "0.0.0.0",
          extra: tuple[Any, ...] = ()) -> tuple[Any, Any]:
    """Serve ``/metrics`` on ``address:port`` in a daemon thread (port 0: any free port, for tests).
    ``extra``: more collectors on the same registry (job auto-resume's, dhc.resume.metrics).

    Returns (server, thread); ``server.server_port`` is the port bound, ``server.shutdown()`` stops it.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControllerCollector(snapshot))
    for collector in extra:
        registry.register(collector)
    return start_http_server(port, address, registry)
