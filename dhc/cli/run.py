"""``dhc run``: resolve the run once, run the suites through pytest, and stand behind one verdict.

The run configuration (``dhc.runconfig``) is resolved and checked here first (exit 2 before anything
runs), written to the run folder (``run-config.json``) and handed to the pytest child by its path
alone; the child loads it and resolves nothing again. pytest runs under ``Supervisor``, isolated
from the caller's pytest setup: no PYTEST_* variables, no autoloaded plugins, the suites' own ini.
Whatever happens to the child, a schema-valid report.json results: the child's own when dhc can trust
it (``dhc.cli.trust``: whole, of this run, its verdict the one its checks reach), or, when dhc stopped
the run, the child died or its report was refused (said on stderr and in ``ended_by``), one rebuilt
from its journal with every unfinished or never planned check Incomplete and ``ended_by`` saying why.

One run, one folder: an ``--out`` that holds an earlier run's files (report, journal, log lines)
is started clean, and dhc says which files it removed. The sinks (``pytest_dhc_verdict``: the log
file, CloudWatch, the node, the termination message) get the typed verdict once each, from here and
only after trust was decided: the report dhc stands behind (the child's, or the one rebuilt), never one
it refused (the child delivers nothing, ``run_config.by_dhc_run``). A stop signal while they run is
noted, never a reason to deliver twice; then stdout, and the exit code follows the typed verdict
whatever stdout does.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import TextIO

from dhc import report
from dhc.cli import trust
from dhc.cli.output import to_stdout, warn
from dhc.cli.progress import Progress
from dhc.cli.summary import print_summary
from dhc.cli.supervise import ChildOutcome, StopSignals, Supervisor, describe_exit
from dhc.errors import DhcError, UsageError
from dhc.model.choices import DEFAULT_PROFILE
from dhc.model.report import Report
from dhc.probes.environment import software_versions
from dhc.report.folder import LOG_NAME, PYTEST_LOG_NAME, earlier_run_note
from dhc.resources import bundled
from dhc.runconfig import FAULTS, PROFILES, SINKS, STAGES, SUITE_NAMES, RunConfig
from dhc.runconfig.resolve import RunRequest, prepare, resolve
from dhc.settings import Settings, pytest_child_environment
from dhc.sinks import hooks
from dhc.sinks.logline import verdict_lines
from dhc.thresholds import CATALOGUE, InstanceLimits

_CHILD_USAGE_ERROR = 4  # pytest's exit code when it refuses its arguments or configuration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", action="append", default=[], metavar="SUITE",
                        help=f"run only this suite; repeatable ({', '.join(SUITE_NAMES)}; default: all)")
    parser.add_argument("--check", action="append", default=[], metavar="ID",
                        help=f"run only this check; repeatable ({', '.join(CATALOGUE)})")
    parser.add_argument("--instance-type", help="instance type (default: discovered; 'cpu' without GPUs)")
    parser.add_argument("--instance-id", help="instance ID (default: discovered)")
    parser.add_argument("--thresholds", metavar="FILE", help="thresholds file (default: bundled)")
    parser.add_argument("--out", metavar="DIR", help="folder for the report (default: reports/<instance>-<UTC time>)")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, metavar="NAME",
                        help=f"{' | '.join(PROFILES)} (default: {DEFAULT_PROFILE})")
    parser.add_argument("--inject", metavar="FAULT", help=f"plant a fault to prove its detector ({', '.join(FAULTS)})")
    parser.add_argument("--sink", action="append", default=[], metavar="SINK",
                        help=f"also send the verdict here ({', '.join(SINKS)}; repeatable)")
    parser.add_argument("--stage", default="final", metavar="STAGE",
                        help=f"{' | '.join(STAGES)}; with --sink kubernetes: 'stress' when a connectivity stage "
                             "follows (a pass keeps the node unschedulable)")
    parser.add_argument("--log-group", help="CloudWatch log group (default: /aws/sagemaker/Clusters/<cluster>/<id>)")
    parser.add_argument("-n", "--workers", type=int, default=0, metavar="N",
                        help="run checks in N pytest-xdist worker processes (default: in one process)")


def run_command(args: argparse.Namespace) -> int:
    with StopSignals() as stops:
        typed, run_config = execute(args, sys.stderr, stops)
        _deliver(run_config, typed)
        if stops.late:
            warn(f"{', '.join(stops.late)} arrived after the verdict stood; the report and sinks were finished first")
    return typed.verdict.exit_code  # computed from the typed verdict, never read from a document


def _deliver(run_config: RunConfig, typed: Report) -> None:
    """Each sink once, the report dhc stands behind; stdout last: a reader that went away never costs a sink
    or the exit code."""
    out = Path(run_config.out)
    text = io.StringIO()
    print_summary(typed, out / report.REPORT_NAME, text)
    if run_config.inject:  # a planted fault must never reach log scrapers as a real one
        text.write(f"self-test run with the fault {run_config.inject!r} planted: no fault log lines emitted\n")
    else:
        hooks.deliver(hooks.manager(run_config), typed, run_config, warn, report.Journal(out / report.JOURNAL_NAME))
        text.write(_log_lines(out / LOG_NAME, typed))
    to_stdout(text.getvalue(), f"the verdict is in {out / report.REPORT_NAME}")


def _log_lines(path: Path, typed: Report) -> str:
    """The log lines as the log sink wrote them; made again only if it could not write them."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        lines = verdict_lines(typed)
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)


