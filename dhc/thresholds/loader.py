"""Read a YAML file into plain dicts and lists that remember the line of every key.

Hostile input is refused up front: anything but a regular file (a FIFO never blocks), files over
1 MiB, nesting deeper than 32 levels (no RecursionError), YAML aliases (no billion-laughs),
duplicate keys, non-string keys, and tags other than YAML's plain types.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dhc.errors import ConfigError
from dhc.textfile import FileRefused, read_regular

MAX_BYTES = 1 << 20
MAX_DEPTH = 32  # nesting levels; thresholds.yaml needs six


class LineDict(dict):
    """A mapping that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class _Refused(Exception):
    def __init__(self, line: int, problem: str):
        super().__init__(problem)
        self.line, self.problem = line, problem


class _LineLoader(yaml.SafeLoader):
    depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(event.start_mark.line + 1, "YAML aliases (*name) are not supported here")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:  # refused before Python's recursion limit is near
                raise _Refused(self.peek_event().start_mark.line + 1, f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    mapping = LineDict()
    mapping.line, mapping.key_lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _Refused(line, f"keys must be text, got {key!r}")
        if key in mapping:
            raise _Refused(line, f"duplicate key {key!r} (first on line {mapping.key_lines[key]})")
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.key_lines[key] = line
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> Any:
    """Parse ``path``; every problem becomes a ConfigError naming the file and line."""
    try:
        raw = read_regular(path, MAX_BYTES)
    except FileRefused as exc:
        raise ConfigError(str(path), None, "", exc.problem) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), None, "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 (a SafeLoader subclass)
    except _Refused as exc:
        raise ConfigError(str(path), exc.line, "", exc.problem) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(str(path), line, "", f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), None, "", f"invalid YAML: {exc}") from None
