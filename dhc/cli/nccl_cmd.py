"""``dhc nccl-tests LOG``: a verdict on an existing nccl-tests all_reduce_perf log.

The worst sweep's peak bus bandwidth over its largest sizes is judged against the instance type's
intra-node or inter-node limit; NCCL INFO lines in the same log, if any, are checked for the
transport. The scope comes from the log (its ranks' hosts, the hosts of its NCCL INFO lines, or
more ranks than one node has GPUs) or from ``--scope``; a log that cannot tell is a usage error,
never a guess. Exit 0 Passed, 1 Failed, 3 Incomplete, 2 usage error.

The answer is written to stdout once, at the end, through a guarded writer: a reader that left
(``| head``) or a full stdout (``> /dev/full``) is said on stderr and never changes the exit code,
which stays the verdict's (Python's own exit-time flush would otherwise turn it into 120).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from dhc.cli.output import to_stdout
from dhc.errors import UsageError
from dhc.model import Finding, Judgement, Measurement, Status
from dhc.probes import nccl_log, nccl_tests, nccl_verdict
from dhc.settings import Settings
from dhc.textfile import MAX_LOG_BYTES, read_text
from dhc.thresholds import load, suite_of

CHECK = "connectivity.allreduce"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", help="an all_reduce_perf output, as printed (rank prefixes and wrappers are fine)")
    parser.add_argument("--instance-type", required=True)
    parser.add_argument("--scope", choices=["auto", "intra", "inter"], default="auto",
                        help="which limit applies (auto: from the hosts the log lists; exit 2 when it cannot tell)")
    parser.add_argument("--thresholds", metavar="FILE", help="default: the bundled thresholds.yaml")


def nccl_command(args: argparse.Namespace) -> int:
    lines: list[str] = []
    try:
        return _judge(args, lines.append)
    finally:  # a usage error still shows what was read before it
        to_stdout("".join(f"{line}\n" for line in lines), "the exit code is the verdict's")


def _judge(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    limits = load(args.thresholds or Settings.from_env().thresholds_file).resolve(args.instance_type)
    try:
        text = read_text(Path(args.log), MAX_LOG_BYTES, errors="replace")  # regular files only: a FIFO never blocks
    except OSError as exc:
        raise UsageError(f"{args.log}: cannot read: {exc.strerror or exc}") from None
    try:
        run = nccl_tests.parse(text)
    except nccl_tests.NcclTestsOutputError as exc:
        return _verdict([], [f"{args.log}: {exc}"], say, quiet=True)
    min_largest = int(limits.timing(CHECK).settings.get("max_bytes", 0))
    result = nccl_verdict.assess(run, min_largest)
    scope, why = nccl_verdict.scope(run, result.ranks, limits.instance_type.gpus)
    if args.scope != "auto":
        scope, why = args.scope, "--scope"
    largest = f"{run.largest().size_bytes} B" if run.rows else "none readable"
    say(f"{args.log}: {len(run.rows)} rows in {len(run.sweeps)} sweep(s), largest {largest}; "
        f"scope: {scope or 'unknown'} ({why})")
    if scope is None:
        if not result.faults and not result.unknowns:
            raise UsageError(f"{args.log}: cannot tell intra-node from inter-node: {why}; "
                             "pass --scope intra or --scope inter")
        return _verdict(nccl_verdict.faults(CHECK, result.faults, nccl_verdict.WRONG_VALUES), result.unknowns, say)
    summary = nccl_log.parse(text)
    efa, nvlink = limits.instance_type.efa > 0, limits.instance_type.nvlinks_per_gpu > 0
    say(f"  transport: {summary.describe()}")
    if summary.logged:
        for unknown in nccl_log.transport_unknowns(summary, efa, scope == "inter"):
            say(f"  transport: {unknown}")
    faults = nccl_verdict.faults(CHECK, result.faults, nccl_verdict.WRONG_VALUES) + nccl_verdict.faults(
        CHECK, nccl_log.transport_faults(summary, efa, nvlink, scope == "inter"), nccl_verdict.WRONG_TRANSPORT)
    if result.judged is not None:
        faults += _bandwidth(result.judged, f"busbw_{scope}_node", run, limits, result.unknowns, say)
    return _verdict(faults, result.unknowns, say)


def _bandwidth(row: nccl_tests.SizeRow, metric: str, run: nccl_tests.NcclTestsRun, limits, unknowns: list[str],
               say: Callable[[str], None]) -> list[Finding]:
    measured = Measurement(CHECK, metric, row.best_busbw, "GB/s", None, limits.check(CHECK).limits.get(metric))
    say(f"  judging {metric} at {row.size_bytes} B (line {row.line}): the best of each sweep's largest sizes, "
        f"the worst of {len(run.sweeps)} sweep(s); nccl-tests' average over all sizes ({run.avg_busbw}) is not judged")
    say(f"  {measured.describe()}")
    if measured.judgement is Judgement.OUTSIDE:
        return [Finding.from_measurement(measured)]  # the limit's action, as dhc run's recorder gives it
    if measured.judgement is not Judgement.WITHIN:
        unknowns.append(f"no calibrated {metric} limit for {limits.instance_type.name}")
    return []


def _verdict(faults: list[Finding], unknowns: list[str], say: Callable[[str], None], quiet: bool = False) -> int:
    """Say the faults and unknowns (unless ``quiet``), then the verdict ``dhc run``'s rules reach; its exit code."""
    for fault in [] if quiet else faults:
        say(f"  fault: {fault.message}")
    for unknown in [] if quiet else unknowns:
        say(f"  cannot judge: {unknown}")
    verdict = nccl_verdict.verdict(CHECK, suite_of(CHECK), faults, unknowns)
    why = f": {verdict.reasons[0].message}" if verdict.status is Status.INCOMPLETE else \
        f", action {verdict.action}" if verdict.status is Status.FAILED else ""
    say(f"verdict: {verdict.status}{why}")
    return verdict.exit_code

