"""``dhc run``: resolve who and what, run the suites through pytest, and stand behind one verdict.

Configuration is checked here first (exit 2 before anything runs). pytest then runs in a child
process under ``Supervisor``, isolated from the caller's pytest setup: no PYTEST_* variables, no
autoloaded plugins, the suites' own ini. Whatever happens to the child, a schema-valid report.json
results: the child's own, or, when dhc stopped the run or the child died, one rebuilt from its
journal with every unfinished check Incomplete and ``ended_by`` saying why.

One run, one folder: an ``--out`` that holds an earlier run's files (report, journal, log lines)
is started clean, and dhc says which files it removed. The verdict goes to every sink (log file,
CloudWatch, the node) before stdout, and the exit code follows the verdict whatever stdout does.
"""

from __future__ import annotations

import argparse
import io
import sys
import uuid
from pathlib import Path
from typing import Any, TextIO

from dhc import report
from dhc.cli.output import to_stdout, warn
from dhc.cli.progress import Progress
from dhc.cli.summary import print_summary
from dhc.cli.supervise import ChildOutcome, StopSignals, Supervisor, describe_exit
from dhc.errors import DhcError, UsageError
from dhc.injections import INJECTIONS
from dhc.instance import InstanceIdentity, resolve_identity
from dhc.model import CheckResult, PlannedCheck
from dhc.probes.environment import software_versions
from dhc.probes.unseen_gpus import refuse_unseen_gpus
from dhc.report.folder import IDENTITY_NAME, LOG_NAME, PYTEST_LOG_NAME, earlier_run_note, start_clean
from dhc.resources import bundled
from dhc.settings import Settings, pytest_child_environment
from dhc.sinks.logline import summary_line, verdict_lines, write_lines
from dhc.thresholds import CATALOGUE, SUITES, InstanceLimits, load

_CHILD_USAGE_ERROR = 4  # pytest's exit code when it refuses its arguments or configuration


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", action="append", default=[], choices=list(SUITES.values()),
                        help="run only this suite; repeatable (default: all)")
    parser.add_argument("--check", action="append", default=[], metavar="ID",
                        help=f"run only this check; repeatable ({', '.join(CATALOGUE)})")
    parser.add_argument("--instance-type", help="instance type (default: discovered; 'cpu' without GPUs)")
    parser.add_argument("--instance-id", help="instance ID (default: discovered)")
    parser.add_argument("--thresholds", metavar="FILE", help="thresholds file (default: bundled)")
    parser.add_argument("--out", metavar="DIR", help="folder for the report (default: reports/<instance>-<UTC time>)")
    parser.add_argument("--profile", choices=["quick", "full"], default="quick", help="default: quick")
    parser.add_argument("--inject", choices=sorted(INJECTIONS), metavar="FAULT",
                        help=f"plant a fault to prove its detector ({', '.join(sorted(INJECTIONS))})")
    parser.add_argument("--sink", action="append", default=[], choices=["cloudwatch", "kubernetes", "termination"],
                        help="also send the verdict's log lines here (repeatable)")
    parser.add_argument("--stage", choices=["final", "stress"], default="final",
                        help="with --sink kubernetes: 'stress' when a connectivity stage follows (a pass keeps the "
                             "node unschedulable)")
    parser.add_argument("--log-group", help="CloudWatch log group (default: /aws/sagemaker/Clusters/<cluster>/<id>)")
    parser.add_argument("-n", "--workers", type=int, default=0, metavar="N",
                        help="run checks in N pytest-xdist worker processes (default: in one process)")


def run_command(args: argparse.Namespace) -> int:
    with StopSignals() as stops:
        document, out = execute(args, sys.stderr, stops)
        _deliver(args, document, out)
        if stops.late:
            warn(f"{', '.join(stops.late)} arrived after the verdict stood; the report and sinks were finished first")
    return int(document["verdict"]["exit_code"])


