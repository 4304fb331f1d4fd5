"""``dhc selftest``: plant each known fault at its engine's seam and require the check to fail on it.

This proves on the node's own software stack (driver, CUDA, torch) that the detectors still catch
what they are for: a flipped bit, a device outvoted by its siblings, a corrupted memory word, a
slow device. Exit 0 when every planted fault was caught, naming the device it was planted on.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhc import report
from dhc.cli import run
from dhc.injections import INJECTIONS, MULTI_NODE, check_of


@dataclass(frozen=True)
class Expectation:
    device_index: int
    words: str  # what the finding must say


EXPECTED = {
    "gemm-bitflip": Expectation(1, "silent data corruption"),
    "gemm-sibling": Expectation(2, "sibling"),
    "gemm-slow": Expectation(0, "relative_to_median"),
    "memtest-word": Expectation(0, "read back wrong"),
    "pairwise-slow-node": Expectation(-1, "slow with known-good partners"),  # needs a group of nodes
}
assert set(EXPECTED) == set(INJECTIONS), "every injection needs an expectation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fault", action="append", choices=sorted(set(INJECTIONS) - MULTI_NODE), default=[],
                        help="plant only this fault; repeatable (default: all)")
    parser.add_argument("--instance-type", help="instance type (default: discovered)")
    parser.add_argument("--thresholds", metavar="FILE", help="thresholds file (default: bundled)")
    parser.add_argument("--out", metavar="DIR", help="folder for the runs (default: reports/selftest-<UTC time>)")


def selftest_command(args: argparse.Namespace) -> int:
    out = Path(args.out or Path("reports") / report.default_run_name("selftest"))
    caught = 0
    faults = args.fault or sorted(set(INJECTIONS) - MULTI_NODE)
    for fault in faults:
        run_args = argparse.Namespace(suite=[], check=[check_of(fault)], instance_type=args.instance_type,
                                      instance_id=None, thresholds=args.thresholds, out=str(out / fault),
                                      profile="quick", workers=0, inject=fault)
        document, _ = run.execute(run_args, sys.stderr)
        ok, detail = judge(fault, document)
        caught += ok
        print(f"  {fault:<14} {'caught' if ok else 'MISSED':<7} {detail}")
    print(f"selftest: {caught} of {len(faults)} planted faults caught; reports in {out}")
    for fault in sorted(MULTI_NODE):
        print(f"  (not planted here: {fault} needs a group of nodes; `dhc run --inject {fault}` on one node of it)")
    return 0 if caught == len(faults) else 1


def judge(fault: str, document: dict[str, Any]) -> tuple[bool, str]:
    """Caught: the run Failed with a finding that names the planted device and says the right thing."""
    expected = EXPECTED[fault]
    verdict = document["verdict"]
    for reason in verdict["reasons"]:
        device = reason.get("device") or {}
        if (reason["status"] == "Failed" and device.get("index") == expected.device_index
                and expected.words in reason["message"]):
            return verdict["status"] == "Failed", f"{reason['check']} on {_label(device)}: {reason['message']}"
    found = "; ".join(r["message"] for r in verdict["reasons"]) or "no finding"
    return False, f"verdict {verdict['status']}, expected a failure on device {expected.device_index}: {found}"


def _label(device: dict[str, Any]) -> str:
    return f"{device['kind']} {device['index']}"
