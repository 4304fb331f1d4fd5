"""How instance types inherit: the keys that pass down, and merging a type over its base.

A type takes what it does not say from its ``extends`` parent (chains of at most ``MAX_EXTENDS``),
its GPU model and the shared GPU defaults; checks merge per check id, and limits per metric. Every
key keeps the line where it was written, so an error in an inherited value still names its line.
"""

from __future__ import annotations

from dhc.thresholds.loader import LineDict

MODEL_KEYS = {"description", "name", "memory_gib", "checks"}
TYPE_KEYS = {"description", "aliases", "extends", "gpu_model", "gpus", "efa", "nvlinks_per_gpu", "checks",
             "profiles"}
INHERITED = TYPE_KEYS - {"aliases", "extends"}
MAX_EXTENDS = 16  # levels of ``extends``; real files use one or two


def merge(base: LineDict, top: LineDict) -> LineDict:
    """``top`` over ``base``; checks merge per check id, and limits per metric."""
    merged = overlay(LineDict({k: v for k, v in base.items() if k in INHERITED | MODEL_KEYS}), top)
    merged.key_lines = {**getattr(base, "key_lines", {}), **merged.key_lines}
    if isinstance(base.get("checks"), LineDict) and isinstance(top.get("checks"), LineDict):
        checks = overlay(base["checks"], top["checks"])
        for check, entry in top["checks"].items():
            below = base["checks"].get(check)
            if isinstance(below, LineDict) and isinstance(entry, LineDict):
                checks[check] = overlay(below, entry)
                if isinstance(below.get("limits"), LineDict) and isinstance(entry.get("limits"), LineDict):
                    checks[check]["limits"] = overlay(below["limits"], entry["limits"])
        merged["checks"] = checks
    return merged


def overlay(base: LineDict, top: LineDict) -> LineDict:
    """One level of ``top`` over ``base``, keeping the line of every key where it was written."""
    merged = LineDict(base | top)
    merged.line = top.line
    merged.key_lines = {**getattr(base, "key_lines", {}), **getattr(top, "key_lines", {})}
    return merged
