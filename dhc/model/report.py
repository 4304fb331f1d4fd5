"""The typed report of one run (``report.json``, schema 1.x): what every reader of a report consumes.

The document on disk is ``Report.to_dict()``; readers (summary, log lines, node scheme, sinks, HTML,
self-test, fleet review) take ``Report.from_dict(document)`` and use attributes, never string paths.
``dhc.report.schema`` generates ``report-v1.schema.json`` from these types, so the schema cannot drift
from what is written. Building a report (from a plan, results and a run's configuration) is
``dhc.report``'s business; this module only holds its shape and the facts read from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from dhc.model import CHECK_ID, SUITE, TIMESTAMP, CheckResult, Device, Finding, Limit, NodeVerdict, Status, schema
from dhc.model.choices import PROFILES
from dhc.model.codec import Coded

SCHEMA_VERSION = "1.1"  # 1.1 added the optional non_finite field
PROFILE = {"enum": list(PROFILES)}


@dataclass(frozen=True)
class Selection:
    suites: tuple[str, ...] = schema((), required=True, items=SUITE)
    checks: tuple[str, ...] = schema((), required=True, items=CHECK_ID)


@dataclass(frozen=True)
class Run:
    run_id: str = schema(minLength=1)
    started_at: str = schema(**TIMESTAMP)
    finished_at: str = schema(**TIMESTAMP)
    duration_s: float = schema(minimum=0)
    profile: str = schema(**PROFILE)
    selection: Selection
    argv: tuple[str, ...]
    ended_by: str | None = schema(description="null when the run finished by itself")
    inject: str | None = schema(None, description="a fault planted on purpose by the self-test")

    @classmethod
    def started(cls, run_id: str, started_at: str, profile: str, suites: tuple[str, ...] = (),
                checks: tuple[str, ...] = (), argv: tuple[str, ...] = (), inject: str | None = None) -> Run:
        """A run as it starts (who asked for what, when); ``ended`` says when and how it finished."""
        return cls(run_id, started_at, started_at, 0.0, profile, Selection(tuple(suites), tuple(checks)), tuple(argv),
                   None, inject)

    def ended(self, finished_at: str, ended_by: str | None) -> Run:
        """This run, finished at ``finished_at``; ``ended_by``: why it stopped early (None: by itself)."""
        seconds = (_instant(finished_at) - _instant(self.started_at)).total_seconds()
        return replace(self, finished_at=finished_at, duration_s=round(max(seconds, 0.0), 3), ended_by=ended_by)


def _instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Sourced:
    """A fact about the instance and where it was learnt (a flag, the environment, EC2 metadata)."""

    value: str | None
    source: str = schema(minLength=1)


@dataclass(frozen=True)
class Instance:
    instance_id: Sourced
    instance_type: Sourced
    node_name: Sourced
    region: Sourced
    availability_zone: Sourced
    cluster: Sourced
    notes: tuple[str, ...]


@dataclass(frozen=True)
class CheckLimits:
    """One check's limits and timing as resolved for the instance type and profile."""

    skip: str | None
    limits: dict[str, Limit]
    expected_s: float = schema(minimum=0)
    timeout_s: float = schema(exclusiveMinimum=0)
    settings: dict[str, Any]


@dataclass(frozen=True)
class ThresholdsUsed:
    """Which thresholds judged the run: the file, its digest, the instance type and every check's limits."""

    file: str
    sha256: str = schema(pattern="^[0-9a-f]{64}$")
    profile: str = schema(**PROFILE)
    instance_type: str
    requested_as: str
    gpus: int = schema(minimum=0)
    efa: int = schema(minimum=0)
    checks: dict[str, CheckLimits] = schema(propertyNames=CHECK_ID)
    gpu_model: str | None = None
    nvlinks_per_gpu: int = schema(0, minimum=0)


@dataclass(frozen=True)
class Report(Coded):
    """One deep health check run on one node. Minor versions only add optional fields."""

    schema_version: str = schema(pattern="^1\\.[0-9]+$")
    run: Run
    instance: Instance
    thresholds: ThresholdsUsed
    environment: dict[str, str | None] = schema(required=["dhc", "python"])  # software versions
    devices: tuple[Device, ...]
    checks: tuple[CheckResult, ...]
    verdict: NodeVerdict

    @classmethod
    def of(cls, report: Report | dict[str, Any]) -> Report:
        """``report`` typed: readers accept the typed report or its document."""
        return report if isinstance(report, Report) else cls.from_dict(report)

    def count(self, status: Status) -> int:
        return sum(c.status is status for c in self.checks)

    @property
    def faults(self) -> tuple[Finding, ...]:
        """The verdict's reasons that are hardware faults (Failed), not reasons it could not decide."""
        return tuple(r for r in self.verdict.reasons if r.status is Status.FAILED)
