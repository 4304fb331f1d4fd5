"""``dhc run``: resolve who and what, run the suites through pytest, and stand behind one verdict.

Configuration is checked here first (exit 2 before anything runs). pytest then runs in a child
process under ``Supervisor``. Whatever happens to the child, a schema-valid report.json results:
the child's own, or one rebuilt from its journal with every unfinished check Incomplete.
"""

from __future__ import annotations

import argparse
import signal
import sys
import uuid
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from dhc import report
from dhc.cli.progress import Progress
from dhc.cli.summary import print_summary
from dhc.cli.supervise import ChildOutcome, Supervisor
from dhc.errors import DhcError, UsageError
from dhc.injections import INJECTIONS
from dhc.instance import InstanceIdentity, resolve_identity
from dhc.model import CheckResult, PlannedCheck
from dhc.probes.environment import software_versions
from dhc.resources import bundled
from dhc.settings import Settings
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
    document, out = execute(args, sys.stderr)
    print_summary(document, out / report.REPORT_NAME, sys.stdout)
    if args.inject:  # a planted fault must never reach log scrapers as a real one
        print(f"self-test run with the fault {args.inject!r} planted: no fault log lines emitted")
    else:
        write_lines(verdict_lines(document), sys.stdout, out / "dhc.log.jsonl")
        if "cloudwatch" in args.sink:
            _to_cloudwatch(document, args.log_group)
        if "kubernetes" in args.sink:
            _to_node(document, final=args.stage == "final")
        if "termination" in args.sink:  # the controller's check pods: the verdict rides on the pod's status
            from dhc.sinks import termination
            termination.hand_over(document, args.stage, Settings.from_env().termination_log, sys.stderr)
    return int(document["verdict"]["exit_code"])


def _to_node(document: dict[str, Any], final: bool) -> None:
    """Write this node's verdict onto its Kubernetes Node; a failure is reported, the report stands."""
    from dhc.sinks import node  # the kubernetes client only when asked for

    settings = Settings.from_env()
    if not settings.node_name:
        sys.stderr.write("dhc: sink kubernetes needs NODE_NAME (the downward API's spec.nodeName)\n")
        return
    try:
        state = node.write_verdict(node.Kube(), settings.node_name, document, settings.k8s_prefix, final)
    except node.K8sError as exc:
        sys.stderr.write(f"dhc: sink kubernetes failed, the local report is intact: {exc}\n")
        return
    sys.stderr.write(f"dhc: node {settings.node_name} marked {state.check_status} / {state.health}\n")


def _to_cloudwatch(document: dict[str, Any], log_group: str | None) -> None:
    """A sink that fails is reported on stderr; the verdict and the local report stand."""
    from dhc.sinks import cloudwatch  # boto3 only when asked for

    settings = Settings.from_env()
    where = cloudwatch.destination(document, settings.cluster, settings.cluster_id, log_group or settings.log_group)
    try:
        sent = cloudwatch.send([*verdict_lines(document), summary_line(document)], where)
    except cloudwatch.SinkError as exc:
        sys.stderr.write(f"dhc: sink failed, the local report is intact: {exc}\n")
        return
    sys.stderr.write(f"dhc: sent {sent} log event(s) to CloudWatch Logs {where.group} / {where.stream}\n")


def execute(args: argparse.Namespace, progress_stream: TextIO) -> tuple[dict[str, Any], Path]:
    """Check the configuration, run the suites under supervision, return the report and its folder."""
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
    suites_dir = Path(settings.suites_dir) if settings.suites_dir else bundled("suites")
    if not (suites_dir / "conftest.py").is_file():
        raise UsageError(f"no dhc suites at {suites_dir} (set DHC_SUITES to the suites folder)")
    out = Path(args.out or settings.out_dir or Path("reports") / report.default_run_name(identity.instance_id.value or "unknown"))
    report.ensure_writable_dir(out)
    for stale in (report.REPORT_NAME, report.JOURNAL_NAME, report.PLAN_NAME):
        (out / stale).unlink(missing_ok=True)
    run_info = report.RunInfo(uuid.uuid4().hex[:12], report.utc_now(), args.profile, args.suite, args.check,
                              ["dhc", *sys.argv[1:]], inject=args.inject)
    report.write_json_atomic(out / "identity.json", identity.to_dict())
    argv = _pytest_argv(args, suites_dir, out, thresholds.path, run_info.run_id)
    devices = f"{limits.instance_type.gpus} GPU(s)" if limits.instance_type.gpus else "the CPU"
    progress = Progress(progress_stream, devices)
    progress.note(f"{identity.instance_id.value} ({limits.instance_type.name}), profile {args.profile}, "
                  f"report in {out}")
    with _sigterm_as_interrupt():
        outcome = Supervisor(argv, suites_dir, out, out / "pytest.log", progress, None,
                             collect_timeout_s=settings.collect_timeout_s, grace_s=settings.watchdog_grace_s).run()
    return _final_report(outcome, out, run_info, identity, limits, settings), out


def _pytest_argv(args: argparse.Namespace, suites_dir: Path, out: Path, thresholds_path: str, run_id: str) -> list[str]:
    argv = [sys.executable, "-m", "pytest", str(suites_dir), "-rN", "--dhc-out", str(out.resolve()),
            "--dhc-identity", str((out / "identity.json").resolve()), "--dhc-run-id", run_id,
            "--dhc-profile", args.profile, "--dhc-thresholds", str(Path(thresholds_path).resolve())]
    argv += [f"--dhc-suite={s}" for s in args.suite] + [f"--dhc-check={c}" for c in args.check]
    argv += [f"--dhc-inject={args.inject}"] if args.inject else []
    return argv + (["-n", str(args.workers)] if args.workers else ["-p", "no:xdist"])


def _final_report(outcome: ChildOutcome, out: Path, run_info: report.RunInfo, identity: InstanceIdentity,
                  limits: InstanceLimits, settings: Settings) -> dict[str, Any]:
    """The child's report when it wrote one for this run; else one rebuilt from the journal."""
    path = out / report.REPORT_NAME
    if path.exists():  # stale reports were removed at the start, so this one is the child's
        document = report.read_json(path)
        if document.get("run", {}).get("run_id") == run_info.run_id:
            return document
    if outcome.stopped is None and outcome.returncode == _CHILD_USAGE_ERROR:
        raise DhcError(f"pytest refused to run the suites: {_log_tail(out / 'pytest.log')}")
    run_info.ended_by = outcome.stopped or f"pytest ended (exit status {outcome.returncode}) without a report: " \
                                           f"{_log_tail(out / 'pytest.log')}"
    run_info.finished_at = report.utc_now()
    journal = report.Journal(out / report.JOURNAL_NAME).events()
    results = [CheckResult.from_dict(e["result"]) for e in journal if e.get("event") == "result"]
    plan = _read_plan(out)
    results = report.complete_results(plan, results, run_info.ended_by)
    document = report.build_document(run_info, identity, limits, software_versions(dcgmi=settings.dcgmi), results)
    problem = report.save_report(out, document)
    if problem:
        sys.stderr.write(f"dhc: {problem}\n")
    return document


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


class _sigterm_as_interrupt:
    """Kubernetes stops a pod with SIGTERM: treat it like Ctrl-C so the report is still written."""

    def __enter__(self) -> None:
        self.previous = signal.signal(signal.SIGTERM, self._raise)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self.previous)

    @staticmethod
    def _raise(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt("SIGTERM")
