"""Job auto-resume's Prometheus metrics, built at scrape time from the resumer's snapshot.

Registered beside the node controller's collector on ``dhc controller --metrics-port``, or served
alone by ``dhc resume --metrics-port`` (``serve``); the one module of dhc.resume that imports
``prometheus_client``:

- ``dhc_jobs_resumed_total``: restarts dhc made after a node fault;
- ``dhc_jobs_resume_waiting``: interrupted jobs waiting for enough Schedulable nodes now;
- ``dhc_jobs_resume_given_up_total``: jobs left stopped (retry limit reached, own retries spent,
  or no capacity within the wait timeout);
- ``dhc_jobs_resume_seconds``: a histogram of the time from the interruption to every pod Running again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

BUCKETS = (30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 3600.0)


class Recoveries:
    """The histogram's counts as they grow: bounded however many jobs recover (no list of every time kept)."""

    def __init__(self) -> None:
        self.counts, self.total, self.count = [0] * len(BUCKETS), 0.0, 0

    def add(self, seconds: float) -> None:
        self.counts = [n + (seconds <= edge) for n, edge in zip(self.counts, BUCKETS, strict=True)]
        self.total, self.count = self.total + seconds, self.count + 1

    def snapshot(self) -> dict[str, Any]:
        return {"buckets": list(self.counts), "sum": self.total, "count": self.count}


class ResumeCollector:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        tally = snap["tally"]
        yield CounterMetricFamily("dhc_jobs_resumed", "Jobs dhc restarted after a node fault",
                                  value=tally.get("resumed", 0))
        yield GaugeMetricFamily("dhc_jobs_resume_waiting", "Interrupted jobs waiting for enough Schedulable nodes",
                                value=snap["waiting"])
        yield CounterMetricFamily("dhc_jobs_resume_given_up", "Jobs dhc stopped resuming (retry limit, own retries "
                                  "spent, or no capacity within the wait timeout)", value=tally.get("given-up", 0))
        seen = snap["recoveries"]
        buckets = [(f"{edge:g}", count) for edge, count in zip(BUCKETS, seen["buckets"], strict=True)]
        yield HistogramMetricFamily("dhc_jobs_resume_seconds", "Seconds from a job's interruption by a node fault "
                                    "to all its pods Running again", buckets=[*buckets, ("+Inf", seen["count"])],
                                    sum_value=seen["sum"])


def serve(snapshot: Callable[[], dict[str, Any]], port: int, address: str = "0.0.0.0") -> tuple[Any, Any]:
    """Serve ``/metrics`` for ``dhc resume`` alone, in a daemon thread; (server, thread)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ResumeCollector(snapshot))
    return start_http_server(port, address, registry)
