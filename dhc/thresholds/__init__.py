"""Limits per instance type and check, read from ``thresholds.yaml`` (the only place numbers live).

``load()`` validates the whole file; ``Thresholds.resolve(type, profile)`` gives the limits,
skips and timings that apply to one instance type under one profile.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhc.errors import UnknownInstanceType
from dhc.model.choices import DEFAULT_PROFILE, PROFILES, not_one_of
from dhc.resources import bundled
from dhc.thresholds.agent import parse_agent
from dhc.thresholds.catalogue import CATALOGUE, SUITES, CheckSpec, suite_of
from dhc.thresholds.document import CheckConfig, InstanceType, Timing, merged_timing, parse
from dhc.thresholds.loader import load_yaml

__all__ = ["CATALOGUE", "DEFAULT_PROFILE", "PROFILES", "SUITES", "CheckSpec", "InstanceLimits", "Thresholds",
           "default_path", "load", "suite_of"]


def default_path(override: str | None = None) -> Path:
    """An explicit file, else the copy shipped in the wheel, else the source checkout's."""
    return Path(override) if override else bundled("thresholds.yaml")


@dataclass(frozen=True)
class InstanceLimits:
    """What applies to one instance type under one profile."""

    instance_type: InstanceType
    requested_as: str
    profile: str
    timings: dict[str, Timing]
    source_file: str
    source_sha256: str

    def check(self, check_id: str) -> CheckConfig:
        return self.instance_type.checks.get(check_id, CheckConfig({}))

    def timing(self, check_id: str) -> Timing:
        override = self.instance_type.profiles.get(self.profile, {}).get(check_id, {})
        return merged_timing(self.timings[check_id], override)

    def to_dict(self) -> dict[str, Any]:
        t = self.instance_type
        return {
            "file": self.source_file, "sha256": self.source_sha256, "profile": self.profile,
            "instance_type": t.name, "requested_as": self.requested_as, "gpu_model": t.gpu_model,
            "gpus": t.gpus, "efa": t.efa, "nvlinks_per_gpu": t.nvlinks_per_gpu,
            "checks": {cid: {"skip": cfg.skip, "limits": {m: _limit_dict(lim) for m, lim in cfg.limits.items()},
                             "expected_s": self.timing(cid).expected_s, "timeout_s": self.timing(cid).timeout_s,
                             "settings": self.timing(cid).settings}
                       for cid, cfg in sorted(self._all_checks().items())},
        }

    def _all_checks(self) -> dict[str, CheckConfig]:
        return {cid: self.check(cid) for cid in CATALOGUE}


@dataclass(frozen=True)
class Thresholds:
    path: str
    sha256: str
    profiles: dict[str, dict[str, Timing]]
    types: dict[str, InstanceType]

    @property
    def names(self) -> dict[str, str]:
        """Every accepted spelling -> canonical type name (``p5.48xlarge`` -> ``ml.p5.48xlarge``)."""
        out: dict[str, str] = {}
        for name, t in self.types.items():
            for alias in (name, *t.aliases):
                out[alias] = name
                out[alias.removeprefix("ml.")] = name
                out[f"ml.{alias.removeprefix('ml.')}"] = name
        return out

    def resolve(self, instance_type: str, profile: str = DEFAULT_PROFILE) -> InstanceLimits:
        canonical = self.names.get(instance_type)
        if canonical is None:
            raise UnknownInstanceType(instance_type, sorted(self.types), self.path)
        if (problem := not_one_of(PROFILES, profile)) is not None:
            raise ValueError(f"profile: {problem}")
        return InstanceLimits(self.types[canonical], instance_type, profile, self.profiles[profile],
                              self.path, self.sha256)


def load(path: str | Path | None = None) -> Thresholds:
    file = default_path(str(path) if path else None)
    raw = load_yaml(file)
    profiles, types = parse(raw, str(file))
    if "agent" in raw:  # dhc agent's section: validated with the rest, so `dhc thresholds validate` sees it
        parse_agent(raw, str(file))
    return Thresholds(str(file), hashlib.sha256(file.read_bytes()).hexdigest(), profiles, types)


def _limit_dict(limit: Any) -> dict[str, Any]:
    return {"comparison": limit.comparison.value, "value": limit.value, "unit": limit.unit,
            "source": limit.source, "action": limit.action.value}
