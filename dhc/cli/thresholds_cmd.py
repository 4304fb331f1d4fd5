"""``dhc thresholds validate [FILE]`` and ``dhc thresholds show TYPE``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dhc.errors import UsageError
from dhc.settings import Settings
from dhc.thresholds import DEFAULT_PROFILE, PROFILES, load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="thresholds_command", required=True)
    validate = sub.add_parser("validate", help="check a thresholds file; exit 0 when valid")
    validate.add_argument("file", nargs="?", help="default: the bundled thresholds.yaml")
    show = sub.add_parser("show", help="the limits that apply to one instance type")
    show.add_argument("instance_type")
    show.add_argument("--thresholds", metavar="FILE", help="default: the bundled thresholds.yaml")
    show.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE)
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    calibrate = sub.add_parser("calibrate", help="propose limits from healthy reports (a YAML fragment)")
    calibrate.add_argument("paths", nargs="+", help="report.json files, or folders searched for them")
    calibrate.add_argument("--instance-type", required=True)
    calibrate.add_argument("--factor", type=float, default=0.9, help="share of the median to require (0.9)")
    calibrate.add_argument("--thresholds", metavar="FILE", help="default: the bundled thresholds.yaml")


def thresholds_command(args: argparse.Namespace) -> int:
    file = getattr(args, "file", None) or getattr(args, "thresholds", None) or Settings.from_env().thresholds_file
    thresholds = load(file)
    if args.thresholds_command == "calibrate":
        return _calibrate(args, thresholds)
    if args.thresholds_command == "validate":
        print(f"{thresholds.path}: valid ({len(thresholds.types)} instance types, sha256 {thresholds.sha256[:12]})")
        return 0
    resolved = thresholds.resolve(args.instance_type, args.profile).to_dict()
    if args.json:
        json.dump(resolved, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{resolved['instance_type']} (as {resolved['requested_as']}): {resolved['gpus']} GPU(s), "
          f"model {resolved['gpu_model'] or '-'}, {resolved['efa']} EFA, {resolved['nvlinks_per_gpu']} NVLinks/GPU; "
          f"profile {resolved['profile']}; from {resolved['file']}")
    for check, entry in resolved["checks"].items():
        timing = f"expected ~{entry['expected_s']:g} s, timeout {entry['timeout_s']:g} s"
        print(f"\n{check}  ({timing})" + (f"  SKIPPED: {entry['skip']}" if entry["skip"] else ""))
        for name, value in entry["settings"].items():
            print(f"    setting {name} = {value}")
        for metric, limit in entry["limits"].items():
            bound = "calibrate" if limit["value"] is None else f"{limit['comparison']} {limit['value']:g}"
            print(f"    {metric:<26} {bound:>14} {limit['unit']:<8} action {limit['action']:<8} {limit['source']}")
    return 0


def _calibrate(args: argparse.Namespace, thresholds: Any) -> int:
    from pathlib import Path

    from dhc.fleet import load
    from dhc.fleet.calibrate import propose, yaml_fragment

    canonical = thresholds.resolve(args.instance_type).instance_type.name
    fleet = load([Path(p) for p in args.paths])
    for file, why in fleet.skipped:
        sys.stderr.write(f"dhc: skipped {file}: {why}\n")
    try:
        proposals = propose(fleet, canonical, args.factor)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not proposals:
        raise UsageError(f"no healthy {canonical} reports with measured limits among {len(fleet.nodes)} reports")
    sys.stdout.write(yaml_fragment(canonical, proposals))
    return 0
