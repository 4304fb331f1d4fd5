"""The fields of a report.json (schema 1.x) that the fleet review reads, as msgspec types.

Declarative: a field without a default must be present, ``X | None`` may be null. Fields not named
here (devices, environment, findings, limit sources, ...) are skipped by the decoder without being
built. A report these types refuse is read again by the plain json path (``dhc.fleet.read``).
"""

from __future__ import annotations

import msgspec


class Value(msgspec.Struct, gc=False):
    value: str | None


class Instance(msgspec.Struct, gc=False):
    instance_id: Value
    region: Value
    node_name: Value


class Thresholds(msgspec.Struct, gc=False):
    instance_type: str


class Run(msgspec.Struct, gc=False):
    profile: str
    started_at: str
    duration_s: float | None


class Device(msgspec.Struct, gc=False, frozen=True):  # frozen: hashable, a dict key as it is
    kind: str
    index: int = 0  # the model's default


class Limit(msgspec.Struct, gc=False, frozen=True):
    comparison: str
    value: float | None
    unit: str | None


class Measurement(msgspec.Struct, gc=False):
    check: str
    name: str
    value: float  # null (a NaN or infinity, spelled in non_finite) takes the json path
    unit: str
    device: Device | None
    limit: Limit | None
    judgement: str
    non_finite: str | None = None


class Check(msgspec.Struct, gc=False):
    check: str
    status: str
    reason: str
    measurements: list[Measurement]


class Reason(msgspec.Struct, gc=False):
    message: str


class Verdict(msgspec.Struct, gc=False):
    status: str
    action: str
    reasons: list[Reason]


class Report(msgspec.Struct, gc=False):
    schema_version: str
    instance: Instance
    thresholds: Thresholds
    run: Run
    checks: list[Check]
    verdict: Verdict
