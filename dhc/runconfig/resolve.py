"""The one resolving function: flags + environment + discovery -> a ``RunConfig`` and its limits.

``dhc run`` and ``pytest suites/`` alone both call ``resolve``; they differ only in how their flags are
spelled (``--check`` / ``--dhc-check``), which ``RunRequest.flag`` carries so every error names the flag
the person typed. Every validation of a run's options lives here (choices in ``dhc.runconfig.CHOICES``).
``prepare`` is the one place a run folder is made ready before any check runs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from dhc import report
from dhc.errors import UsageError
from dhc.instance import resolve_identity
from dhc.model.choices import DEFAULT_PROFILE
from dhc.probes.unseen_gpus import refuse_unseen_gpus
from dhc.report.folder import start_clean
from dhc.runconfig import CHOICES, RunConfig, choice_problem
from dhc.settings import Settings
from dhc.thresholds import InstanceLimits, load

_FLAG_NAMES = {"profile": "profile", "suites": "suite", "checks": "check", "sinks": "sink", "stage": "stage",
               "inject": "inject"}


@dataclass(frozen=True)
class RunRequest:
    """What a person asked for, as typed; None or empty: not given."""

    flag: str  # how this command spells its options: "--" (dhc run) or "--dhc-" (pytest)
    instance_type: str | None = None
    instance_id: str | None = None
    thresholds: str | None = None
    out: str | None = None
    profile: str = DEFAULT_PROFILE
    suites: tuple[str, ...] = ()
    checks: tuple[str, ...] = ()
    inject: str | None = None
    workers: int = 0
    sinks: tuple[str, ...] = ()
    stage: str = "final"
    log_group: str | None = None
    command: tuple[str, ...] = ()
    by_dhc_run: bool = False

    def option(self, name: str) -> str:
        return f"{self.flag}{name}"


def validate(request: RunRequest) -> None:
    """Every option value of a run, checked before anything is discovered or written."""
    for key in CHOICES:
        problem = choice_problem(key, getattr(request, key))
        if problem:
            raise UsageError(f"{request.option(_FLAG_NAMES[key])}: {problem}")
    if request.workers < 0:
        raise UsageError(f"-n: expected a number of workers >= 0, got {request.workers}")


def resolve(request: RunRequest, settings: Settings) -> tuple[RunConfig, InstanceLimits]:
    """Decide the run once: thresholds, identity, limits, output folder, run id. Writes nothing."""
    validate(request)
    settings = settings.absolute()  # the child runs in the suites' folder: a relative path means the caller's cwd
    thresholds = load(request.thresholds or settings.thresholds_file)
    identity = resolve_identity({"instance_type": request.instance_type, "instance_id": request.instance_id}, settings)
    if not identity.instance_type.value:
        raise UsageError("cannot tell the instance type (a GPU is present, but no flag, DHC_INSTANCE_TYPE or "
                         f"EC2 metadata named it): pass {request.option('instance-type')}")
    limits = thresholds.resolve(identity.instance_type.value, request.profile)
    out = request.out or settings.out_dir or Path("reports") / report.default_run_name(identity.instance_id.value or "unknown")
    config = RunConfig(
        run_id=uuid.uuid4().hex[:12], started_at=report.utc_now(), profile=request.profile, suites=request.suites,
        checks=request.checks, inject=request.inject, out=str(Path(out).absolute()),
        thresholds=str(Path(thresholds.path).absolute()), thresholds_sha256=thresholds.sha256, identity=identity,
        instance_type=limits.instance_type.name, workers=request.workers, command=request.command,
        sinks=tuple(dict.fromkeys(request.sinks)), stage=request.stage,
        log_group=request.log_group or settings.log_group, by_dhc_run=request.by_dhc_run, settings=settings)
    return config, limits


def prepare(config: RunConfig, limits: InstanceLimits, flag: str) -> list[str]:
    """Before any check: refuse GPUs that would pass unseen, make the folder writable, start it clean.

    Returns the names of an earlier run's files it removed (one run, one folder)."""
    if not limits.instance_type.gpus:
        named = config.identity.instance_type
        refuse_unseen_gpus(f"{flag}instance-type {named.value}" if named.source == "cli"
                           else f"instance type {named.value} (from {named.source})")
    out = Path(config.out)
    report.ensure_writable_dir(out)
    return start_clean(out, f"{flag}out")
