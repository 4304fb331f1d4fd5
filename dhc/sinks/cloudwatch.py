"""CloudWatch Logs sink of the deep check: the verdict's JSON log lines into the log group HyperPod users know.

Group ``/aws/sagemaker/Clusters/<cluster_name>/<cluster_id>`` (configurable), stream
``DeepHealthCheckResults/<instance_id>``, both created when missing. The client, batching within the
service's limits and retries of throttling live in ``dhc.aws.logs`` (boto3 stays under ``dhc.aws``).
The local report is written before this runs, so a failing sink never loses it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dhc.aws import logs
from dhc.aws.logs import EVENT_OVERHEAD, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES
from dhc.aws.logs import LogsError as SinkError
from dhc.model.report import Report

__all__ = ["EVENT_OVERHEAD", "MAX_BATCH_BYTES", "MAX_BATCH_EVENTS", "MAX_EVENT_BYTES", "Destination", "SinkError",
           "batches", "destination", "send"]


@dataclass(frozen=True)
class Destination:
    group: str
    stream: str
    region: str | None


def destination(report: Report, cluster_name: str | None, cluster_id: str | None,
                group: str | None = None) -> Destination:
    instance = report.instance
    group = group or logs.hyperpod_group(cluster_name or instance.cluster.value, cluster_id)
    return Destination(group, f"DeepHealthCheckResults/{instance.instance_id.value}", instance.region.value)


def batches(lines: list[dict[str, Any]], now_ms: int) -> Iterator[list[dict[str, Any]]]:
    """PutLogEvents batches within the count and size limits; an oversized line is cut, never dropped."""
    return logs.batches((now_ms, logs.message(line)) for line in lines)


def send(lines: list[dict[str, Any]], where: Destination, timeout_s: float = 10.0, attempts: int = 5) -> int:
    """Deliver ``lines``; returns the number of events sent or raises SinkError."""
    stream = logs.LogStream(where.group, where.stream, where.region or "us-east-1", timeout_s, attempts)
    return stream.put([(int(time.time() * 1000), logs.message(line)) for line in lines])
