"""docs/architecture.md cannot rot: every repository file it names exists and every dotted name imports.

The page's conventions (said at its top): inline code with a ``/``, no spaces, ending in ``/`` or in a
file name with an extension, is a path from the repository root (``./`` for a root file); inline code
that is a dotted name starting with ``dhc.`` is an importable symbol (a module, then attributes; a
dataclass field counts). Fenced blocks are examples and are not read. The checker is tested too: a copy
with a misspelt path or symbol must fail, naming the line.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_CODE = re.compile(r"`([^`\n]+)`")
_PATH = re.compile(r"^(?:\./[\w.-]+\.[A-Za-z0-9]+|[\w-][\w.-]*(?:/[\w.-]+)*(?:/|/[\w.-]*\.[A-Za-z0-9]+))$")  # folder/, file.ext
_SYMBOL = re.compile(r"^dhc(?:\.[A-Za-z_]\w*)+$")


def names(text: str) -> list[tuple[int, str, str]]:
    """(line, kind, name) for each path and symbol the page names in inline code, outside fenced blocks."""
    text = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for code in _CODE.findall(line):
            if _SYMBOL.match(code):
                found.append((number, "symbol", code))
            elif _PATH.match(code):
                found.append((number, "path", code))
    return found


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` is a module, or a module's attribute chain (a dataclass field counts)."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            obj = _attribute(obj, name)
            if obj is _MISSING:
                return False
        return True
    return False


_MISSING, _FIELD = object(), object()


def _attribute(obj: object, name: str) -> object:
    found = getattr(obj, name, _MISSING)
    if found is _MISSING and dataclasses.is_dataclass(obj) and name in {f.name for f in dataclasses.fields(obj)}:
        return _FIELD  # a field without a class attribute (no default): it exists, nothing below it
    return found


def problems(text: str, root: Path) -> list[str]:
    """Each name on the page that does not exist, as ``line N: kind name``."""
    bad = []
    for number, kind, name in names(text):
        ok = resolves(name) if kind == "symbol" else (root / name).exists()
        if not ok:
            bad.append(f"line {number}: {kind} {name}")
    return bad


def test_every_file_and_symbol_the_architecture_page_names_exists():
    text = DOC.read_text(encoding="utf-8")
    assert problems(text, ROOT) == []


def test_the_page_names_enough_to_be_worth_checking():
    kinds = [kind for _, kind, _ in names(DOC.read_text(encoding="utf-8"))]
    assert kinds.count("symbol") >= 60 and kinds.count("path") >= 20, kinds  # a checker that finds nothing proves nothing


@pytest.mark.parametrize(("good", "bad", "kind"), [
    ("`dhc/plugin/recorder.py`", "`dhc/plugin/recorders.py`", "path"),
    ("`./thresholds.yaml`", "`./threshold.yaml`", "path"),
    ("`suites/stress/`", "`suites/stres/`", "path"),
    ("`dhc.plugin.recorder.CheckRecorder.record`", "`dhc.plugin.recorder.CheckRecorder.recrod`", "symbol"),
    ("`dhc.thresholds.contract.CheckSpec.metrics`", "`dhc.thresholds.contract.CheckSpec.metric`", "symbol"),
    ("`dhc.report.finish_report`", "`dhc.reports.finish_report`", "symbol"),
])
def test_a_misspelt_name_in_a_copy_of_the_page_fails_naming_its_line(tmp_path, good, bad, kind):
    text = DOC.read_text(encoding="utf-8")
    assert good in text
    copy = tmp_path / "architecture.md"
    copy.write_text(text.replace(good, bad, 1), encoding="utf-8")
    line = text[:text.index(good)].count("\n") + 1
    assert problems(copy.read_text(encoding="utf-8"), ROOT) == [f"line {line}: {kind} {bad.strip('`')}"]


def test_what_is_not_a_path_or_a_symbol_is_left_alone():
    text = ("`TFLOP/s` `dhc run --sink termination` `pytest suites/` `report.json` `/dev/termination-log`\n"
            "```\n`dhc.no.such.thing` `no/such/file.py`\n```\n`dhc_check.record(\"x\", 1, \"ratio\")`\n")
    assert names(text) == []
