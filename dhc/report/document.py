"""The versioned JSON report: one document per run, built from the plan and the check results."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dhc.instance import InstanceIdentity
from dhc.model import CheckResult, Device, PlannedCheck, Status, node_verdict
from dhc.thresholds import InstanceLimits

SCHEMA_VERSION = "1.1"  # 1.1 added the optional non_finite field
SCHEMA_PATH = Path(__file__).resolve().parent / "schema" / "report-v1.schema.json"


@dataclass
class RunInfo:
    run_id: str
    started_at: str
    profile: str
    suites: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    finished_at: str | None = None
    ended_by: str | None = None  # None when the run finished by itself; else why it stopped early
    inject: str | None = None  # a fault planted on purpose (self-test), else None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "started_at": self.started_at, "finished_at": self.finished_at,
                "profile": self.profile, "selection": {"suites": self.suites, "checks": self.checks},
                "argv": self.argv, "ended_by": self.ended_by, "inject": self.inject}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo:
        return cls(data["run_id"], data["started_at"], data["profile"], data["selection"]["suites"],
                   data["selection"]["checks"], data.get("argv", []), data.get("finished_at"),
                   data.get("ended_by"), data.get("inject"))


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def complete_results(plan: list[PlannedCheck], results: list[CheckResult], why: str) -> list[CheckResult]:
    """Results in plan order; a planned check without a result becomes Incomplete, saying ``why``."""
    by_node = {r.nodeid: r for r in results}
    out = [by_node.pop(p.nodeid, None) or CheckResult(
        p.check, p.suite, Status.INCOMPLETE, f"did not finish: {why}", nodeid=p.nodeid) for p in plan]
    return out + list(by_node.values())  # results outside the plan are kept, never dropped


def build_report(run: RunInfo, identity: dict[str, Any], thresholds: dict[str, Any],
                 environment: dict[str, Any], devices: list[Device],
                 results: list[CheckResult]) -> dict[str, Any]:
    verdict = node_verdict(results, run.ended_by)
    started = datetime.fromisoformat(run.started_at.replace("Z", "+00:00"))
    finished_at = run.finished_at or utc_now()
    finished = datetime.fromisoformat(finished_at.replace("Z", "+00:00"))
    return {
        "schema_version": SCHEMA_VERSION,
        "run": run.to_dict() | {"finished_at": finished_at,
                                "duration_s": round((finished - started).total_seconds(), 3)},
        "instance": identity,
        "thresholds": thresholds,
        "environment": environment,
        "devices": [_plain(d) for d in devices],
        "checks": [r.to_dict() for r in results],
        "verdict": verdict.to_dict(),
    }


def build_document(run: RunInfo, identity: InstanceIdentity, limits: InstanceLimits,
                   environment: dict[str, Any], results: list[CheckResult]) -> dict[str, Any]:
    """The report of one run; devices are those the checks covered."""
    devices = sorted({d for r in results for d in r.devices}, key=lambda d: (d.kind, d.index))
    return build_report(run, identity.to_dict(), limits.to_dict(), environment, devices, results)


def default_run_name(instance_id: str) -> str:
    """``<instance>-<UTC time>``, safe as a folder name."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", instance_id)[:80]
    return f"{safe}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _plain(device: Device) -> dict[str, Any]:
    return {k: v for k, v in vars(device).items()}
