"""``dhc run``: resolve the run once, run the suites through pytest, and stand behind one verdict.

The run configuration (``dhc.runconfig``) is resolved and checked here first (exit 2 before anything
runs), written to the run folder (``run-config.json``) and handed to the pytest child by its path
alone; the child loads it and resolves nothing again. pytest runs under ``Supervisor``, isolated
from the caller's pytest setup: no PYTEST_* variables, no autoloaded plugins, the suites' own ini.
Whatever happens to the child, a schema-valid report.json results: the child's own, or, when dhc
stopped the run or the child died, one rebuilt from its journal with every unfinished check
Incomplete and ``ended_by`` saying why.

One run, one folder: an ``--out`` that holds an earlier run's files (report, journal, log lines)
is started clean, and dhc says which files it removed. The sinks (``pytest_dhc_verdict``: the log
file, CloudWatch, the node) get the verdict once: from the child when it delivered its report, else
from here; then stdout, and the exit code follows the verdict whatever stdout does.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from dhc import report
from dhc.cli.output import to_stdout, warn
from dhc.cli.progress import Progress
from dhc.cli.summary import print_summary
from dhc.cli.supervise import ChildOutcome, StopSignals, Supervisor, describe_exit
from dhc.errors import DhcError, UsageError
from dhc.instance import InstanceIdentity
from dhc.model.codec import ModelError
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
    parser.add_argument("--profile", default="quick", metavar="NAME", help=f"{' | '.join(PROFILES)} (default: quick)")
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
        document, run_config = execute(args, sys.stderr, stops)
        _deliver(run_config, document)
        if stops.late:
            warn(f"{', '.join(stops.late)} arrived after the verdict stood; the report and sinks were finished first")
    return int(document["verdict"]["exit_code"])


def _deliver(run_config: RunConfig, document: dict[str, Any]) -> None:
    """The sinks once (unless the child delivered this very report), stdout last: a reader that went away
    never costs a sink or the exit code."""
    out = Path(run_config.out)
    text = io.StringIO()
    print_summary(document, out / report.REPORT_NAME, text)
    if run_config.inject:  # a planted fault must never reach log scrapers as a real one
        text.write(f"self-test run with the fault {run_config.inject!r} planted: no fault log lines emitted\n")
    else:
        journal = report.Journal(out / report.JOURNAL_NAME)
        if not _delivered_by_child(journal, document):
            hooks.deliver(hooks.manager(run_config).hook, document, run_config, warn, journal, last_resort=True)
        text.write(_log_lines(out / LOG_NAME, document))
    to_stdout(text.getvalue(), f"the verdict is in {out / report.REPORT_NAME}")


def _delivered_by_child(journal: report.Journal, document: dict[str, Any]) -> bool:
    """Whether the child began delivering (then what its sinks said is repeated here); never twice per run."""
    events = journal.events()
    delivered = [e for e in events if e.get("event") == hooks.DELIVERING]
    if not delivered:
        return False
    for note in (e for e in events if e.get("event") == hooks.SINK_NOTE):
        warn(str(note.get("text")))
    if delivered[-1].get("finished_at") != document["run"]["finished_at"]:
        warn("the sinks have the verdict the child delivered before the run was stopped; this report, rebuilt "
             "after it, stays in the run folder")
    return True


def _log_lines(path: Path, document: dict[str, Any]) -> str:
    """The log lines as the log sink wrote them; made again only if it could not write them."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        lines = verdict_lines(document)
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)


def _request(args: argparse.Namespace) -> RunRequest:
    return RunRequest("--", instance_type=args.instance_type, instance_id=args.instance_id,
                      thresholds=args.thresholds, out=args.out, profile=args.profile, suites=tuple(args.suite),
                      checks=tuple(args.check), inject=args.inject, workers=args.workers,
                      sinks=tuple(getattr(args, "sink", ())), stage=getattr(args, "stage", "final"),
                      log_group=getattr(args, "log_group", None), command=("dhc", *sys.argv[1:]), by_dhc_run=True)


def execute(args: argparse.Namespace, progress_stream: TextIO,
            stops: StopSignals | None = None) -> tuple[dict[str, Any], RunConfig]:
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
    run_info = run_config.run_info()
    return _final_report(outcome, out, run_info, run_config.identity, limits, settings), run_config


def _suites_ini(suites_dir: Path) -> Path:
    own = suites_dir / "pytest.ini"
    return own if own.is_file() else bundled("suites") / "pytest.ini"


def _pytest_argv(suites_dir: Path, config_path: Path, workers: int) -> list[str]:
    """pytest with the suites' own ini and root: a pytest.ini or pyproject in the caller's cwd has no say."""
    argv = [sys.executable, "-m", "pytest", str(suites_dir), "-c", str(_suites_ini(suites_dir)),
            "--rootdir", str(suites_dir), "--confcutdir", str(suites_dir), "-rN", "--dhc-config", str(config_path)]
    # the plugin's xdist scheduler runs the checks that use the devices one at a time (dhc.plugin.schedule)
    return argv + (["-p", "xdist.plugin", "-n", str(workers)] if workers else [])


def _final_report(outcome: ChildOutcome, out: Path, run_info: report.RunInfo, identity: InstanceIdentity,
                  limits: InstanceLimits, settings: Settings) -> dict[str, Any]:
    """The child's report when it wrote one for this run; else one rebuilt from the journal."""
    if outcome.stopped is None:  # when dhc stopped the run, its reason is the one to record
        document = _childs_report(out / report.REPORT_NAME, run_info.run_id)
        if document is not None:
            return document
        if outcome.returncode == _CHILD_USAGE_ERROR:
            raise DhcError(f"pytest refused to run the suites: {_log_tail(out / PYTEST_LOG_NAME)}")
    ended_by = outcome.stopped or f"{describe_exit(outcome.returncode)} without a report: " \
                                  f"{_log_tail(out / PYTEST_LOG_NAME)}"
    typed, problem = report.finish_report(out, run_info, identity, limits, software_versions(dcgmi=settings.dcgmi),
                                          report.read_plan(out), report.journal_results(out), ended_by)
    if problem:
        warn(problem)
    return typed.to_dict()


def _childs_report(path: Path, run_id: str) -> dict[str, Any] | None:
    """The child's report of this run, when the typed model reads it; else None (rebuilt from the journal)."""
    try:
        document = report.read_json(path)
        typed = Report.from_dict(document)
    except (DhcError, ModelError):
        return None  # none, unreadable, or not a whole report: never trusted, rebuilt from the journal
    return document if typed.run.run_id == run_id else None  # type: ignore[no-any-return]


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no pytest log)"
    return " | ".join(text[-lines:]) or "(empty pytest log)"
