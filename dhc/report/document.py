"""The versioned JSON report: one document per run, built from the plan and the check results.

``finish_report`` is the one way a run's report is made, by the pytest child at its end and by
``dhc run`` when the child left none (rebuilt from the journal): (plan, results, run, identity, limits,
software, how the run ended) -> a typed ``Report``, saved as report.json and report.html. Every check the
run selected has a row: a planned one without a result, or a selected one never planned, is Incomplete.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dhc.errors import ReportError
from dhc.instance import InstanceIdentity
from dhc.model import CheckResult, Device, Finding, PlannedCheck, Status, node_verdict
from dhc.model.codec import ModelError, dump
from dhc.model.report import SCHEMA_VERSION, Report, Run
from dhc.report.files import JOURNAL_NAME, PLAN_NAME, Journal, read_json
from dhc.report.schema import SCHEMA_PATH
from dhc.thresholds import CATALOGUE, InstanceLimits, suite_of


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def complete_results(plan: list[PlannedCheck], results: list[CheckResult], why: str) -> list[CheckResult]:
    """Results in plan order; a planned check without a result becomes Incomplete, saying ``why``."""
    by_node = {r.nodeid: r for r in results}
    out = [by_node.pop(p.nodeid, None) or CheckResult(
        p.check, p.suite, Status.INCOMPLETE, f"did not finish: {why}", nodeid=p.nodeid) for p in plan]
    return out + list(by_node.values())  # results outside the plan are kept, never dropped


def selected_checks(suites: list[str] | tuple[str, ...], checks: list[str] | tuple[str, ...]) -> list[str]:
    """The check ids a run's selection names (``--check``, ``--suite``; neither: every check), catalogue order."""
    return [check for check in CATALOGUE if (not checks or check in checks) and (not suites or suite_of(check) in suites)]


def account_for_selection(run: Run, results: list[CheckResult], why: str) -> list[CheckResult]:
    """``results`` and an Incomplete row for each selected check that has none (it was never planned: the
    run ended before collecting it, or nothing implements it), so a run can never read as its selection passing."""
    have = {r.check for r in results}
    missing = []
    for check in (c for c in selected_checks(run.selection.suites, run.selection.checks) if c not in have):
        reason = f"{check} was selected but never planned, so this run cannot vouch for it: {why}"
        missing.append(CheckResult(check, suite_of(check), Status.INCOMPLETE, reason,
                                   findings=(Finding(check, Status.INCOMPLETE, reason),), nodeid=f"{check} (not collected)"))
    return results + missing


def assemble(run: Run, identity: dict[str, Any], thresholds: dict[str, Any], environment: dict[str, Any],
             devices: list[Device], results: list[CheckResult]) -> Report:
    """The typed report; the verdict comes from ``dhc.model.node_verdict``, the one set of verdict rules."""
    head = {"schema_version": SCHEMA_VERSION, "instance": identity, "thresholds": thresholds,
            "environment": environment, "devices": [], "checks": [], "run": dump(run),
            "verdict": {"status": "Incomplete", "action": "None"}}
    try:
        typed = Report.from_dict(head)
    except ModelError as exc:
        raise ReportError(f"cannot build the report: {exc}") from None
    return replace(typed, devices=tuple(devices), checks=tuple(results),
                   verdict=node_verdict(results, run.ended_by))


def _typed(run: Run, identity: InstanceIdentity, limits: InstanceLimits, environment: dict[str, Any],
           results: list[CheckResult]) -> Report:
    devices = sorted({d for r in results for d in r.devices}, key=lambda d: (d.kind, d.index))
    return assemble(run, identity.to_dict(), limits.to_dict(), environment, devices, results)


def finish_report(out: Path, run: Run, identity: InstanceIdentity, limits: InstanceLimits,
                  environment: dict[str, Any], plan: list[PlannedCheck], results: list[CheckResult],
                  ended_by: str | None) -> tuple[Report, str | None]:
    """The report of a run that ended (``ended_by``: why it stopped early, None when it finished by itself),
    saved in ``out``. Every planned check without a result is Incomplete, saying why. Returns the report
    and why report.html could not be written (or None)."""
    from dhc.report import save_report  # the package's writer: report.json, then the page

    run = run.ended(utc_now(), ended_by)
    completed = complete_results(plan, results, ended_by or "pytest finished without running it")
    completed = account_for_selection(run, completed, ended_by or "pytest finished without collecting it")
    typed = _typed(run, identity, limits, environment, completed)
    return typed, save_report(out, typed)


def journal_results(out: Path) -> list[CheckResult]:
    """The results a run journaled in ``out`` (a run that died still leaves every finished one)."""
    results = []
    for event in Journal(out / JOURNAL_NAME).events():
        try:
            results.append(CheckResult.from_dict(event["result"]) if event.get("event") == "result" else None)
        except (KeyError, ModelError):
            continue  # not a result dhc wrote: its check stays unfinished (Incomplete), never passed
    return [r for r in results if r is not None]


def read_plan(out: Path) -> list[PlannedCheck]:
    """The plan a run wrote in ``out``; none when it never got that far."""
    try:
        return [PlannedCheck.from_dict(p) for p in read_json(out / PLAN_NAME)]
    except (ReportError, ModelError, TypeError):
        return []


def default_run_name(instance_id: str) -> str:
    """``<instance>-<UTC time>``, safe as a folder name."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", instance_id)[:80]
    return f"{safe}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def load_schema() -> dict[str, Any]:
    """The checked-in schema (``dhc.report.schema`` generates it from the typed model)."""
    return json.loads(SCHEMA_PATH.read_text())
