"""The plugin's command-line options (one ``dhc`` group), turned into the request ``dhc.runconfig`` resolves.

The options are only read here; their values are checked where ``dhc run``'s are
(``dhc.runconfig.resolve.validate``), with the same wording. ``--dhc-config`` (written by ``dhc run``)
replaces them all: the run is then configured by that file and nothing is resolved again.
"""

from __future__ import annotations

import sys

import pytest

from dhc.model.choices import DEFAULT_PROFILE
from dhc.runconfig import FAULTS, PROFILES, SINKS, STAGES, SUITE_NAMES
from dhc.runconfig.resolve import RunRequest


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("dhc", "dhc deep health checks")
    group.addoption("--dhc-config", metavar="FILE",
                    help="a run configuration written by `dhc run`; the other --dhc options are then not read")
    group.addoption("--dhc-instance-type", metavar="TYPE", help="instance type (default: discovered)")
    group.addoption("--dhc-instance-id", metavar="ID", help="instance ID (default: discovered)")
    group.addoption("--dhc-thresholds", metavar="FILE", help="thresholds file (default: the bundled one)")
    group.addoption("--dhc-out", metavar="DIR", help="folder for report.json (default: reports/<instance>-<time>)")
    group.addoption("--dhc-profile", default=DEFAULT_PROFILE, metavar="NAME",
                    help=f"check profile: {' | '.join(PROFILES)} (default: {DEFAULT_PROFILE})")
    group.addoption("--dhc-suite", action="append", default=[], metavar="SUITE",
                    help=f"run only this suite ({' | '.join(SUITE_NAMES)}); repeatable")
    group.addoption("--dhc-check", action="append", default=[], metavar="ID",
                    help="run only this check id (e.g. stress.inventory); repeatable")
    group.addoption("--dhc-inject", metavar="FAULT",
                    help=f"plant a fault at an engine seam to prove its detector (self-test): {' | '.join(FAULTS)}")
    group.addoption("--dhc-sink", action="append", default=[], metavar="SINK",
                    help=f"also deliver the verdict here ({' | '.join(SINKS)}); repeatable")
    group.addoption("--dhc-stage", default="final", metavar="STAGE",
                    help=f"with --dhc-sink kubernetes/termination: {' | '.join(STAGES)} (default: final)")
    group.addoption("--dhc-log-group", metavar="GROUP", help="CloudWatch log group (default: HyperPod's)")


def run_request(config: pytest.Config) -> RunRequest:
    """What the options ask for, spelled as pytest's flags for every error about them."""
    opt = config.getoption
    return RunRequest(
        "--dhc-", instance_type=opt("dhc_instance_type"), instance_id=opt("dhc_instance_id"),
        thresholds=opt("dhc_thresholds"), out=opt("dhc_out"), profile=opt("dhc_profile"),
        suites=tuple(opt("dhc_suite")), checks=tuple(opt("dhc_check")), inject=opt("dhc_inject"),
        workers=_workers(config), sinks=tuple(opt("dhc_sink")), stage=opt("dhc_stage"),
        log_group=opt("dhc_log_group"), command=tuple(sys.argv))


def _workers(config: pytest.Config) -> int:
    workers = getattr(config.option, "numprocesses", None)  # xdist's -n, when loaded; "auto" counts as unknown
    return workers if isinstance(workers, int) and workers > 0 else 0
