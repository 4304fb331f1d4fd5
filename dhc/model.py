"""The verdict model: devices, limits, measurements, check results and the node verdict.

Pure data and pure rules (DESIGN.md, Verdict model); no I/O. Everything here round-trips through
plain JSON-able dicts so results can travel between pytest-xdist workers, the journal and reports.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from dhc import units


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
    kind: str  # "gpu" | "cpu" | "node"
    index: int = 0
    name: str | None = None
    uuid: str | None = None
    serial: str | None = None
    pci_bus_id: str | None = None

    def label(self) -> str:
        if self.kind != "gpu":
            return self.kind if self.index == 0 else f"{self.kind} {self.index}"
        extra = ", ".join(x for x in (self.uuid, self.serial and f"serial {self.serial}",
                                       self.pci_bus_id and f"PCI {self.pci_bus_id}") if x)
        return f"GPU {self.index}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class Limit:
    comparison: Comparison
    value: float | None  # None only while the limit awaits calibration
    unit: str
    source: str
    action: Action = Action.REPLACE

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
    check: str
    name: str
    value: float
    unit: str
    device: Device | None = None
    limit: Limit | None = None

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
    message: str
    action: Action = Action.NONE
    device: Device | None = None
    metric: str | None = None
    value: float | None = None
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
class CheckResult:
    check: str
    suite: str
    status: Status
    reason: str = ""
    devices: tuple[Device, ...] = ()
    measurements: tuple[Measurement, ...] = ()
    findings: tuple[Finding, ...] = ()
    started_at: str | None = None
    duration_s: float = 0.0
    nodeid: str | None = None

    @property
    def action(self) -> Action:
        return max((f.action for f in self.findings), key=lambda a: a.severity, default=Action.NONE)

    def to_dict(self) -> dict[str, Any]:
        out = _to_jsonable(self) | {"action": self.action.value}
        for row, m in zip(out["measurements"], self.measurements, strict=True):
            row["judgement"] = m.judgement.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return CheckResult(
            check=data["check"], suite=data["suite"], status=Status(data["status"]),
            reason=data.get("reason", ""),
            devices=tuple(_device(d) for d in data.get("devices", ())),
            measurements=tuple(_measurement(m) for m in data.get("measurements", ())),
            findings=tuple(_finding(f) for f in data.get("findings", ())),
            started_at=data.get("started_at"), duration_s=data.get("duration_s", 0.0),
            nodeid=data.get("nodeid"),
        )


@dataclass(frozen=True)
class PlannedCheck:
    """A check pytest collected and is expected to report on."""

    nodeid: str
    check: str
    suite: str
    expected_s: float
    timeout_s: float

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)


@dataclass(frozen=True)
class NodeVerdict:
    status: Status
    action: Action
    reasons: tuple[Finding, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        return {Status.PASSED: 0, Status.FAILED: 1}.get(self.status, 3)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "action": self.action.value,
                "exit_code": self.exit_code, "reasons": [_to_jsonable(r) for r in self.reasons]}


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


def non_finite(value: float | None) -> str | None:
    """``"nan"``, ``"inf"`` or ``"-inf"`` for a value JSON cannot hold, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return None


def _to_jsonable(obj: Any) -> Any:
    """Plain JSON types. A non-finite ``value`` (JSON has no NaN) becomes ``null`` plus ``non_finite``."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(x) for x in obj]
    if hasattr(obj, "__dataclass_fields__"):
        out = {f.name: _to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
        odd = non_finite(out.get("value"))
        if odd:
            out["value"], out["non_finite"] = None, odd
        return out
    return obj


def _value(d: dict[str, Any]) -> Any:
    """The value a dict holds, NaN or an infinity again where ``non_finite`` says so."""
    odd = d.get("non_finite")
    return float(odd) if odd in ("nan", "inf", "-inf") else d.get("value")


def _device(d: dict[str, Any] | None) -> Device | None:
    return None if d is None else Device(**d)


def _limit(d: dict[str, Any] | None) -> Limit | None:
    if d is None:
        return None
    return Limit(Comparison(d["comparison"]), d["value"], d["unit"], d["source"], Action(d["action"]))


def _measurement(d: dict[str, Any]) -> Measurement:
    return Measurement(d["check"], d["name"], _value(d), d["unit"], _device(d.get("device")),
                       _limit(d.get("limit")))


def _finding(d: dict[str, Any]) -> Finding:
    cmp = d.get("comparison")
    return replace(Finding(d["check"], Status(d["status"]), d["message"], Action(d["action"])),
                   device=_device(d.get("device")), metric=d.get("metric"), value=_value(d),
                   limit=d.get("limit"), unit=d.get("unit"), comparison=Comparison(cmp) if cmp else None)
