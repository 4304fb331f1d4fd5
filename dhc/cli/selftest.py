"""``dhc selftest``: plant each known fault at its engine's seam and require the check to fail on it.

This proves on the node's own software stack (driver, CUDA, torch) that the detectors still catch
what they are for: a flipped bit, a device outvoted by its siblings, a corrupted memory word, a
slow device. Exit 0 when every planted fault was caught, naming the device it was planted on.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dhc import report
from dhc.cli import run
from dhc.injections import FAULTS, MULTI_NODE, check_of
from dhc.model import Device, NodeVerdict
from dhc.model.choices import DEFAULT_PROFILE
from dhc.thresholds.catalogue import Caught

# What each fault must be caught as is declared with the fault, in the catalogue entry of its check.


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fault", action="append", choices=sorted(set(FAULTS) - MULTI_NODE), default=[],
                        help="plant only this fault; repeatable (default: all)")
    parser.add_argument("--instance-type", help="instance type (default: discovered)")
    parser.add_argument("--thresholds", metavar="FILE", help="thresholds file (default: bundled)")
    parser.add_argument("--out", metavar="DIR", help="folder for the runs (default: reports/selftest-<UTC time>)")


def selftest_command(args: argparse.Namespace) -> int:
    out = Path(args.out or Path("reports") / report.default_run_name("selftest"))
    caught = 0
    faults = args.fault or sorted(set(FAULTS) - MULTI_NODE)
    for fault in faults:
        run_args = argparse.Namespace(suite=[], check=[check_of(fault)], instance_type=args.instance_type,
                                      instance_id=None, thresholds=args.thresholds, out=str(out / fault),
                                      profile=DEFAULT_PROFILE, workers=0, inject=fault)
        document, _ = run.execute(run_args, sys.stderr)
        ok, detail = judge(fault, document.to_dict())  # execute returns the typed Report
        caught += ok
        print(f"  {fault:<14} {'caught' if ok else 'MISSED':<7} {detail}")
    print(f"selftest: {caught} of {len(faults)} planted faults caught; reports in {out}")
    for fault in sorted(MULTI_NODE):
        print(f"  (not planted here: {fault} needs a group of nodes; `dhc run --inject {fault}` on one node of it)")
    return 0 if caught == len(faults) else 1


def judge(fault: str, document: dict[str, Any]) -> tuple[bool, str]:
    """Caught as the catalogue says: the run ended with the expected status and action, through a
    finding of the fault's check, with that status and action, on the planted device, saying the words."""
    check, planted = FAULTS[fault]
    expected = planted.caught_as
    assert expected is not None, "the catalogue refuses a planted fault without an expectation"
    verdict = NodeVerdict.from_dict(document["verdict"])  # the typed verdict (dhc.model), not string paths
    for reason in verdict.reasons:
        index = reason.device.index if reason.device else None
        if (reason.check == check and (reason.status, reason.action) == (expected.status, expected.action)
                and index == planted.device and expected.words in reason.message):
            ok = (verdict.status, verdict.action) == (expected.status, expected.action)
            return ok, f"{check} on {_planted(reason.device)}: {reason.message}"
    found = "; ".join(r.message for r in verdict.reasons) or "no finding"
    return False, f"verdict {verdict.status}, expected {_expected(expected, planted.device)}: {found}"


def _expected(caught: Caught, device: int | None) -> str:
    where = "the node" if device is None else f"device {device}"
    return f"{caught.status.value} ({caught.action.value}) on {where}, saying {caught.words!r}"


def _planted(device: Device | None) -> str:
    """Where the fault was caught: the one device label (``GPU 3 (GPU-uuid, serial X, PCI Y)``, ``cpu 2``)."""
    return device.label() if device else "the node"