def _request(args: argparse.Namespace) -> RunRequest:
    return RunRequest("--", instance_type=args.instance_type, instance_id=args.instance_id,
                      thresholds=args.thresholds, out=args.out, profile=args.profile, suites=tuple(args.suite),
                      checks=tuple(args.check), inject=args.inject, workers=args.workers,
                      sinks=tuple(getattr(args, "sink", ())), stage=getattr(args, "stage", "final"),
                      log_group=getattr(args, "log_group", None), command=("dhc", *sys.argv[1:]), by_dhc_run=True)


def execute(args: argparse.Namespace, progress_stream: TextIO,
            stops: StopSignals | None = None) -> tuple[Report, RunConfig]:
    """Resolve the run, run the suites under supervision, return the report and the run's configuration."""
    if stops is None:
        with StopSignals() as own:
            return execute(args, progress_stream, own)
    settings = Settings.from_env()
    run_config, limits = resolve(_request(args), settings)
    suites_dir = Path(settings.suites_dir) if settings.suites_dir else bundled("suites")
    if not (suites_dir / "conftest.py").is_file():
        raise UsageError(f"no dhc suites at {suites_dir} (set DHC_SUITES to the suites folder)")
    earlier = prepare(run_config, limits, "--")
    out = Path(run_config.out)
    argv = _pytest_argv(suites_dir, run_config.save(out), run_config.workers)
    devices = f"{limits.instance_type.gpus} GPU(s)" if limits.instance_type.gpus else "the CPU"
    progress = Progress(progress_stream, devices)
    progress.note(f"{run_config.identity.instance_id.value} ({limits.instance_type.name}), profile "
                  f"{run_config.profile}, report in {out}")
    if earlier:
        progress.note(earlier_run_note(out, earlier))
    outcome = Supervisor(argv, suites_dir, out, out / PYTEST_LOG_NAME, progress, pytest_child_environment(),
                         collect_timeout_s=settings.collect_timeout_s, grace_s=settings.watchdog_grace_s,
                         stops=stops).run()  # settles the stop signals the moment the child has ended
    return _final_report(outcome, run_config, limits), run_config


def _suites_ini(suites_dir: Path) -> Path:
    own = suites_dir / "pytest.ini"
    return own if own.is_file() else bundled("suites") / "pytest.ini"


def _pytest_argv(suites_dir: Path, config_path: Path, workers: int) -> list[str]:
    """pytest with the suites' own ini and root: a pytest.ini or pyproject in the caller's cwd has no say."""
    argv = [sys.executable, "-m", "pytest", str(suites_dir), "-c", str(_suites_ini(suites_dir)),
            "--rootdir", str(suites_dir), "--confcutdir", str(suites_dir), "-rN", "--dhc-config", str(config_path)]
    # the plugin's xdist scheduler runs the checks that use the devices one at a time (dhc.plugin.schedule)
    return argv + (["-p", "xdist.plugin", "-n", str(workers)] if workers else [])


def _final_report(outcome: ChildOutcome, run_config: RunConfig, limits: InstanceLimits) -> Report:
    """The child's report when it wrote one for this run that dhc can trust (``dhc.cli.trust``); else one
    rebuilt from the journal, ``ended_by`` saying why. A stop that reached the child only after it had
    handed over the report of a run that finished by itself came after the verdict stood: that report is kept."""
    out = Path(run_config.out)
    refused = None
    if outcome.stopped is None or _handed_over(out, run_config.run_id):
        typed, refused = trust.childs_report(out / report.REPORT_NAME, run_config.run_id, report.journal_results(out),
                                             report.selected_checks(run_config.suites, run_config.checks))
        if typed is not None and (outcome.stopped is None or typed.run.ended_by is None):
            return typed
        if outcome.stopped is None and outcome.returncode == _CHILD_USAGE_ERROR:
            raise DhcError(f"pytest refused to run the suites: {_log_tail(out / PYTEST_LOG_NAME)}")
    if refused:
        warn(f"the child's report.json was refused, so dhc rebuilt the report from the journal: {refused}")
    ended_by = outcome.stopped or f"{describe_exit(outcome.returncode)} " + (
        f"and its report was refused: {refused}" if refused else f"without a report: {_log_tail(out / PYTEST_LOG_NAME)}")
    if outcome.stopped and refused:
        ended_by += f"; the child's report was refused: {refused}"
    typed, problem = report.finish_report(out, run_config.run_info(), run_config.identity, limits,
                                          software_versions(dcgmi=run_config.settings.dcgmi), report.read_plan(out),
                                          report.journal_results(out), ended_by)
    if problem:
        warn(problem)
    return typed


def _handed_over(out: Path, run_id: str) -> bool:
    return any(e.get("event") == hooks.HANDED_OVER and e.get("run_id") == run_id
               for e in report.Journal(out / report.JOURNAL_NAME).events())


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no pytest log)"
    return " | ".join(text[-lines:]) or "(empty pytest log)"
