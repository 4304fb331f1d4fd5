"""Reading a hand-written YAML file (thresholds.yaml, the controller's groups file) into checked values.

One ``Doc`` per file: every problem is a ``ConfigError`` naming the file, the line, the key path and
what was expected. The one place that says a key is unknown or missing, a number is out of range or a
value is not one of its choices; the thresholds, the agent's section and the controller's groups file
all validate through it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from dhc.errors import ConfigError
from dhc.model.choices import not_one_of
from dhc.thresholds.loader import LineDict

LIMIT_RANGE = (0.0, 1e9)  # any limit, in any of its units (1e9 GB/s is an exabyte per second)


class Doc:
    def __init__(self, path: str):
        self.path = path

    def fail(self, parent: Any, key: str | None, keypath: str, problem: str) -> ConfigError:
        line = None
        if isinstance(parent, LineDict):
            line = parent.line_of(key) if key is not None else parent.line
        return ConfigError(self.path, line or None, keypath, problem)

    def mapping(self, parent: Any, key: str, keypath: str, allowed: set[str] | None = None,
                required: set[str] = frozenset()) -> LineDict:
        """``parent[key]``, a mapping with only ``allowed`` keys and every ``required`` one."""
        node = parent[key]
        if not isinstance(node, LineDict):
            raise self.fail(parent, key, keypath, f"expected a mapping, got {kind_of(node)}")
        return self.keys(node, keypath, allowed, required, (parent, key))

    def keys(self, node: LineDict, keypath: str, allowed: set[str] | None, required: set[str] = frozenset(),
             at: tuple[Any, str | None] | None = None) -> LineDict:
        """``node`` itself: an unknown key or a missing one named with its line (``at``: where ``node`` is)."""
        for name in node:
            if allowed is not None and name not in allowed:
                raise self.fail(node, name, f"{keypath}/{name}".lstrip("/"),
                                f"unknown key; expected one of {', '.join(sorted(allowed))}")
        for name in sorted(required - set(node)):
            parent, key = at or (node, None)
            raise self.fail(parent, key, keypath or name, f"missing required key {name!r}")
        return node

    def choice(self, parent: LineDict, key: str, keypath: str, choices: Iterable[str]) -> str:
        """``parent[key]``, one of ``choices`` (the one wording: ``dhc.model.choices.not_one_of``)."""
        value = parent[key]
        problem = not_one_of(choices, value)
        if problem:
            raise self.fail(parent, key, keypath, problem)
        return str(value)

    def number(self, parent: LineDict, key: str, keypath: str, integer: bool = False,
               bounds: tuple[float, float] = LIMIT_RANGE) -> float:
        value = parent[key]
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or not math.isfinite(value):
            raise self.fail(parent, key, keypath,
                            f"expected {'a whole number' if integer else 'a number'}, got {kind_of(value)}")
        low, high = bounds
        if not low <= value <= high:
            raise self.fail(parent, key, keypath, f"expected a value from {low:g} to {high:g}, got {value:g}")
        return value

    def text(self, parent: LineDict, key: str, keypath: str) -> str:
        value = parent[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(parent, key, keypath, f"expected non-empty text, got {kind_of(value)}")
        return value


def kind_of(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return f"{type(value).__name__} {value!r}"
