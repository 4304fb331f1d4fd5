"""The verdict model: devices, limits, measurements, check results and the node verdict.

Pure data and pure rules (DESIGN.md, Verdict model); no I/O. Everything here round-trips through
plain JSON-able dicts (``dhc.model.codec``) so results can travel between pytest-xdist workers, the
journal and reports; the whole report is typed in ``dhc.model.report``. A field's ``schema`` metadata
is what ``dhc.report.schema`` adds to the JSON schema it generates from these types.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from dhc import units
from dhc.model.choices import SUITES
from dhc.model.codec import Coded, non_finite

__all__ = ["Action", "CheckResult", "Comparison", "Device", "Finding", "Judgement", "Limit", "Measurement",
           "NodeVerdict", "PlannedCheck", "Status", "node_verdict", "non_finite", "schema"]

CHECK_ID = {"$ref": "#/$defs/check_id"}
TIMESTAMP = {"$ref": "#/$defs/timestamp"}
SUITE = {"enum": list(SUITES.values())}


_REQUIRED = object()


def schema(default: Any = _REQUIRED, **keywords: Any) -> Any:
    """A dataclass field whose JSON schema gets ``keywords``. With a ``default`` the key may be absent from a
    document, unless ``required=True`` (dhc always writes it); ``non_finite=True``: see ``dhc.model.codec``."""
    required = keywords.pop("required") if isinstance(keywords.get("required"), bool) else False
    meta = {"non_finite": keywords.pop("non_finite", False), "required": required, "schema": keywords}
    return field(metadata=meta) if default is _REQUIRED else field(default=default, metadata=meta)


class Status(enum.StrEnum):
    PASSED = "Passed"
    FAILED = "Failed"
    INCOMPLETE = "Incomplete"
    SKIPPED = "Skipped"


class Action(enum.StrEnum):
    """What an operator should do with the node, in rising severity."""

    NONE = "None"
    REBOOT = "Reboot"
    REPLACE = "Replace"

    @property
    def severity(self) -> int:
        return list(Action).index(self)


class Comparison(enum.StrEnum):
    MIN = "min"  # measured value must be >= limit
    MAX = "max"  # measured value must be <= limit
    EQUALS = "equals"

    @property
    def words(self) -> str:
        return {"min": "minimum", "max": "maximum", "equals": "exactly"}[self.value]


@dataclass(frozen=True)
class Device:
    kind: str = schema(enum=["gpu", "cpu", "node"])  # (the agent also names "nvswitch", never in a report)
    index: int = schema(0, minimum=0)
    name: str | None = None
    uuid: str | None = None
    serial: str | None = None
    pci_bus_id: str | None = None

    def label(self, ids: bool = True) -> str:
        """The one device label: ``GPU 3 (GPU-uuid, serial X, PCI Y)``; ``ids=False``: ``GPU 3``, ``cpu``."""
        if self.kind != "gpu":
            return self.kind if self.index == 0 else f"{self.kind} {self.index}"
        extra = ", ".join(x for x in (self.uuid, self.serial and f"serial {self.serial}",
                                       self.pci_bus_id and f"PCI {self.pci_bus_id}") if x and ids)
        return f"GPU {self.index}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class Limit:
    comparison: Comparison
    value: float | None = schema(minimum=0, description="null while awaiting calibration")
    unit: str
    source: str = schema(minLength=1)
    action: Action = schema(Action.REPLACE, required=True)

    @property
    def calibrated(self) -> bool:
        return self.value is not None

    def admits(self, value: float, unit: str) -> bool:
        """Whether ``value`` is within the limit; NaN and infinities never are (outside any limit)."""
        assert self.value is not None, "an uncalibrated limit judges nothing"
        measured = units.convert(value, unit, self.unit)
        if not math.isfinite(measured):
            return False
        if self.comparison is Comparison.MIN:
            return measured >= self.value
        if self.comparison is Comparison.MAX:
            return measured <= self.value
        return measured == self.value

    def describe(self) -> str:
        if not self.calibrated:
            return f"uncalibrated ({self.unit})"
        return f"{self.comparison.words} {_num(self.value)} {self.unit}"


class Judgement(enum.StrEnum):
    WITHIN = "within"
    OUTSIDE = "outside"
    UNCALIBRATED = "uncalibrated"
    UNLIMITED = "unlimited"  # recorded for information; no limit applies


@dataclass(frozen=True)
class Measurement:
    JSON_COMPUTED: ClassVar[tuple[str, ...]] = ("judgement",)
    JSON_SCHEMA: ClassVar[dict[str, Any]] = {"allOf": [
        {"if": {"properties": {"value": {"type": "null"}}}, "then": {"required": ["non_finite"]}},
        {"if": {"required": ["non_finite"]},
         "then": {"properties": {"value": {"type": "null"}, "judgement": {"enum": ["outside", "unlimited"]}}}}]}

    check: str = schema(**CHECK_ID)
    name: str
    value: float = schema(non_finite=True, description="null only when non_finite says what was measured")
    unit: str
    device: Device | None = schema(None, required=True)
    limit: Limit | None = schema(None, required=True)

    @property
    def judgement(self) -> Judgement:
        if self.limit is None:
            return Judgement.UNLIMITED
        if not math.isfinite(self.value):  # a NaN throughput is a broken device, whatever the limit
            return Judgement.OUTSIDE
        if not self.limit.calibrated:
            return Judgement.UNCALIBRATED
        return Judgement.WITHIN if self.limit.admits(self.value, self.unit) else Judgement.OUTSIDE

    def describe(self) -> str:
        where = f" on {self.device.label()}" if self.device else ""
        limit = f", expected {self.limit.describe()}" if self.limit else ""
        return f"{self.check} {self.name}{where}: measured {_num(self.value)} {self.unit}{limit}"


@dataclass(frozen=True)
class Finding:
    """One reason behind a check's status: a limit missed, a fault seen, or why it could not decide."""

    check: str
    status: Status
    message: str = schema(minLength=1)
    action: Action = schema(Action.NONE, required=True)
    device: Device | None = None
    metric: str | None = None
    value: float | None = schema(None, non_finite=True)
    limit: float | None = None
    unit: str | None = None
    comparison: Comparison | None = None

    @classmethod
    def from_measurement(cls, m: Measurement) -> Finding:
        assert m.limit is not None and (m.limit.calibrated or not math.isfinite(m.value))
        value = units.convert(m.value, m.unit, m.limit.unit)  # value and limit in one unit
        return cls(m.check, Status.FAILED, m.describe(), m.limit.action, m.device, m.name,
                   value, m.limit.value, m.limit.unit, m.limit.comparison)


