"""The measurement recorder a check receives as the ``dhc_check`` fixture.

A check records numbers (judged against the limits of its check id) and faults that are not
numbers (a corrupted result, an XID). The check asks it for its own contract: its id, its
catalogue entry, its settings and limits under the active profile, the budgets of its sub-runs,
and the fault the self-test plants in it (if any). When the check body returns, ``conclude`` turns what was
recorded into the check's outcome: any miss is a HardwareFault, an uncalibrated limit is
CheckIncomplete, and a check that recorded nothing at all cannot pass. A NaN or infinite value
(or an integer too large for a float) is outside any limit: the check is Failed on that device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dhc import units
from dhc.errors import CheckIncomplete, HardwareFault
from dhc.model import Action, Device, Finding, Judgement, Measurement, Status
from dhc.thresholds import CATALOGUE, CheckSpec, InstanceLimits
from dhc.thresholds.catalogue import Budget, PlantedFault
from dhc.thresholds.document import CheckConfig, Timing


@dataclass
class CheckRecorder:
    check: str
    limits: InstanceLimits
    planted: PlantedFault | None = None  # the fault the self-test plants in this check in this run
    measurements: list[Measurement] = field(default_factory=list)
    faults: list[Finding] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.check

    @property
    def spec(self) -> CheckSpec:
        """This check's catalogue entry: its whole contract."""
        return CATALOGUE[self.check]

    @property
    def timing(self) -> Timing:
        return self.limits.timing(self.check)

    @property
    def config(self) -> CheckConfig:
        """This check's limits and skip for this instance type."""
        return self.limits.check(self.check)

    @property
    def settings(self) -> dict[str, Any]:
        """This check's settings under the active profile (``duration_s``, ``level``, ...)."""
        return self.timing.settings

    def setting(self, name: str) -> Any:
        """One declared setting; a missing value is a named error saying where it belongs."""
        if name not in self.spec.settings:
            raise ValueError(f"{self.check} read setting {name!r}, which its catalogue entry does not declare")
        value = self.settings.get(name, self.spec.defaults.get(name))
        if value is None:
            raise CheckIncomplete(f"{self.check} needs setting {name!r} under profile {self.limits.profile}: set it "
                                  f"at {self.spec.setting_keypaths(name)[0]} in {self.limits.source_file}")
        return self.spec.settings[name](value)

    def budgets(self, engine: str) -> dict[str, Budget]:
        """The seconds of each sub-run of ``engine``, split from this check's timeout by its catalogue entry."""
        return self.spec.budgets(engine, self.timing.timeout_s)

    @property
    def instance_type(self) -> str:
        return self.limits.instance_type.name

    def covered(self, *devices: Device) -> None:
        for device in devices:
            if device not in self.devices:
                self.devices.append(device)

    def record(self, name: str, value: float, unit: str, device: Device | None = None) -> Measurement:
        if not CATALOGUE[self.check].declares(name):  # a typo would otherwise be a value no limit can fail
            raise ValueError(f"{self.check} recorded {name!r}, a metric its catalogue entry does not declare "
                             f"(judged: {', '.join(CATALOGUE[self.check].metrics) or 'none'})")
        limit = self.limits.check(self.check).limits.get(name)
        units.quantity_of(unit)  # an unknown unit is a bug in the check: let it surface
        if limit is not None and units.quantity_of(unit) != units.quantity_of(limit.unit):
            raise ValueError(f"{self.check} {name}: recorded in {unit}, but its limit is in {limit.unit}")
        measurement = Measurement(self.check, name, _as_float(value), unit, device, limit)
        self.measurements.append(measurement)
        if device is not None:
            self.covered(device)
        return measurement

    def fault(self, message: str, device: Device | None = None, action: Action | None = None) -> None:
        """Record a fault that is not a number outside a limit; the check will be Failed."""
        self.faults.append(Finding(self.check, Status.FAILED, message, action or self._default_action(),
                                   device))
        if device is not None:
            self.covered(device)

    def findings(self) -> list[Finding]:
        return [Finding.from_measurement(m) for m in self.measurements
                if m.judgement is Judgement.OUTSIDE] + self.faults

    def conclude(self) -> None:
        findings = self.findings()
        if findings:
            lines = "\n".join(f"  {f.message}" for f in findings)
            raise HardwareFault(f"{self.check} on {self.instance_type}: {len(findings)} fault(s)\n{lines}")
        uncalibrated = [m for m in self.measurements if m.judgement is Judgement.UNCALIBRATED]
        if uncalibrated:
            what = "; ".join(m.describe() for m in uncalibrated)
            raise CheckIncomplete(f"limit not calibrated for {self.instance_type} yet: {what}")
        if not self.measurements:
            raise CheckIncomplete(f"{self.check} recorded no measurement, so it cannot pass")

    def _default_action(self) -> Action:
        actions = [m.action for m in CATALOGUE[self.check].metrics.values()]
        return max(actions, key=lambda a: a.severity, default=Action.REPLACE)


def _as_float(value: float) -> float:
    """``value`` as a float; an integer too large for one is infinite (and so outside any limit)."""
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")
