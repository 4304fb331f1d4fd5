"""The run configuration: everything one dhc run decided before any check ran, frozen, in one file.

``resolve()`` (``dhc.runconfig.resolve``) turns flags, environment and discovery into a ``RunConfig``
once. ``dhc run`` writes it to the run folder (``run-config.json``, atomically) and hands the pytest
child only its path (``--dhc-config``); the plugin loads it instead of resolving again, so the child
can never disagree with its parent about who the instance is, where the report goes or which checks
were asked for. ``pytest suites/`` alone resolves through the same function.

The limits are not carried: they are derived again from the thresholds file, the instance type and the
profile (``limits_of``), because ``thresholds.yaml`` is the one place numbers live. The file's sha256 is
carried instead, and a file changed between configuring and running is refused.

A config file that cannot be read is a ``ConfigError`` naming the file and the key, never a traceback.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from dhc import report
from dhc.errors import ConfigError, DhcError
from dhc.injections import INJECTIONS
from dhc.instance import InstanceIdentity
from dhc.model.choices import STAGES, not_one_of
from dhc.model.codec import ModelError, dump
from dhc.model.codec import load as decode
from dhc.model.report import Run
from dhc.report.folder import CONFIG_NAME
from dhc.settings import Settings
from dhc.settings import problem as settings_problem
from dhc.thresholds import CATALOGUE, PROFILES, SUITES, InstanceLimits, load
from dhc.thresholds.catalogue import unknown_check

CONFIG_VERSION = 1
SUITE_NAMES = tuple(SUITES.values())
SINKS = ("cloudwatch", "kubernetes", "termination")  # chosen per run; the log file in the run folder always
FAULTS = tuple(sorted(INJECTIONS))

__all__ = ["CHOICES", "CONFIG_NAME", "FAULTS", "PROFILES", "SINKS", "STAGES", "SUITE_NAMES", "RunConfig", "choice_problem",
           "limits_of"]


@dataclass(frozen=True)
class RunConfig:
    run_id: str
    started_at: str
    profile: str
    suites: tuple[str, ...]
    checks: tuple[str, ...]
    inject: str | None
    out: str  # absolute: the child runs in the suites' folder
    thresholds: str  # absolute path of the thresholds file
    thresholds_sha256: str
    identity: InstanceIdentity
    instance_type: str  # the canonical name thresholds.yaml gives the identity's type
    workers: int
    command: tuple[str, ...]
    sinks: tuple[str, ...]
    stage: str
    log_group: str | None
    by_dhc_run: bool  # dhc run started the folder and owns pytest.log there
    settings: Settings  # the environment as resolved once: the child and the sinks read these, not the environment again

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self) | {"identity": self.identity.to_dict(), "settings": dump(self.settings)}
        return {"version": CONFIG_VERSION, **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError(where, None, "", f"expected a JSON object, got {type(data).__name__}")
        if data.get("version") != CONFIG_VERSION:
            raise ConfigError(where, None, "version", f"expected {CONFIG_VERSION}, got {data.get('version')!r}")
        _refuse_unknown_keys(data, [f.name for f in fields(cls)], where)
        try:  # the model's codec: every key, its type and its nested objects, the failing key named
            config: RunConfig = decode(cls, {k: v for k, v in data.items() if k != "version"})
        except ModelError as exc:
            path, _, problem = str(exc).partition(": ")
            key = re.split(r"[.\[]", path)[0]
            inner = path[len(key):].lstrip(".")
            raise ConfigError(where, None, key, f"{inner}: {problem}" if inner else problem) from None
        if config.workers < 0:
            raise ConfigError(where, None, "workers", f"expected an integer >= 0, got {config.workers}")
        _check_choices(config, where)
        found = settings_problem(config.settings, lambda name: f"settings.{name}")  # from_env's own check
        if found:
            key = f"settings.{found[0]}"
            raise ConfigError(where, None, key, found[1].removeprefix(f"{key}: "))
        return config

    def run_info(self) -> Run:
        """The report's ``run`` section as it starts: who asked for what, when."""
        return Run.started(self.run_id, self.started_at, self.profile, self.suites, self.checks, self.command,
                           self.inject)

    def save(self, folder: Path) -> Path:
        path = folder / CONFIG_NAME
        report.write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(str(path), None, "", f"cannot read the run configuration: {exc.strerror or exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), None, "", f"not a JSON run configuration: {exc}") from None
        return cls.from_dict(data, str(path))


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _refuse_unknown_keys(data: dict[str, Any], names: list[str], where: str) -> None:
    """A key the configuration does not have, at the top or inside ``settings`` / ``identity``, named by its path."""
    unknown = sorted(set(data) - set(names) - {"version"})
    if unknown:
        raise ConfigError(where, None, unknown[0], f"unknown key; expected one of {', '.join(['version', *names])}")
    for section, known in (("settings", Settings), ("identity", InstanceIdentity)):
        extra = sorted(set(_object(data.get(section))) - {f.name for f in fields(known)})
        if extra:
            raise ConfigError(where, None, f"{section}.{extra[0]}", f"unknown key (not one of the {section} fields)")


CHOICES: dict[str, tuple[str, ...]] = {"profile": PROFILES, "suites": SUITE_NAMES, "checks": tuple(CATALOGUE),
                                       "sinks": SINKS, "stage": STAGES, "inject": FAULTS}


def choice_problem(key: str, value: str | tuple[str, ...] | list[str] | None) -> str | None:
    """What is wrong with ``value`` for ``key`` (one of CHOICES), or None: the one wording for flags and files."""
    for one in (value,) if isinstance(value, str) else value or ():
        problem = unknown_check(one) if key == "checks" else not_one_of(CHOICES[key], one)
        if problem:
            return problem
    return None


def _check_choices(config: RunConfig, where: str) -> None:
    for key in CHOICES:
        problem = choice_problem(key, getattr(config, key))
        if problem:
            raise ConfigError(where, None, key, problem)


def limits_of(config: RunConfig) -> InstanceLimits:
    """The limits for the configured type and profile, from the very thresholds file the run was configured with."""
    thresholds = load(config.thresholds)
    if thresholds.sha256 != config.thresholds_sha256:
        raise DhcError(f"{config.thresholds}: changed since the run was configured (sha256 "
                       f"{config.thresholds_sha256[:12]}..., now {thresholds.sha256[:12]}...): start the run again")
    return thresholds.resolve(config.identity.instance_type.value or config.instance_type, config.profile)