def _deliver(args: argparse.Namespace, document: dict[str, Any], out: Path) -> None:
    """Every sink first, stdout last: a reader that went away never costs a sink or the exit code."""
    text = io.StringIO()
    print_summary(document, out / report.REPORT_NAME, text)
    if args.inject:  # a planted fault must never reach log scrapers as a real one
        text.write(f"self-test run with the fault {args.inject!r} planted: no fault log lines emitted\n")
    else:
        try:
            write_lines(verdict_lines(document), text, out / LOG_NAME)
        except OSError as exc:
            warn(f"cannot write {out / LOG_NAME}: {exc.strerror or exc}; the report stands")
        _to_sinks(args, document)
    to_stdout(text.getvalue(), f"the verdict is in {out / report.REPORT_NAME}")


def _to_sinks(args: argparse.Namespace, document: dict[str, Any]) -> None:
    if "cloudwatch" in args.sink:
        _to_cloudwatch(document, args.log_group)
    if "kubernetes" in args.sink:
        _to_node(document, final=args.stage == "final")
    if "termination" in args.sink:  # the controller's check pods: the verdict rides on the pod's status
        from dhc.sinks import termination
        termination.hand_over(document, args.stage, Settings.from_env().termination_log, sys.stderr)


def _to_node(document: dict[str, Any], final: bool) -> None:
    """Write this node's verdict onto its Kubernetes Node; a failure is reported, the report stands."""
    from dhc.sinks import node  # the kubernetes client only when asked for

    settings = Settings.from_env()
    if not settings.node_name:
        warn("sink kubernetes needs NODE_NAME (the downward API's spec.nodeName)")
        return
    try:
        state = node.write_verdict(node.Kube(), settings.node_name, document, settings.k8s_prefix, final)
    except node.K8sError as exc:
        warn(f"sink kubernetes failed, the local report is intact: {exc}")
        return
    warn(f"node {settings.node_name} marked {state.check_status} / {state.health}")


def _to_cloudwatch(document: dict[str, Any], log_group: str | None) -> None:
    """A sink that fails is reported on stderr; the verdict and the local report stand."""
    from dhc.sinks import cloudwatch  # boto3 only when asked for

    settings = Settings.from_env()
    where = cloudwatch.destination(document, settings.cluster, settings.cluster_id, log_group or settings.log_group)
    try:
        sent = cloudwatch.send([*verdict_lines(document), summary_line(document)], where)
    except cloudwatch.SinkError as exc:
        warn(f"sink failed, the local report is intact: {exc}")
        return
    warn(f"sent {sent} log event(s) to CloudWatch Logs {where.group} / {where.stream}")


def execute(args: argparse.Namespace, progress_stream: TextIO,
            stops: StopSignals | None = None) -> tuple[dict[str, Any], Path]:
    """Check the configuration, run the suites under supervision, return the report and its folder."""
    if stops is None:
        with StopSignals() as own:
            return execute(args, progress_stream, own)
    settings = Settings.from_env()
    unknown = [c for c in args.check if c not in CATALOGUE]
    if unknown:
        raise UsageError(f"--check: unknown check id {unknown[0]!r}; known: {', '.join(CATALOGUE)}")
    if args.workers < 0:
        raise UsageError(f"-n: expected a number of workers >= 0, got {args.workers}")
    thresholds = load(args.thresholds or settings.thresholds_file)
    identity = resolve_identity({"instance_type": args.instance_type, "instance_id": args.instance_id}, settings)
    if not identity.instance_type.value:
        raise UsageError("cannot tell the instance type (a GPU is present, but no flag, DHC_INSTANCE_TYPE or "
                         "EC2 metadata named it): pass --instance-type")
    limits = thresholds.resolve(identity.instance_type.value, args.profile)
    if not limits.instance_type.gpus:
        refuse_unseen_gpus(f"--instance-type {limits.instance_type.name}")
    suites_dir = Path(settings.suites_dir) if settings.suites_dir else bundled("suites")
    if not (suites_dir / "conftest.py").is_file():
        raise UsageError(f"no dhc suites at {suites_dir} (set DHC_SUITES to the suites folder)")
    out = Path(args.out or settings.out_dir or Path("reports") / report.default_run_name(identity.instance_id.value or "unknown"))
    report.ensure_writable_dir(out)
    earlier = start_clean(out, "--out")
    run_info = report.RunInfo(uuid.uuid4().hex[:12], report.utc_now(), args.profile, args.suite, args.check,
                              ["dhc", *sys.argv[1:]], inject=args.inject)
    report.write_json_atomic(out / IDENTITY_NAME, identity.to_dict())
    argv = _pytest_argv(args, suites_dir, out, thresholds.path, run_info.run_id)
    devices = f"{limits.instance_type.gpus} GPU(s)" if limits.instance_type.gpus else "the CPU"
    progress = Progress(progress_stream, devices)
    progress.note(f"{identity.instance_id.value} ({limits.instance_type.name}), profile {args.profile}, "
                  f"report in {out}")
    if earlier:
        progress.note(earlier_run_note(out, earlier))
    outcome = Supervisor(argv, suites_dir, out, out / PYTEST_LOG_NAME, progress, pytest_child_environment(),
                         collect_timeout_s=settings.collect_timeout_s, grace_s=settings.watchdog_grace_s,
                         stops=stops).run()  # settles the stop signals the moment the child has ended
    return _final_report(outcome, out, run_info, identity, limits, settings), out


