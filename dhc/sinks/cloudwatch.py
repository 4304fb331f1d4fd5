"""CloudWatch Logs sink: the verdict's JSON log lines into the log group HyperPod users know.

Group ``/aws/sagemaker/Clusters/<cluster_name>/<cluster_id>`` (configurable), stream
``DeepHealthCheckResults/<instance_id>``, both created when missing. Events are batched within the
service's limits; throttling and server errors are retried with backoff (botocore's standard
retries). The local report is written before this runs, so a failing sink never loses it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26  # bytes CloudWatch counts per event on top of its message
MAX_EVENT_BYTES = 262_144 - EVENT_OVERHEAD


class SinkError(Exception):
    """The sink could not deliver; the message says where and why."""


@dataclass(frozen=True)
class Destination:
    group: str
    stream: str
    region: str | None


def destination(document: dict[str, Any], cluster_name: str | None, cluster_id: str | None,
                group: str | None = None) -> Destination:
    instance = document["instance"]
    name = cluster_name or instance["cluster"]["value"] or "unknown-cluster"
    group = group or f"/aws/sagemaker/Clusters/{name}/{cluster_id or 'unknown-cluster-id'}"
    return Destination(group, f"DeepHealthCheckResults/{instance['instance_id']['value']}",
                       instance["region"]["value"])


def batches(lines: list[dict[str, Any]], now_ms: int) -> Iterator[list[dict[str, Any]]]:
    """PutLogEvents batches within the count and size limits; an oversized line is cut, never dropped."""
    batch: list[dict[str, Any]] = []
    size = 0
    for line in lines:
        message = json.dumps(line, separators=(",", ":"))
        encoded = message.encode()
        if len(encoded) > MAX_EVENT_BYTES:
            message = encoded[: MAX_EVENT_BYTES - 20].decode(errors="ignore") + "...[truncated]"
        cost = len(message.encode()) + EVENT_OVERHEAD
        if batch and (len(batch) == MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append({"timestamp": now_ms, "message": message})
        size += cost
    if batch:
        yield batch


def send(lines: list[dict[str, Any]], where: Destination, timeout_s: float = 10.0, attempts: int = 5) -> int:
    """Deliver ``lines``; returns the number of events sent or raises SinkError."""
    config = Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                    retries={"max_attempts": attempts, "mode": "standard"})
    try:
        logs = boto3.client("logs", region_name=where.region or "us-east-1", config=config)
        _ensure(logs.create_log_group, logGroupName=where.group)
        _ensure(logs.create_log_stream, logGroupName=where.group, logStreamName=where.stream)
        sent = 0
        for batch in batches(lines, int(time.time() * 1000)):
            logs.put_log_events(logGroupName=where.group, logStreamName=where.stream, logEvents=batch)
            sent += len(batch)
        return sent
    except (ClientError, BotoCoreError) as exc:
        raise SinkError(f"CloudWatch Logs {where.group} / {where.stream}: {exc}") from None


def _ensure(create: Any, **names: str) -> None:
    try:
        create(**names)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
            raise