@dataclass(frozen=True)
class CheckResult(Coded):
    JSON_COMPUTED: ClassVar[tuple[str, ...]] = ("action",)
    JSON_SCHEMA: ClassVar[dict[str, Any]] = {"allOf": [
        {"if": {"properties": {"status": {"const": "Failed"}}}, "then": {"properties": {"findings": {"minItems": 1}}}},
        {"if": {"properties": {"status": {"enum": ["Incomplete", "Skipped"]}}},
         "then": {"properties": {"reason": {"minLength": 1}}}}]}

    check: str = schema(**CHECK_ID)
    suite: str = schema(**SUITE)
    status: Status
    reason: str = schema("", required=True)
    devices: tuple[Device, ...] = schema((), required=True)
    measurements: tuple[Measurement, ...] = schema((), required=True)
    findings: tuple[Finding, ...] = schema((), required=True)
    started_at: str | None = schema(None, required=True, **TIMESTAMP)
    duration_s: float = schema(0.0, required=True, minimum=0)
    nodeid: str | None = schema(None, required=True)

    @property
    def action(self) -> Action:
        return max((f.action for f in self.findings), key=lambda a: a.severity, default=Action.NONE)


@dataclass(frozen=True)
class PlannedCheck(Coded):
    """A check pytest collected and is expected to report on."""

    nodeid: str
    check: str
    suite: str
    expected_s: float
    timeout_s: float


@dataclass(frozen=True)
class NodeVerdict(Coded):
    JSON_COMPUTED: ClassVar[tuple[str, ...]] = ("exit_code",)
    JSON_SCHEMA: ClassVar[dict[str, Any]] = {"properties": {"exit_code": {"enum": [0, 1, 3]}}, "allOf": [
        {"if": {"properties": {"status": {"const": "Passed"}}},
         "then": {"properties": {"reasons": {"maxItems": 0}, "exit_code": {"const": 0}}}},
        {"if": {"properties": {"status": {"const": "Failed"}}},
         "then": {"properties": {"reasons": {"minItems": 1}, "exit_code": {"const": 1}}}},
        {"if": {"properties": {"status": {"const": "Incomplete"}}},
         "then": {"properties": {"reasons": {"minItems": 1}, "exit_code": {"const": 3}}}}]}

    status: Status = schema(enum=["Passed", "Failed", "Incomplete"])
    action: Action
    reasons: tuple[Finding, ...] = schema((), required=True)

    @property
    def exit_code(self) -> int:
        return {Status.PASSED: 0, Status.FAILED: 1}.get(self.status, 3)


def node_verdict(results: list[CheckResult], ended_by: str | None = None) -> NodeVerdict:
    """Passed only when every planned check ran and passed; Failed wins over Incomplete.

    ``ended_by`` says why a run stopped early; such a run is never Passed, and the reason leads.
    """
    verdict = _judge(results)
    if ended_by is None:
        return verdict
    stop = Finding("run", Status.INCOMPLETE, f"run ended early: {ended_by}")
    if verdict.status is Status.FAILED:
        return replace(verdict, reasons=(*verdict.reasons, stop))
    checks = tuple(r for r in verdict.reasons if r.check != "run")  # "no checks ran" says less
    return NodeVerdict(Status.INCOMPLETE, Action.NONE, (stop, *checks))


def _judge(results: list[CheckResult]) -> NodeVerdict:
    if not results:
        return NodeVerdict(Status.INCOMPLETE, Action.NONE,
                           (Finding("run", Status.INCOMPLETE, "no checks ran"),))
    failed = [r for r in results if r.status is Status.FAILED]
    incomplete = [r for r in results if r.status is Status.INCOMPLETE]
    reasons = tuple(f for r in failed + incomplete for f in _findings_or_reason(r))
    action = max((r.action for r in failed), key=lambda a: a.severity, default=Action.NONE)
    if failed:
        return NodeVerdict(Status.FAILED, action, reasons)
    if incomplete:
        return NodeVerdict(Status.INCOMPLETE, Action.NONE, reasons)
    if all(r.status is Status.SKIPPED for r in results):
        return NodeVerdict(Status.INCOMPLETE, Action.NONE, (Finding(
            "run", Status.INCOMPLETE, "every selected check was skipped: nothing was verified"),))
    return NodeVerdict(Status.PASSED, Action.NONE)


def _findings_or_reason(result: CheckResult) -> tuple[Finding, ...]:
    if result.findings:
        return result.findings
    return (Finding(result.check, result.status, result.reason or result.status.value),)


def _num(value: float | None) -> str:
    return "?" if value is None else f"{value:.6g}"