def _suites_ini(suites_dir: Path) -> Path:
    own = suites_dir / "pytest.ini"
    return own if own.is_file() else bundled("suites") / "pytest.ini"


def _pytest_argv(args: argparse.Namespace, suites_dir: Path, out: Path, thresholds_path: str, run_id: str) -> list[str]:
    """pytest with the suites' own ini and root: a pytest.ini or pyproject in the caller's cwd has no say."""
    argv = [sys.executable, "-m", "pytest", str(suites_dir), "-c", str(_suites_ini(suites_dir)),
            "--rootdir", str(suites_dir), "--confcutdir", str(suites_dir), "-rN", "--dhc-out", str(out.resolve()),
            "--dhc-identity", str((out / IDENTITY_NAME).resolve()), "--dhc-run-id", run_id,
            "--dhc-profile", args.profile, "--dhc-thresholds", str(Path(thresholds_path).resolve())]
    argv += [f"--dhc-suite={s}" for s in args.suite] + [f"--dhc-check={c}" for c in args.check]
    argv += [f"--dhc-inject={args.inject}"] if args.inject else []
    # the plugin's xdist scheduler runs the checks that use the devices one at a time (dhc.plugin.schedule)
    return argv + (["-p", "xdist.plugin", "-n", str(args.workers)] if args.workers else [])


def _final_report(outcome: ChildOutcome, out: Path, run_info: report.RunInfo, identity: InstanceIdentity,
                  limits: InstanceLimits, settings: Settings) -> dict[str, Any]:
    """The child's report when it wrote one for this run; else one rebuilt from the journal."""
    if outcome.stopped is None:  # when dhc stopped the run, its reason is the one to record
        document = _childs_report(out / report.REPORT_NAME, run_info.run_id)
        if document is not None:
            return document
        if outcome.returncode == _CHILD_USAGE_ERROR:
            raise DhcError(f"pytest refused to run the suites: {_log_tail(out / PYTEST_LOG_NAME)}")
    run_info.ended_by = outcome.stopped or f"{describe_exit(outcome.returncode)} without a report: " \
                                           f"{_log_tail(out / PYTEST_LOG_NAME)}"
    run_info.finished_at = report.utc_now()
    journal = report.Journal(out / report.JOURNAL_NAME).events()
    results = [CheckResult.from_dict(e["result"]) for e in journal if e.get("event") == "result"]
    plan = _read_plan(out)
    results = report.complete_results(plan, results, run_info.ended_by)
    document = report.build_document(run_info, identity, limits, software_versions(dcgmi=settings.dcgmi), results)
    problem = report.save_report(out, document)
    if problem:
        warn(problem)
    return document


def _childs_report(path: Path, run_id: str) -> dict[str, Any] | None:
    try:
        document = report.read_json(path)
    except DhcError:
        return None  # none, or unreadable: rebuilt from the journal
    run = document.get("run") if isinstance(document, dict) else None
    return document if isinstance(run, dict) and run.get("run_id") == run_id else None


def _read_plan(out: Path) -> list[PlannedCheck]:
    try:
        return [PlannedCheck(**p) for p in report.read_json(out / report.PLAN_NAME)]
    except DhcError:
        return []


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no pytest log)"
    return " | ".join(text[-lines:]) or "(empty pytest log)"
