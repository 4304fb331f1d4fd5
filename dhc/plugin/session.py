"""One dhc run inside pytest: identity and limits, the plan, the journal, results and the report.

The controlling process (the only process without xdist, the xdist controller with it) journals
starts and results as they arrive and writes ``report.json`` at the end; workers only measure.
Before anything runs it refuses a GPU-less type on a host where NVML counts GPUs, and starts a
reused ``--dhc-out`` clean, as ``dhc run`` does (one run, one folder). A run launched by ``dhc run``
(``--dhc-run-id`` given) finds its folder already started by dhc run, which owns ``pytest.log`` and
``identity.json`` there, and leaves it as it is.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from dhc import report
from dhc.errors import DhcError
from dhc.instance import InstanceIdentity, resolve_identity
from dhc.model import CheckResult, Finding, PlannedCheck, Status
from dhc.plugin import timeouts
from dhc.plugin.options import Options, read_options
from dhc.probes.environment import software_versions
from dhc.probes.unseen_gpus import refuse_unseen_gpus
from dhc.report import default_run_name
from dhc.report.folder import PYTEST_LOG_NAME, open_run_log, start_clean
from dhc.settings import Settings
from dhc.thresholds import CATALOGUE, InstanceLimits, load, suite_of

IDENTITY_INPUT, OUT_INPUT, RUN_ID_INPUT = "dhc_identity", "dhc_out", "dhc_run_id"


class DhcRun:
    def __init__(self, config: pytest.Config):
        self.options: Options = read_options(config)
        self.is_worker = hasattr(config, "workerinput")
        self.worker_input: dict[str, Any] = getattr(config, "workerinput", {})
        try:
            self.settings = Settings.from_env()
            self.identity = self._identity(config)
            thresholds = load(self.options.thresholds or self.settings.thresholds_file)
            instance_type = self.identity.instance_type.value
            if not instance_type:
                raise DhcError("cannot tell the instance type (a GPU is present, but neither a flag, "
                               "DHC_INSTANCE_TYPE nor EC2 metadata named it): pass --dhc-instance-type")
            self.limits: InstanceLimits = thresholds.resolve(instance_type, self.options.profile)
            self.out = self._out_dir()
            self.earlier: list[str] = [] if self.is_worker else self._prepare()
        except DhcError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.run_info = report.RunInfo(
            self.worker_input.get(RUN_ID_INPUT) or self.options.run_id or uuid.uuid4().hex[:12], report.utc_now(), self.options.profile,
            list(self.options.suites), list(self.options.checks), list(sys.argv), inject=self.options.inject)
        self.journal = report.Journal(self.out / report.JOURNAL_NAME)
        self.results: dict[str, CheckResult] = {}
        self.plan: list[PlannedCheck] | None = None
        self.collection_errors: list[str] = []
        self.selection_accounted = False
        self.document: dict[str, Any] | None = None
        self.previous_sigterm: object | None = None
        self.html_problem: str | None = None
        self.environment: dict[str, Any] = {} if self.is_worker else software_versions(dcgmi=self.settings.dcgmi)
        self._stacks: BinaryIO | None = None

    def stacks(self) -> BinaryIO | None:
        """``pytest.log`` of the run folder, opened once for faulthandler's stack dumps. Only under ``dhc run``
        (which owns that file and has a watchdog); None by hand (pytest's ``-o faulthandler_timeout=`` is there)."""
        if not self.options.run_id:
            return None
        if self._stacks is None:
            try:
                self._stacks = open_run_log(self.out / PYTEST_LOG_NAME)
            except OSError:
                return None
        return self._stacks

    # -- identity and output -------------------------------------------------------------------
    def _identity(self, config: pytest.Config) -> InstanceIdentity:
        if IDENTITY_INPUT in self.worker_input:
            return InstanceIdentity.from_dict(json.loads(self.worker_input[IDENTITY_INPUT]))
        if self.options.identity_file:
            return InstanceIdentity.from_dict(report.read_json(Path(self.options.identity_file)))
        flags = {"instance_type": self.options.instance_type, "instance_id": self.options.instance_id}
        return resolve_identity(flags, self.settings)

    def _out_dir(self) -> Path:
        if OUT_INPUT in self.worker_input:
            return Path(self.worker_input[OUT_INPUT])
        if self.options.out or self.settings.out_dir:
            return Path(self.options.out or self.settings.out_dir or "")
        return Path("reports") / default_run_name(self.identity.instance_id.value or "unknown")

    def _prepare(self) -> list[str]:
        """The controlling process, before any check: refuse GPUs that would pass unseen, start ``out`` clean."""
        if not self.limits.instance_type.gpus:
            named = self.identity.instance_type
            refuse_unseen_gpus(f"--dhc-instance-type {named.value}" if self.options.instance_type
                               else f"instance type {named.value} (from {named.source})")
        report.ensure_writable_dir(self.out)
        return [] if self.options.run_id else start_clean(self.out, "--dhc-out")

    def worker_input_for_node(self) -> dict[str, str]:
        """What an xdist controller hands each worker, so all agree on who and where."""
        return {IDENTITY_INPUT: json.dumps(self.identity.to_dict()), OUT_INPUT: str(self.out),
                RUN_ID_INPUT: self.run_info.run_id}

    # -- plan and results ----------------------------------------------------------------------
    def set_plan(self, plan: list[PlannedCheck]) -> None:
        self.plan = plan
        report.write_json_atomic(self.out / report.PLAN_NAME, [p.to_dict() for p in plan])

    def planned(self) -> list[PlannedCheck]:
        """The plan; an xdist controller never collects, so it reads what a worker wrote."""
        if self.plan is None:
            try:
                self.plan = [PlannedCheck(**p) for p in report.read_json(self.out / report.PLAN_NAME)]
            except DhcError:
                return []
        return self.plan

    def selected(self) -> list[str]:
        """The check ids the selection names (--dhc-check, --dhc-suite; none: every check)."""
        return [check for check in CATALOGUE if (not self.options.checks or check in self.options.checks)
                and (not self.options.suites or suite_of(check) in self.options.suites)]

    def account_for_selection(self) -> None:
        """Each selected check the plan lacks is Incomplete (journaled once), so a run that -k, a path or
        PYTEST_ADDOPTS narrowed can never read as the whole selection passing."""
        if self.selection_accounted or self.collection_errors:
            return  # a collection error already names what could not be collected
        self.selection_accounted = True
        planned = {p.check for p in self.planned()}
        for check in self.selected():
            if check not in planned:
                reason = (f"{check} was selected but not planned: no collected test implements it (left out by "
                          f"-k, -m, a narrower path, or missing from the suites), so this run cannot vouch for it")
                self.finished(CheckResult(check, suite_of(check), Status.INCOMPLETE, reason,
                                          findings=(Finding(check, Status.INCOMPLETE, reason),),
                                          nodeid=f"{check} (not collected)"))

    def check_of(self, nodeid: str) -> str | None:
        planned = self.planned_check(nodeid)
        return planned.check if planned else None

    def planned_check(self, nodeid: str) -> PlannedCheck | None:
        return next((p for p in self.planned() if p.nodeid == nodeid), None)

    def started(self, nodeid: str) -> None:
        planned = self.planned_check(nodeid)
        if planned:
            self.journal.append({"event": "start", "ts": report.utc_now(), **planned.to_dict()})

    def finished(self, result: CheckResult) -> None:
        self.results[result.nodeid or result.check] = result
        self.journal.append({"event": "result", "ts": report.utc_now(), "result": result.to_dict()})

    # -- the report ----------------------------------------------------------------------------
    def write_report(self, exitstatus: int) -> dict[str, Any]:
        typed, self.html_problem = report.finish_report(
            self.out, self.run_info, self.identity, self.limits, self.environment, self.planned(),
            list(self.results.values()), self._ended_by(exitstatus))
        return typed.to_dict()

    def _ended_by(self, exitstatus: int) -> str | None:
        if self.collection_errors:
            return "collecting the checks failed: " + "; ".join(self.collection_errors)
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            return timeouts.stop_reason()
        if exitstatus == pytest.ExitCode.INTERNAL_ERROR:
            return "pytest hit an internal error"
        return None
