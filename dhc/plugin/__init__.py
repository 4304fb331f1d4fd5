"""The dhc pytest plugin: checks are pytest tests; this turns their outcomes into a verdict.

Loaded by ``suites/conftest.py`` (``pytest_plugins = ["dhc.plugin"]``), never globally. The hooks
stay thin: options live in ``options``, the run's state in ``session``, outcome mapping in
``outcomes``, the recorder in ``recorder``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from dhc.errors import CheckIncomplete, NotApplicable
from dhc.instance import InstanceIdentity
from dhc.model import CheckResult, Device, PlannedCheck
from dhc.plugin import outcomes, schedule, timeouts
from dhc.plugin.options import add_options
from dhc.plugin.recorder import CheckRecorder
from dhc.plugin.session import DhcRun
from dhc.probes import host
from dhc.probes.nvml import Nvml, NvmlUnavailable
from dhc.report.files import REPORT_NAME
from dhc.report.folder import earlier_run_note
from dhc.runconfig import choice_problem
from dhc.sinks import hooks
from dhc.sinks.plugins import sink_plugins
from dhc.thresholds import InstanceLimits, suite_of
from dhc.thresholds.catalogue import planted_fault

RUN_KEY = pytest.StashKey[DhcRun]()
CHECK_KEY = pytest.StashKey[str]()
RECORDER_KEY = pytest.StashKey[CheckRecorder]()
NOT_APPLICABLE_KEY = pytest.StashKey[str]()

__all__ = ["CheckRecorder"]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)  # pytest_dhc_verdict: the sinks, as pytest-xdist adds its hooks


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(id): the dhc check id this test implements")
    run = DhcRun(config)
    config.stash[RUN_KEY] = run
    if not run.is_worker:
        schedule.require_exclusive_devices(config)
        run.previous_sigterm = timeouts.sigterm_as_interrupt()
        config.pluginmanager.register(_Controller(run), "dhc-controller")
        for name, sink in sink_plugins(run.run_config):
            config.pluginmanager.register(sink, name)
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistController(run), "dhc-xdist")


class _Controller:
    """Hooks of the controlling process: they see every report, from workers too."""

    def __init__(self, run: DhcRun):
        self.run = run

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.run.collection_errors.append(f"{report.nodeid or '<root>'}: {_first(str(report.longrepr))}")

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.run.started(nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        run, props = self.run, dict(report.user_properties)
        if outcomes.RESULT_PROPERTY in props:
            run.finished(CheckResult.from_dict(props[outcomes.RESULT_PROPERTY]))
        elif report.failed and report.nodeid in run.results:
            run.finished(outcomes.after_teardown_error(run.results[report.nodeid], str(report.longrepr)))
        elif report.failed and (planned := run.planned_check(report.nodeid)) is not None:
            run.finished(outcomes.without_result(planned.check, planned.suite, report.nodeid,
                                                 str(report.longrepr)))


class _XdistController:
    def __init__(self, run: DhcRun):
        self.run = run

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput.update(self.run.worker_input_for_node())

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        return schedule.device_exclusive(config, log, self.run.check_of)

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.run.account_for_selection()  # a worker wrote plan.json before it reported its collection


def _run(config: pytest.Config) -> DhcRun:
    return config.stash[RUN_KEY]


# -- collection ---------------------------------------------------------------------------------
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    options = _run(config).run_config
    keep, drop = [], []
    for item in items:
        check = _check_id(item)
        item.stash[CHECK_KEY] = check
        wanted = (not options.checks or check in options.checks) and \
                 (not options.suites or suite_of(check) in options.suites)
        (keep if wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = schedule.inventory_first(keep, lambda item: item.stash[CHECK_KEY])  # it reads the GPUs idle


def _check_id(item: pytest.Item) -> str:
    marker = item.get_closest_marker("check")
    if marker is None or len(marker.args) != 1:
        raise pytest.UsageError(f"{item.nodeid}: a dhc check must be marked @pytest.mark.check('<id>')")
    check = marker.args[0]
    problem = choice_problem("checks", check)
    if problem:
        raise pytest.UsageError(f"{item.nodeid}: {problem}")
    return check


@pytest.hookimpl(tryfirst=True)  # plan.json is on disk before an xdist worker reports its collection
def pytest_collection_finish(session: pytest.Session) -> None:
    run = _run(session.config)
    if any(CHECK_KEY not in item.stash for item in session.items):
        return  # pytest calls this even when modifyitems raised; that error is the one to show
    plan = []
    for item in session.items:
        check = item.stash[CHECK_KEY]
        timing = run.limits.timing(check)
        plan.append(PlannedCheck(item.nodeid, check, suite_of(check), timing.expected_s, timing.timeout_s))
    run.set_plan(plan)
    if not run.is_worker:
        run.account_for_selection()


# -- running a check ----------------------------------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Any:
    run, check = _run(item.config), item.stash[CHECK_KEY]
    skip = run.limits.check(check).skip
    if skip:
        item.stash[NOT_APPLICABLE_KEY] = skip
        pytest.skip(f"not applicable to {run.limits.instance_type.name}: {skip}")
    with timeouts.alarm(run.limits.timing(check).timeout_s, _timeout_message(run, check, "setting up"), run.stacks()):
        return (yield)  # a fixture stuck in native code (NVML's init) leaves its stack too


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    run, check = _run(item.config), item.stash[CHECK_KEY]
    with timeouts.alarm(run.limits.timing(check).timeout_s, _timeout_message(run, check, "running"), run.stacks()):
        return (yield)


def _timeout_message(run: DhcRun, check: str, phase: str) -> str:
    return f"{check} timed out {phase} after {run.limits.timing(check).timeout_s:g} s " \
           f"(profile {run.limits.profile}); see timeout_s in {run.limits.source_file}"


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    try:
        result = yield
    except NotApplicable as exc:
        pyfuncitem.stash[NOT_APPLICABLE_KEY] = str(exc)
        pytest.skip(str(exc))
    recorder = pyfuncitem.stash.get(RECORDER_KEY, None)
    if recorder is None:
        raise CheckIncomplete(f"{pyfuncitem.nodeid} does not use the dhc_check fixture, so it measured nothing")
    recorder.conclude()
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> pytest.TestReport:
    rep: pytest.TestReport = yield
    check = item.stash.get(CHECK_KEY, None)
    if check is not None and (call.when == "call" or (call.when == "setup" and rep.outcome != "passed")):
        started = datetime.fromtimestamp(call.start, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        result = outcomes.result_from_call(check, suite_of(check), call.excinfo,
                                           item.stash.get(RECORDER_KEY, None),
                                           item.stash.get(NOT_APPLICABLE_KEY, None),
                                           started, call.duration, item.nodeid)
        rep.user_properties = [*rep.user_properties, (outcomes.RESULT_PROPERTY, result.to_dict())]
    return rep


# -- the end -------------------------------------------------------------------------------------
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    run = session.config.stash.get(RUN_KEY, None)
    if run is None or run.is_worker:
        return
    run.report = run.write_report(int(exitstatus))
    session.exitstatus = run.report.verdict.exit_code
    run.deliver(session.config.pluginmanager)


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is not None:
        timeouts.restore_sigterm(run.previous_sigterm)


def pytest_report_header(config: pytest.Config) -> str | None:
    run = config.stash.get(RUN_KEY, None)
    return earlier_run_note(run.out, run.earlier) if run is not None and run.earlier else None


def pytest_terminal_summary(terminalreporter: Any) -> None:
    run = terminalreporter.config.stash.get(RUN_KEY, None)
    typed = getattr(run, "report", None)
    if typed is None:
        return
    verdict = typed.verdict
    terminalreporter.write_sep("=", f"dhc verdict: {verdict.status} (action: {verdict.action})")
    for reason in verdict.reasons:
        terminalreporter.write_line(f"  {reason.status}: {reason.message}")
    terminalreporter.write_line(f"report: {run.out / REPORT_NAME}")
    if run.html_problem:
        terminalreporter.write_line(run.html_problem)
    for note in run.sink_notes:
        terminalreporter.write_line(f"dhc: {note}")


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def dhc_run(request: pytest.FixtureRequest) -> DhcRun:
    return _run(request.config)


@pytest.fixture(scope="session")
def dhc_instance(dhc_run: DhcRun) -> InstanceIdentity:
    """Who this instance is, each field with its source."""
    return dhc_run.identity


@pytest.fixture(scope="session")
def dhc_limits(dhc_run: DhcRun) -> InstanceLimits:
    """The limits, skips, timeouts and settings for this instance type under the active profile."""
    return dhc_run.limits


@pytest.fixture(scope="session")
def dhc_devices(dhc_run: DhcRun) -> list[Device]:
    """The devices checks run on: every GPU NVML can use, or the CPU on a type without GPUs. GPUs NVML
    enumerates but finds lost or needing a reset ride along in ``.lost`` (``GpuUnusable``), so each
    GPU check names them instead of leaving them out silently."""
    if dhc_run.limits.instance_type.gpus == 0:
        return [host.cpu_device()]
    try:
        with Nvml() as nvml:
            return nvml.gpus()
    except NvmlUnavailable as exc:
        raise CheckIncomplete(f"{dhc_run.limits.instance_type.name} expects GPUs, but {exc}") from None


@pytest.fixture
def dhc_check(request: pytest.FixtureRequest, dhc_run: DhcRun) -> CheckRecorder:
    check = request.node.stash[CHECK_KEY]
    recorder = CheckRecorder(check, dhc_run.limits, planted_fault(dhc_run.run_config.inject, check))
    request.node.stash[RECORDER_KEY] = recorder
    return recorder


def _first(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E ")]
    return (errors[-1][1:].strip() if errors else lines[-1] if lines else "")[:300]
