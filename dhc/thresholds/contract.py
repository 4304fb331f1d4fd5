"""The shape of a check's contract: what one catalogue entry declares, and the rules it must keep.

A ``CheckSpec`` says, in one place, everything about a check that is not a number: the metrics it
judges (quantity, comparison, action), the metrics it only reports, the settings it reads from its
profile in thresholds.yaml, how its timeout splits across the sub-runs that follow each other, and
the faults the self-test plants in it with what each must be caught as. The numbers themselves
live in thresholds.yaml. A spec that breaks a rule (shares summing over the whole timeout, a fault
without an expectation) is refused when it is built, naming the check and what is wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from dhc.model import Action, Comparison, Status


@dataclass(frozen=True)
class MetricSpec:
    quantity: str
    comparison: Comparison
    action: Action
    description: str


@dataclass(frozen=True)
class SubRun:
    """One of several runs that follow each other inside one check's timeout."""

    name: str
    share: float  # of the check's timeout_s
    what: str
    room_s: float = 0.0  # seconds kept free after it (to stop it and report), never more than half the timeout


@dataclass(frozen=True)
class Budget:
    """A sub-run's seconds, and how a failure of it reads: the detail first, then the sub-run and its seconds."""

    check: str
    subrun: str
    seconds: float
    of_s: float

    def reason(self, detail: object) -> str:
        return f"{detail} (sub-run {self.subrun}: {self.seconds:g} s of {self.check}'s {self.of_s:g} s timeout)"


def split_timeout(check: str, timeout_s: float, subruns: tuple[SubRun, ...]) -> dict[str, Budget]:
    """Each sub-run's seconds: its share of ``timeout_s``, rounded down to the millisecond, so that
    the sub-runs together never take longer than the check may."""
    return {run.name: Budget(check, run.name, math.floor(_seconds(run, timeout_s) * 1000) / 1000, timeout_s)
            for run in subruns}


def _seconds(run: SubRun, timeout_s: float) -> float:
    return min(timeout_s * run.share, timeout_s - min(run.room_s, timeout_s / 2))


@dataclass(frozen=True)
class Caught:
    """What a planted fault must be caught as: the node verdict's status and action, and words its
    finding on the planted device says."""

    status: Status
    action: Action
    words: str


@dataclass(frozen=True)
class PlantedFault:
    """A fault the self-test plants at an engine's seam on device ``device`` (None: the node as a
    whole). ``seam`` is the field of the engine's injection object that is set to the device (or
    rank), or the object's name where the whole object is planted on that device."""

    name: str
    planted: str
    seam: str
    device: int | None
    caught_as: Caught | None
    multi_node: bool = False  # planted in one node of a group: the self-test of one node cannot plant it
    strength: dict[str, float] = field(default_factory=dict)  # the engine's injection fields besides the seam

    def describe(self) -> str:
        """``planted`` with its strength filled in (``{slow_factor}`` -> ``4``)."""
        return self.planted.format(**{k: f"{v:g}" for k, v in self.strength.items()})


@dataclass(frozen=True)
class CheckSpec:
    id: str
    description: str
    metrics: dict[str, MetricSpec]
    settings: dict[str, type] = field(default_factory=dict)  # per-profile keys and their types
    defaults: dict[str, float] = field(default_factory=dict)  # a setting's value where no profile gives one
    info: tuple[str, ...] = ()  # informational metrics (fnmatch patterns): recorded for people, never judged
    timeout_split: dict[str, tuple[SubRun, ...]] = field(default_factory=dict)  # per engine: its sub-runs
    faults: tuple[PlantedFault, ...] = ()

    def __post_init__(self) -> None:
        problems = contract_problems(self)
        if problems:
            raise ValueError(f"catalogue entry {self.id}: " + "; ".join(problems))

    def declares(self, metric: str) -> bool:
        """Whether the check may record ``metric``: a judged metric, or one of its informational patterns."""
        return metric in self.metrics or any(fnmatchcase(metric, pattern) for pattern in self.info)

    def budgets(self, engine: str, timeout_s: float) -> dict[str, Budget]:
        return split_timeout(self.id, timeout_s, self.timeout_split[engine])

    def setting_keypaths(self, setting: str) -> tuple[str, ...]:
        """Where a setting's value lives in thresholds.yaml: each profile, and an instance type's override."""
        return (f"profiles/<quick|full>/{self.id}/{setting}",
                f"instance_types/<type>/profiles/<quick|full>/{self.id}/{setting}")

    def fault(self, name: str | None) -> PlantedFault | None:
        return next((f for f in self.faults if f.name == name), None)


def contract_problems(spec: CheckSpec) -> list[str]:
    """What is wrong with one entry, in words; empty when it keeps every rule."""
    problems = []
    for engine, runs in spec.timeout_split.items():
        if math.fsum(r.share for r in runs) > 1 or any(r.share <= 0 for r in runs):
            problems.append(f"the sub-runs of {engine} must take shares > 0 that sum to at most 1 of its timeout")
        if len({r.name for r in runs}) != len(runs):
            problems.append(f"the sub-runs of {engine} need distinct names")
    problems += [f"default for undeclared setting {name!r}" for name in sorted(set(spec.defaults) - set(spec.settings))]
    for fault in spec.faults:
        problems += [f"planted fault {fault.name}: {p}" for p in _fault_problems(fault)]
    return problems


def _fault_problems(fault: PlantedFault) -> list[str]:
    caught = fault.caught_as
    if caught is None:
        return ["no expectation of what it must be caught as (status, action, words)"]
    problems = []
    if caught.status is not Status.FAILED:
        problems.append(f"it must make the check Failed, not {caught.status.value}")
    if caught.action is Action.NONE:
        problems.append("it must ask for an action (Reboot or Replace)")
    if not caught.words.strip():
        problems.append("no words its finding must say")
    try:
        fault.describe()
    except (KeyError, IndexError, ValueError) as exc:
        problems.append(f"its text names {exc} but its strength does not give it")
    return problems
