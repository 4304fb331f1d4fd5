"""One dhc run inside pytest: its configuration and limits, the plan, the journal, results and the report.

The run configuration (``dhc.runconfig``) comes from one of three places, and is resolved at most once:
an xdist worker gets its controller's, a run launched by ``dhc run`` loads ``--dhc-config`` (dhc run
started the folder and owns ``pytest.log`` there, so it is left as it is), and ``pytest suites/`` alone
resolves its ``--dhc-*`` options through the same ``resolve`` as ``dhc run``, then refuses a GPU-less
type on a host where NVML counts GPUs and starts a reused ``--dhc-out`` clean (one run, one folder).

The controlling process (the only process without xdist, the xdist controller with it) journals
starts and results as they arrive, writes ``report.json`` at the end and, alone, hands it to the sinks
(``pytest_dhc_verdict``; under ``dhc run`` its parent does, after trusting or rebuilding it); workers only measure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from dhc import report
from dhc.errors import DhcError
from dhc.model import CheckResult, Finding, PlannedCheck, Status
from dhc.model.report import Report
from dhc.plugin import timeouts
from dhc.plugin.options import run_request
from dhc.probes.environment import software_versions
from dhc.report.folder import PYTEST_LOG_NAME, open_run_log
from dhc.runconfig import RunConfig, limits_of
from dhc.runconfig.resolve import prepare, resolve
from dhc.settings import Settings
from dhc.sinks.hooks import HANDED_OVER, deliver
from dhc.thresholds import InstanceLimits, suite_of

CONFIG_INPUT = "dhc_run_config"  # what an xdist controller hands its workers


class DhcRun:
    def __init__(self, config: pytest.Config):
        self.is_worker = hasattr(config, "workerinput")
        self.worker_input: dict[str, Any] = getattr(config, "workerinput", {})
        try:
            self.run_config, self.limits = self._configure(config)
            self.settings = self.run_config.settings  # resolved once, with the configuration
            by_hand = not (self.is_worker or self.run_config.by_dhc_run)
            self.earlier: list[str] = prepare(self.run_config, self.limits, "--dhc-") if by_hand else []
        except DhcError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.identity = self.run_config.identity
        self.out = Path(self.run_config.out)
        self.run_info = self.run_config.run_info()
        self.journal = report.Journal(self.out / report.JOURNAL_NAME)
        self.results: dict[str, CheckResult] = {}
        self.plan: list[PlannedCheck] | None = None
        self.collection_errors: list[str] = []
        self.selection_accounted = False
        self.report: Report | None = None  # the run's report, once written
        self.previous_sigterm: object | None = None
        self.html_problem: str | None = None
        self.sink_notes: list[str] = []
        self.environment: dict[str, Any] = {} if self.is_worker else software_versions(dcgmi=self.settings.dcgmi)
        self._stacks: BinaryIO | None = None

    def _configure(self, config: pytest.Config) -> tuple[RunConfig, InstanceLimits]:
        """Handed over (xdist worker, ``--dhc-config``) and loaded, or resolved here from the options."""
        if CONFIG_INPUT in self.worker_input:
            run_config = RunConfig.from_dict(json.loads(self.worker_input[CONFIG_INPUT]), "the xdist controller")
        elif config.getoption("dhc_config"):
            run_config = RunConfig.load(Path(config.getoption("dhc_config")))
        else:
            return resolve(run_request(config), Settings.from_env())
        return run_config, limits_of(run_config)

    def stacks(self) -> BinaryIO | None:
        """``pytest.log`` of the run folder, opened once for faulthandler's stack dumps. Only under ``dhc run``
        (which owns that file and has a watchdog); None by hand (pytest's ``-o faulthandler_timeout=`` is there)."""
        if not self.run_config.by_dhc_run:
            return None
        if self._stacks is None:
            try:
                self._stacks = open_run_log(self.out / PYTEST_LOG_NAME)
            except OSError:
                return None
        return self._stacks

    def worker_input_for_node(self) -> dict[str, str]:
        """What an xdist controller hands each worker, so all agree on who, what and where."""
        return {CONFIG_INPUT: json.dumps(self.run_config.to_dict())}

    def deliver(self, pm: Any) -> None:
        """``pytest suites/`` alone: the report stands, hand it to each sink. Under ``dhc run`` the sinks are
        its parent's, after it decided whether to trust this report: here only the hand-over is journaled."""
        if self.report is None:
            return
        if not self.run_config.by_dhc_run:
            deliver(pm, self.report, self.run_config, self._say, self.journal)
            return
        try:
            self.journal.append({"event": HANDED_OVER, "ts": report.utc_now(), "run_id": self.run_config.run_id})
        except OSError:
            pass  # dhc run then treats a stop as having come before the report stood: it rebuilds

    def _say(self, text: str) -> None:
        self.sink_notes.append(text)  # said in the terminal summary

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

    def account_for_selection(self) -> None:
        """Each selected check the plan lacks is Incomplete (journaled once), so a run that -k, a path or
        PYTEST_ADDOPTS narrowed can never read as the whole selection passing."""
        if self.selection_accounted or self.collection_errors:
            return  # a collection error already names what could not be collected
        self.selection_accounted = True
        planned = {p.check for p in self.planned()}
        for check in report.selected_checks(self.run_config.suites, self.run_config.checks):
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
    def write_report(self, exitstatus: int) -> Report:
        typed, self.html_problem = report.finish_report(
            self.out, self.run_info, self.identity, self.limits, self.environment, self.planned(),
            list(self.results.values()), self._ended_by(exitstatus))
        return typed

    def _ended_by(self, exitstatus: int) -> str | None:
        if self.collection_errors:
            return "collecting the checks failed: " + "; ".join(self.collection_errors)
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            return timeouts.stop_reason()
        if exitstatus == pytest.ExitCode.INTERNAL_ERROR:
            return "pytest hit an internal error"
        return None
