"""The plugin's command-line options (one ``dhc`` group) and their validation."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dhc.injections import INJECTIONS
from dhc.thresholds import CATALOGUE, PROFILES, SUITES

SUITE_NAMES = tuple(SUITES.values())



def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("dhc", "dhc deep health checks")
    group.addoption("--dhc-instance-type", metavar="TYPE", help="instance type (default: discovered)")
    group.addoption("--dhc-instance-id", metavar="ID", help="instance ID (default: discovered)")
    group.addoption("--dhc-thresholds", metavar="FILE", help="thresholds file (default: the bundled one)")
    group.addoption("--dhc-out", metavar="DIR", help="folder for report.json (default: reports/<instance>-<time>)")
    group.addoption("--dhc-profile", default="quick", metavar="NAME",
                    help=f"check profile: {' | '.join(PROFILES)} (default: quick)")
    group.addoption("--dhc-suite", action="append", default=[], metavar="SUITE",
                    help=f"run only this suite ({' | '.join(SUITE_NAMES)}); repeatable")
    group.addoption("--dhc-check", action="append", default=[], metavar="ID",
                    help="run only this check id (e.g. stress.inventory); repeatable")
    group.addoption("--dhc-inject", metavar="FAULT", choices=sorted(INJECTIONS),
                    help="plant a fault at an engine seam to prove its detector (self-test)")
    group.addoption("--dhc-identity", metavar="FILE", help="a resolved identity (written by `dhc run`)")
    group.addoption("--dhc-run-id", metavar="ID", help="run id to use (written by `dhc run`)")


@dataclass(frozen=True)
class Options:
    instance_type: str | None
    instance_id: str | None
    thresholds: str | None
    out: str | None
    profile: str
    suites: tuple[str, ...]
    checks: tuple[str, ...]
    identity_file: str | None
    run_id: str | None
    inject: str | None = None


def read_options(config: pytest.Config) -> Options:
    opt = config.getoption
    options = Options(opt("dhc_instance_type"), opt("dhc_instance_id"), opt("dhc_thresholds"),
                      opt("dhc_out"), opt("dhc_profile"), tuple(opt("dhc_suite")), tuple(opt("dhc_check")),
                      opt("dhc_identity"), opt("dhc_run_id"), opt("dhc_inject"))
    if options.profile not in PROFILES:
        raise pytest.UsageError(f"--dhc-profile: expected one of {', '.join(PROFILES)}, got {options.profile!r}")
    for suite in options.suites:
        if suite not in SUITE_NAMES:
            raise pytest.UsageError(f"--dhc-suite: expected one of {', '.join(SUITE_NAMES)}, got {suite!r}")
    for check in options.checks:
        if check not in CATALOGUE:
            raise pytest.UsageError(f"--dhc-check: unknown check id {check!r}; known: {', '.join(CATALOGUE)}")
    return options
