"""Validate a parsed ``thresholds.yaml`` into typed, resolved instance types.

Every problem names the file, the line and the key path (``instance_types/ml.p5.48xlarge/...``)
and says what was expected. Instance types inherit from their GPU model and from ``extends``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dhc import units
from dhc.errors import ConfigError
from dhc.model import Action, Comparison, Limit
from dhc.model.choices import PROFILES
from dhc.thresholds.catalogue import CATALOGUE, CheckSpec, unknown_check
from dhc.thresholds.inherit import INHERITED, MAX_EXTENDS, MODEL_KEYS, TYPE_KEYS, merge
from dhc.thresholds.loader import LineDict
from dhc.thresholds.validate import Doc, kind_of

_TOP_KEYS = {"schema_version", "profiles", "gpu_defaults", "gpu_models", "instance_types", "agent"}
_OPTIONAL_TOP = {"gpu_defaults", "agent"}  # agent: dhc agent's detector limits (dhc.thresholds.agent)
_LIMIT_KEYS = {"min", "max", "equals", "calibrate", "unit", "source", "action"}
DAY_S = 86400.0
# Every number in the file has a sane range, so nothing huge validates and then overflows at run time.
RANGES: dict[str, tuple[float, float]] = {
    "expected_s": (0, DAY_S), "timeout_s": (0, DAY_S), "duration_s": (0.01, DAY_S),
    "matrix_size": (1, 65536), "memory_fraction": (0.0001, 1), "max_bytes": (1, 1 << 42), "message_bytes": (1, 1 << 42),
    "level": (1, 4), "cpu_ranks": (1, 1024), "shm_bytes_per_rank": (1, 1 << 40), "gpus": (0, 64), "efa": (0, 64), "nvlinks_per_gpu": (0, 64),
}
SETTING_RANGE = (0.0, float(1 << 42))  # a check setting not named above: at most 4 TiB, or 4e12 of anything


@dataclass(frozen=True)
class CheckConfig:
    limits: dict[str, Limit]
    skip: str | None = None


@dataclass(frozen=True)
class Timing:
    expected_s: float
    timeout_s: float
    settings: dict[str, Any]


@dataclass(frozen=True)
class InstanceType:
    name: str
    aliases: tuple[str, ...]
    description: str
    gpu_model: str | None
    gpus: int
    efa: int
    nvlinks_per_gpu: int
    checks: dict[str, CheckConfig]
    profiles: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # per-type timing overrides


def parse(raw: Any, path: str) -> tuple[dict[str, dict[str, Timing]], dict[str, InstanceType]]:
    doc = Doc(path)
    if not isinstance(raw, LineDict):
        raise ConfigError(path, None, "", f"expected a mapping at the top, got {kind_of(raw)}")
    root = LineDict(root=raw)
    root.line, root.key_lines = raw.line, {"root": raw.line}
    top = doc.mapping(root, "root", "", _TOP_KEYS, _TOP_KEYS - _OPTIONAL_TOP)
    if top["schema_version"] != 1:
        raise doc.fail(top, "schema_version", "schema_version", f"expected 1, got {top['schema_version']!r}")
    profiles = _profiles(doc, top)
    models = doc.mapping(top, "gpu_models", "gpu_models")
    for name in models:
        doc.mapping(models, name, f"gpu_models/{name}", MODEL_KEYS)
    gpu_defaults = doc.mapping(top, "gpu_defaults", "gpu_defaults", {"checks"}) if "gpu_defaults" in top else None
    entries = doc.mapping(top, "instance_types", "instance_types")
    types = {name: _instance_type(doc, entries, name, models, profiles, gpu_defaults) for name in entries}
    _check_names_unique(doc, entries, types)
    return profiles, types


def _check_names_unique(doc: Doc, entries: LineDict, types: dict[str, InstanceType]) -> None:
    owner: dict[str, str] = {}
    for name, t in types.items():
        for alias in (name, *t.aliases):
            bare = alias.removeprefix("ml.")
            for spelling in (bare, f"ml.{bare}"):
                if owner.setdefault(spelling, name) != name:
                    raise doc.fail(entries, name, f"instance_types/{name}",
                                   f"name {alias!r} is already used by {owner[spelling]!r}")


def _profiles(doc: Doc, top: LineDict) -> dict[str, dict[str, Timing]]:
    node = doc.mapping(top, "profiles", "profiles", set(PROFILES), set(PROFILES))
    out: dict[str, dict[str, Timing]] = {}
    for profile in PROFILES:
        checks = doc.mapping(node, profile, f"profiles/{profile}", set(CATALOGUE), set(CATALOGUE))
        out[profile] = {check: _timing(doc, checks, check, f"profiles/{profile}/{check}")
                        for check in checks}
    return out


def _timing(doc: Doc, parent: LineDict, check: str, keypath: str) -> Timing:
    values = _timing_values(doc, parent, check, keypath, {"expected_s", "timeout_s"})
    expected, timeout = values.pop("expected_s"), values.pop("timeout_s")
    return _checked_timing(Timing(expected, timeout, values), doc, parent[check], keypath)


def _timing_values(doc: Doc, parent: LineDict, check: str, keypath: str, required: set[str]) -> dict[str, float]:
    spec = CATALOGUE[check]
    node = doc.mapping(parent, check, keypath, {"expected_s", "timeout_s", *spec.settings}, required)
    kinds = {"expected_s": float, "timeout_s": float, **spec.settings}
    return {key: doc.number(node, key, f"{keypath}/{key}", integer=kinds[key] is int,
                              bounds=RANGES.get(key, SETTING_RANGE))
            for key in node}


def _checked_timing(timing: Timing, doc: Doc, node: LineDict, keypath: str) -> Timing:
    if timing.timeout_s <= 0 or timing.timeout_s < timing.expected_s:
        raise doc.fail(node, "timeout_s", f"{keypath}/timeout_s",
                       f"expected a timeout > 0 and >= expected_s ({timing.expected_s}), got {timing.timeout_s}")
    return timing


def merged_timing(base: Timing, override: dict[str, float]) -> Timing:
    """A profile's timing for one check with an instance type's overrides on top."""
    rest = {k: v for k, v in override.items() if k not in ("expected_s", "timeout_s")}
    return Timing(override.get("expected_s", base.expected_s), override.get("timeout_s", base.timeout_s),
                  base.settings | rest)


def _type_profiles(doc: Doc, node: LineDict, keypath: str,
                   profiles: dict[str, dict[str, Timing]]) -> dict[str, dict[str, dict[str, float]]]:
    """``profiles:`` under an instance type: partial overrides of the global profiles."""
    if "profiles" not in node:
        return {}
    top = doc.mapping(node, "profiles", f"{keypath}/profiles", set(PROFILES))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for profile in top:
        checks = doc.mapping(top, profile, f"{keypath}/profiles/{profile}", set(CATALOGUE))
        out[profile] = {}
        for check in checks:
            where = f"{keypath}/profiles/{profile}/{check}"
            override = _timing_values(doc, checks, check, where, set())
            _checked_timing(merged_timing(profiles[profile][check], override), doc, checks[check], where)
            out[profile][check] = override
    return out


def _instance_type(doc: Doc, entries: LineDict, name: str, models: LineDict,
                   profiles: dict[str, dict[str, Timing]], gpu_defaults: LineDict | None) -> InstanceType:
    keypath = f"instance_types/{name}"
    node = _with_ancestors(doc, entries, name)
    model_name = node.get("gpu_model")
    if model_name is not None:
        if model_name not in models:
            raise doc.fail(node, "gpu_model", f"{keypath}/gpu_model",
                           f"unknown GPU model {model_name!r}; known: {', '.join(models) or 'none'}")
        node = merge(models[model_name], node)
    own = entries[name]
    aliases = own.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise doc.fail(own, "aliases", f"{keypath}/aliases", "expected a list of instance type names")
    counts = {k: int(doc.number(node, k, f"{keypath}/{k}", integer=True, bounds=RANGES[k])) if k in node else 0
              for k in ("gpus", "efa", "nvlinks_per_gpu")}
    if gpu_defaults is not None and counts["gpus"]:
        node = merge(gpu_defaults, node)  # every GPU type starts from the shared defaults
    checks = _checks(doc, node, keypath) if "checks" in node else {}
    if counts["gpus"]:
        _derive_count(checks, "stress.inventory", "gpu_count", counts["gpus"], f"{name}: {counts['gpus']} GPUs")
    if counts["efa"]:
        _derive_count(checks, "connectivity.efa", "efa_devices", counts["efa"], f"{name}: {counts['efa']} EFA")
    if counts["nvlinks_per_gpu"]:
        _derive_count(checks, "stress.inventory", "nvlinks_up", counts["nvlinks_per_gpu"],
                      f"{name}: {counts['nvlinks_per_gpu']} NVLinks per GPU")
    return InstanceType(name, tuple(aliases), str(node.get("description", "")), model_name,
                        counts["gpus"], counts["efa"], counts["nvlinks_per_gpu"], checks,
                        _type_profiles(doc, node, keypath, profiles))


def _with_ancestors(doc: Doc, entries: LineDict, name: str) -> LineDict:
    """The type with everything it inherits through ``extends`` (a loop, not recursion: chains are capped)."""
    chain, nodes = [name], [doc.mapping(entries, name, f"instance_types/{name}", TYPE_KEYS)]
    while (parent := nodes[-1].get("extends")) is not None:
        where = f"instance_types/{chain[-1]}/extends"
        if not isinstance(parent, str) or parent not in entries:
            raise doc.fail(nodes[-1], "extends", where, f"unknown instance type {parent!r}")
        if parent in chain:
            raise doc.fail(nodes[-1], "extends", where, f"cycle: {' -> '.join([*chain, parent])}")
        if len(chain) > MAX_EXTENDS:
            raise doc.fail(nodes[0], "extends", f"instance_types/{name}/extends",
                           f"more than {MAX_EXTENDS} levels of extends ({' -> '.join(chain[:4])} -> ...)")
        chain.append(parent)
        nodes.append(doc.mapping(entries, parent, f"instance_types/{parent}", TYPE_KEYS))
    merged = nodes[-1]
    for node in reversed(nodes[:-1]):
        merged = merge(LineDict({k: v for k, v in merged.items() if k in INHERITED}), node)
    return merged


def _checks(doc: Doc, node: LineDict, keypath: str) -> dict[str, CheckConfig]:
    checks = doc.mapping(node, "checks", f"{keypath}/checks")
    out = {}
    for check in checks:
        where = f"{keypath}/checks/{check}"
        if check not in CATALOGUE:
            raise doc.fail(checks, check, where, unknown_check(check))
        entry = doc.mapping(checks, check, where, {"limits", "skip"})
        skip = doc.text(entry, "skip", f"{where}/skip") if "skip" in entry else None
        limits = {}
        if "limits" in entry:
            node_limits = doc.mapping(entry, "limits", f"{where}/limits", set(CATALOGUE[check].metrics))
            limits = {m: _limit(doc, node_limits, m, f"{where}/limits/{m}", CATALOGUE[check])
                      for m in node_limits}
        out[check] = CheckConfig(limits, skip)
    return out


def _limit(doc: Doc, parent: LineDict, metric: str, keypath: str, check: CheckSpec) -> Limit:
    spec = check.metrics[metric]
    node = doc.mapping(parent, metric, keypath, _LIMIT_KEYS, {"unit", "source"})
    calibrate = node.get("calibrate", False)
    if not isinstance(calibrate, bool):
        raise doc.fail(node, "calibrate", f"{keypath}/calibrate", f"expected true or false, got {kind_of(calibrate)}")
    given = [c for c in Comparison if c.value in node]
    if calibrate and given:
        raise doc.fail(node, given[0].value, keypath, "'calibrate: true' means no value yet; remove the value")
    if not calibrate and [c.value for c in given] != [spec.comparison.value]:
        raise doc.fail(node, given[0].value if given else None, keypath,
                       f"expected '{spec.comparison.value}: <number>' ({metric} is judged by "
                       f"{spec.comparison.words}) or 'calibrate: true'")
    value = None if calibrate else doc.number(node, spec.comparison.value, f"{keypath}/{spec.comparison.value}")
    unit = node["unit"]
    if unit not in units.units_of(spec.quantity):
        raise doc.fail(node, "unit", f"{keypath}/unit",
                       f"expected a unit of {spec.quantity} ({', '.join(units.units_of(spec.quantity))}), got {unit!r}")
    action = doc.choice(node, "action", f"{keypath}/action", Action) if "action" in node else spec.action
    return Limit(spec.comparison, value, unit, doc.text(node, "source", f"{keypath}/source"), Action(action))


def _derive_count(checks: dict[str, CheckConfig], check: str, metric: str, count: int, source: str) -> None:
    config = checks.get(check, CheckConfig({}))
    if metric not in config.limits:
        spec = CATALOGUE[check].metrics[metric]
        limits = config.limits | {metric: Limit(spec.comparison, count, "count", source, spec.action)}
        checks[check] = CheckConfig(limits, config.skip)
