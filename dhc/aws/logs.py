"""CloudWatch Logs: the client, a group and stream created when missing, events batched within the
service's limits. The one place dhc talks to CloudWatch Logs (boto3 lives in ``dhc.aws`` only).

What the real service does (PutLogEvents, JSON protocol, target ``Logs_20140328.<Operation>``):

- a batch holds at most 10,000 events and 1,048,576 bytes, counting each event's UTF-8 message
  plus 26 bytes; one event at most 256 KiB; events in a batch in chronological order, spanning at
  most 24 hours;
- ``CreateLogGroup`` / ``CreateLogStream`` answer 400 ``ResourceAlreadyExistsException`` when the
  name exists (not an error here); a missing group or stream on PutLogEvents is
  ``ResourceNotFoundException``;
- throttling answers 400 ``ThrottlingException`` and stored nothing, so a retry never duplicates;
  botocore's standard retry mode retries it and 5xx with backoff;
- events too old (14 days) or too far ahead (2 hours) are not an error: the answer's
  ``rejectedLogEventsInfo`` names them.

Every failure leaves as ``LogsError`` naming the group / stream and the service's code and message
(or the connection error), never a botocore exception.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dhc.errors import DhcError

MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26  # bytes CloudWatch counts per event on top of its message
MAX_EVENT_BYTES = 262_144 - EVENT_OVERHEAD
MAX_SPAN_MS = 24 * 3600 * 1000  # the events of one batch span at most 24 hours


class LogsError(DhcError):
    """CloudWatch Logs could not take the events; the message says where and why."""


def hyperpod_group(cluster_name: str | None, cluster_id: str | None) -> str:
    """The log group HyperPod writes its cluster's logs to: ``/aws/sagemaker/Clusters/<name>/<id>``."""
    return f"/aws/sagemaker/Clusters/{cluster_name or 'unknown-cluster'}/{cluster_id or 'unknown-cluster-id'}"


def message(record: dict[str, Any]) -> str:
    """One JSON record as an event's message; an oversized one is cut and says so, never dropped."""
    text = json.dumps(record, separators=(",", ":"))
    encoded = text.encode()
    if len(encoded) > MAX_EVENT_BYTES:
        text = encoded[: MAX_EVENT_BYTES - 20].decode(errors="ignore") + "...[truncated]"
    return text


def batches(events: Iterable[tuple[int, str]]) -> Iterator[list[dict[str, Any]]]:
    """PutLogEvents batches of (timestamp ms, message), sorted by time, within the count, size and span limits."""
    batch: list[dict[str, Any]] = []
    size = 0
    for timestamp, text in sorted(events, key=lambda e: e[0]):
        cost = len(text.encode()) + EVENT_OVERHEAD
        full = len(batch) == MAX_BATCH_EVENTS or size + cost > MAX_BATCH_BYTES
        if batch and (full or timestamp - batch[0]["timestamp"] > MAX_SPAN_MS):
            yield batch
            batch, size = [], 0
        batch.append({"timestamp": timestamp, "message": text})
        size += cost
    if batch:
        yield batch


class LogStream:
    """One group and stream; created (when missing) at the first put that reaches the service, and
    again after the service said it is gone. ``region`` None: boto3's own chain (env, config file);
    none there is a LogsError at construction, never a guess."""

    def __init__(self, group: str, stream: str, region: str | None, timeout_s: float = 10.0, attempts: int = 5,
                 endpoint_url: str | None = None):
        self.group, self.stream, self.ready = group, stream, False
        config = Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                        retries={"max_attempts": attempts, "mode": "standard"})
        try:
            session = boto3.session.Session()
            region = region or session.region_name
            if not region:
                raise LogsError(f"CloudWatch Logs {group} / {stream}: no AWS region (set AWS_REGION or DHC_REGION, "
                                "or name one in the AWS config file)")
            self.client = session.client("logs", region_name=region, endpoint_url=endpoint_url, config=config)
        except (BotoCoreError, ValueError) as exc:
            raise LogsError(f"CloudWatch Logs {group} / {stream}: {exc}") from None

    def put(self, events: Iterable[tuple[int, str]]) -> int:
        """Send ``events``; returns how many the service took, or raises LogsError."""
        try:
            if not self.ready:
                _ensure(self.client.create_log_group, logGroupName=self.group)
                _ensure(self.client.create_log_stream, logGroupName=self.group, logStreamName=self.stream)
                self.ready = True
            taken = 0
            for batch in batches(events):
                answer = self.client.put_log_events(logGroupName=self.group, logStreamName=self.stream,
                                                    logEvents=batch)
                taken += len(batch) - _rejected(answer.get("rejectedLogEventsInfo") or {}, len(batch))
            return taken
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and _code(exc) == "ResourceNotFoundException":
                self.ready = False  # deleted meanwhile: created again at the next put
            raise LogsError(f"CloudWatch Logs {self.group} / {self.stream}: {exc}") from None


def _rejected(info: dict[str, int], count: int) -> int:
    """Events of a batch the service did not store. AWS calls the old/expired index the last one
    rejected (moto answers so); the count stays within the batch whichever way a service reads it."""
    too_new = info.get("tooNewLogEventStartIndex")
    too_old = info.get("tooOldLogEventEndIndex")
    expired = info.get("expiredLogEventEndIndex")
    rejected = {i for i in range(count) if too_new is not None and i >= too_new}
    for end in (too_old, expired):
        rejected |= set(range(min(end + 1, count))) if end is not None else set()
    return len(rejected)


def _code(exc: ClientError) -> str:
    return str((exc.response.get("Error") or {}).get("Code", ""))


def _ensure(create: Any, **names: str) -> None:
    try:
        create(**names)
    except ClientError as exc:
        if _code(exc) != "ResourceAlreadyExistsException":
            raise
