"""The ``dhc`` command line. Errors a user can fix print one line and exit 2, never a traceback.

Exit codes of ``dhc run``: 0 Passed, 1 Failed, 3 Incomplete, 2 usage or configuration error.
``dhc selftest``: 0 when every planted fault was caught, 1 when one was missed.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import dhc
from dhc.errors import DhcError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 too; keep its wording, our prefix
        self.print_usage(sys.stderr)
        sys.stderr.write(f"dhc: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _deviations(text: str) -> float:
    """-k: a finite number above 0 (nan or inf would make every or no value a suspect)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number above 0, such as 3.5")
    return value


def build_parser() -> argparse.ArgumentParser:
    from dhc.cli import agent_cmd, controller_cmd, nccl_cmd, resume_cmd, run, selftest, thresholds_cmd

    parser = _Parser(prog="dhc", description="Deep health checks for GPU training nodes.",
                     epilog="exit codes: 0 Passed, 1 Failed, 3 Incomplete, 2 usage or configuration error")
    parser.add_argument("--version", action="version", version=f"dhc {dhc.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, help_text, add_arguments, handler in (
        ("run", "run the health check suites on this machine", run.add_arguments, run.run_command),
        ("selftest", "plant known faults and prove the checks catch them", selftest.add_arguments,
         selftest.selftest_command),
        ("controller", "run the Kubernetes controller (checks joining nodes)", controller_cmd.add_arguments,
         controller_cmd.controller_command),
        ("resume", "restart opted-in training jobs interrupted by a node fault",
         functools.partial(resume_cmd.add_arguments, alone=True), resume_cmd.resume_command),
        ("agent", "watch this GPU node for faults while it trains (a DaemonSet)", agent_cmd.add_arguments,
         agent_cmd.agent_command),
        ("nccl-tests", "a verdict on an existing nccl-tests all_reduce_perf log", nccl_cmd.add_arguments,
         nccl_cmd.nccl_command),
    ):
        _command(sub, name, help_text, add_arguments, handler)
    _report_commands(sub)
    _command(sub, "thresholds", "validate or show thresholds", thresholds_cmd.add_arguments,
             thresholds_cmd.thresholds_command)
    return parser


def _command(sub: Any, name: str, help_text: str, add_arguments: Callable[[argparse.ArgumentParser], None],
             handler: Callable[[argparse.Namespace], int]) -> None:
    """One subcommand: its parser, its own arguments, and the function that runs it."""
    parser = sub.add_parser(name, help=help_text)
    add_arguments(parser)
    parser.set_defaults(handler=handler)


def _report_commands(sub: Any) -> None:
    """``dhc report show`` (one report's page) and ``dhc report fleet`` (many reports' review)."""
    report_parser = sub.add_parser("report", help="render reports for people")
    report_sub = report_parser.add_subparsers(dest="report_command", required=True, parser_class=_Parser)
    show_parser = report_sub.add_parser("show", help="render one report.json as a self-contained HTML page")
    show_parser.add_argument("report", help="a report.json")
    show_parser.add_argument("-o", "--out", help="the page to write (default: beside the report, .html)")
    show_parser.set_defaults(handler=_report_show)
    fleet_parser = report_sub.add_parser("fleet", help="review many reports: counts, failures, outliers")
    fleet_parser.add_argument("paths", nargs="+", help="report.json files, or folders searched for them")
    fleet_parser.add_argument("-o", "--out", default="fleet.html", help="the page (default: fleet.html)")
    fleet_parser.add_argument("--json", help="also write the review as JSON")
    fleet_parser.add_argument("--csv", help="the node table as CSV, linked from the page (default: the page's name, .csv)")
    fleet_parser.add_argument("-k", type=_deviations, default=3.5, help="robust deviations that make a suspect (3.5)")
    fleet_parser.add_argument("--workers", type=int, help="processes reading reports (default: the CPUs available)")
    fleet_parser.set_defaults(handler=_report_fleet)


def _report_show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dhc.report.html import show

    print(show(Path(args.report), Path(args.out) if args.out else None))
    return 0


def _report_fleet(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dhc import fleet
    from dhc.report.fleet_html import write_fleet

    if args.workers is not None and args.workers < 1:
        raise DhcError(f"--workers: expected a whole number of processes >= 1, got {args.workers}")
    document, table = fleet.review([Path(p) for p in args.paths], args.k, args.workers)
    for skipped in document["skipped"]:
        sys.stderr.write(f"dhc: skipped {skipped['file']}: {skipped['why']}\n")
    if not document["reports"]:
        raise DhcError(f"no readable dhc reports in {', '.join(args.paths)}")
    out = Path(args.out)
    files = {"CSV": Path(args.csv or out.with_suffix(".csv"))} | ({"JSON": Path(args.json)} if args.json else {})
    fleet.write_csv(table, files["CSV"])
    if args.json:
        fleet.write_json(document, files["JSON"])
    print(write_fleet(document, out, files))
    for file in files.values():
        print(file)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except DhcError as exc:
        sys.stderr.write(f"dhc: error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("dhc: interrupted before the run started\n")
        return 3
    except BrokenPipeError:  # `dhc thresholds show T | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        # dhc run keeps its verdict's exit code itself; another command with a verdict (nccl-tests,
        # selftest) that lost its reader mid-answer must not read as a pass: 3, undecided
        return 0 if args.command in ("thresholds", "report") else 3

