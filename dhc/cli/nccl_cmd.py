"""``dhc nccl-tests LOG``: a verdict on an existing nccl-tests all_reduce_perf log.

The peak bus bandwidth over the largest sizes is judged against the instance type's intra-node or
inter-node limit (inter when the log's ranks span several hosts); NCCL INFO lines in the same log,
if any, are checked for the transport. Exit 0 Passed, 1 Failed, 3 Incomplete, 2 usage error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dhc.errors import UsageError
from dhc.model import Judgement, Measurement
from dhc.probes import nccl_log, nccl_tests
from dhc.settings import Settings
from dhc.thresholds import load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", help="an all_reduce_perf output, as printed (rank prefixes and wrappers are fine)")
    parser.add_argument("--instance-type", required=True)
    parser.add_argument("--scope", choices=["auto", "intra", "inter"], default="auto",
                        help="which limit applies (auto: inter when the ranks span several hosts)")
    parser.add_argument("--thresholds", metavar="FILE", help="default: the bundled thresholds.yaml")


def nccl_command(args: argparse.Namespace) -> int:
    limits = load(args.thresholds or Settings.from_env().thresholds_file).resolve(args.instance_type)
    try:
        text = Path(args.log).read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"{args.log}: cannot read: {exc.strerror or exc}") from None
    try:
        run = nccl_tests.parse(text)
    except nccl_tests.NcclTestsOutputError as exc:
        print(f"verdict: Incomplete: {args.log}: {exc}")
        return 3
    scope = args.scope if args.scope != "auto" else ("inter" if len(run.hosts) > 1 else "intra")
    metric = f"busbw_{scope}_node"
    peak = run.peak_busbw(run.largest().size_bytes // 8)
    measured = Measurement("connectivity.allreduce", metric, max(peak.busbw, peak.in_place_busbw), "GB/s", None,
                           limits.check("connectivity.allreduce").limits.get(metric))
    where = f"{run.ranks} ranks on {len(run.hosts)} host(s)" if run.ranks else "ranks not listed"
    print(f"{args.log}: {where}; largest size {run.largest().size_bytes} B; judging {metric} "
          f"(the best of the largest sizes, not nccl-tests' average {run.avg_busbw})")
    print(f"  {measured.describe()}")
    faults = [f"{run.wrong} wrong elements"] if run.wrong else []
    summary = nccl_log.parse(text)
    if summary.networks or summary.net_channels or summary.p2p_channels:
        faults += nccl_log.transport_faults(summary, limits.instance_type.efa > 0,
                                            limits.instance_type.nvlinks_per_gpu > 0, scope == "inter")
    judgement = measured.judgement
    for fault in faults:
        print(f"  fault: {fault}")
    if judgement is Judgement.OUTSIDE or faults:
        print("verdict: Failed")
        return 1
    if judgement is not Judgement.WITHIN:
        print(f"verdict: Incomplete: no calibrated {metric} limit for {limits.instance_type.name}")
        return 3
    print("verdict: Passed")
    return 0
