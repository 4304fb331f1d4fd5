"""Read ``dcgmi diag -j`` output (DCGM 3.x and 4.x JSON) into plain records; never judge it.

What the real tool prints (checked against NVIDIA/DCGM's dcgmi/Diag.cpp, 3.2.5 to 4.6.0):
- DCGM <= 3.2: root ``"DCGM GPU Diagnostic"``; per-GPU rows carry ``gpu_ids`` as a string (``"0"``),
  ``warnings`` as a plain string, ``error_id`` beside it, ``info`` as one string.
- DCGM 3.3: same root; per-GPU rows carry ``gpu_id`` as a string; Deployment rows carry ``gpu_id`` as an
  integer only when they hold a warning, and their warning objects name the text ``warnings``
  (per-GPU ones ``warning``); warning objects carry ``error_id``, ``error_category``, ``error_severity``.
- DCGM 4.x: root ``"DCGM Diagnostic"`` with ``entity_groups`` and ``metadata`` beside it; rows carry
  ``entity_group``/``entity_id`` (absent for node-level rows), ``info`` is a list (at most 16 entries),
  ``warnings`` a list of objects; each test has a ``test_summary``.
- Any release: a failure to run is ``{<root>: {"version": ..., "runtime_error": "..."}}``; text may
  precede the JSON (``Successfully ran diagnostic for group.``).
A document of another shape raises ``DcgmOutputError`` naming the path, what was expected and what was
seen, never a bare ``AttributeError``/``KeyError``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ROOT_4X, ROOT_3X = "DCGM Diagnostic", "DCGM GPU Diagnostic"
STATUSES = {"pass": "Pass", "fail": "Fail", "skip": "Skip", "warn": "Warn", "not run": "Not Run", "not_run": "Not Run"}


class DcgmOutputError(Exception):
    """The output holds no DCGM diagnostic document dhc can read (the message says what and where)."""


@dataclass(frozen=True)
class DcgmWarning:
    message: str
    error_id: int | None = None
    category: int | None = None
    severity: int | None = None


@dataclass(frozen=True)
class DcgmResult:
    test: str
    category: str
    gpu: int | None  # None for node-level rows (Deployment tests) and non-GPU entities
    status: str  # Pass | Fail | Skip | Warn | Not Run, or the unknown text as printed
    warnings: tuple[DcgmWarning, ...] = ()
    info: tuple[str, ...] = ()
    entity: str = ""  # "GPU 0", "CPU 0", or "" for the node


@dataclass(frozen=True)
class DcgmRun:
    layout: str  # "3.x" | "4.x"
    version: str | None
    driver: str | None
    results: tuple[DcgmResult, ...] = ()
    runtime_error: str | None = None
    exit_code: int = 0
    serials: dict[int, str] = field(default_factory=dict)


def parse_diag(output: str, exit_code: int = 0) -> DcgmRun:
    try:
        return _parse(output, exit_code)
    except (RecursionError, ValueError) as exc:  # JSON nested past Python's limit, a 5,000-digit "GPU id"
        raise DcgmOutputError(f"dcgmi's JSON is beyond what dhc reads ({type(exc).__name__}: {str(exc)[:80]}); "
                              f"first bytes: {_head(output)}") from None


def _parse(output: str, exit_code: int) -> DcgmRun:
    document = first_json_object(output)
    if ROOT_4X in document:
        diag, layout = document[ROOT_4X], "4.x"
    elif ROOT_3X in document:
        diag, layout = document[ROOT_3X], "3.x"
    else:
        raise DcgmOutputError(f"expected a {ROOT_4X!r} or {ROOT_3X!r} object in dcgmi's JSON, got keys "
                              f"{', '.join(map(repr, list(document)[:5])) or '(none)'}; first bytes: {_head(output)}")
    root = repr(ROOT_4X if layout == "4.x" else ROOT_3X)
    if not isinstance(diag, dict):
        raise DcgmOutputError(f"expected an object under {root}, got {_kind(diag)}; first bytes: {_head(output)}")
    metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
    try:
        results = tuple(_results(diag, root))
    except DcgmOutputError as exc:
        raise DcgmOutputError(f"{exc}; first bytes: {_head(output)}") from None
    return DcgmRun(layout, _text(metadata.get("version") or diag.get("version")),
                   _text(metadata.get("Driver Version Detected")), results,
                   _text(diag.get("runtime_error")), exit_code, _serials(document.get("entity_groups")))


def first_json_object(output: str) -> dict[str, Any]:
    """dcgmi may print text before its JSON: take the first ``{`` that starts a whole object."""
    decoder, start = json.JSONDecoder(), output.find("{")
    while start != -1:
        try:
            document, _ = decoder.raw_decode(output, start)
        except json.JSONDecodeError:
            document = None
        if isinstance(document, dict):
            return document
        start = output.find("{", start + 1)
    raise DcgmOutputError(f"expected a JSON object in dcgmi's output, found none; first bytes: {_head(output)}")


def _results(diag: dict[str, Any], root: str) -> list[DcgmResult]:
    results = []
    for c, category in enumerate(_list(diag.get("test_categories"), f"{root}.test_categories")):
        where = f"{root}.test_categories[{c}]"
        if category is None:
            continue
        category = _object(category, where)
        name = _text(category.get("category")) or ""
        for t, test in enumerate(_list(category.get("tests"), f"{where}.tests")):
            if test is not None:
                results.extend(_test_results(_object(test, f"{where}.tests[{t}]"), name, f"{where}.tests[{t}]"))
    return results


def _test_results(test: dict[str, Any], category: str, where: str) -> list[DcgmResult]:
    name = test.get("name")
    if not isinstance(name, str) or not name:
        raise DcgmOutputError(f"expected a string under {where}.name, got {_kind(name)}")
    out = []
    for r, row in enumerate(_list(test.get("results"), f"{where}.results")):
        if row is not None:
            out.extend(_row_results(_object(row, f"{where}.results[{r}]"), name, category, f"{where}.results[{r}]"))
    summary = test.get("test_summary")
    if isinstance(summary, dict) and _summary_adds(summary, out):
        out.extend(_row_results({k: summary[k] for k in ("status", "warnings", "info") if k in summary}, name,
                                category, f"{where}.test_summary"))
    return out


def _summary_adds(summary: dict[str, Any], rows: list[DcgmResult]) -> bool:
    """4.x: the summary stands for the node when no row does: a test that ran on no entity, or a failure
    DCGM attached to no entity (it shows only in the summary), so dcgmi's Fail is never read as a pass."""
    status = STATUSES.get(str(summary.get("status", "")).strip().lower())
    return not rows or (status == "Fail" and not any(r.status == "Fail" for r in rows))


def _row_results(row: dict[str, Any], name: str, category: str, here: str) -> list[DcgmResult]:
    status = _status(row.get("status"), f"{here}.status")
    warnings, info = _warnings(row, here), _info(row.get("info"), f"{here}.info")
    return [DcgmResult(name, category, gpu, status, warnings, info, entity) for gpu, entity in _entities(row, here)]


def _entities(row: dict[str, Any], where: str) -> list[tuple[int | None, str]]:
    """Which device a row is about: 4.x entity_group/entity_id, 3.3 gpu_id, <= 3.2 gpu_ids, or the node."""
    group = row.get("entity_group")
    if "entity_id" in row:
        index = _index(row["entity_id"], f"{where}.entity_id")
        if group not in (None, "GPU"):
            return [(None, f"{group} {index}")]
        return [(index, f"GPU {index}")]
    raw = row.get("gpu_ids", row.get("gpu_id"))
    if raw is None or raw == "":
        return [(None, "")]
    key = "gpu_ids" if "gpu_ids" in row else "gpu_id"
    items = raw if isinstance(raw, list) else str(raw).split(",") if isinstance(raw, str) else [raw]
    return [(i, f"GPU {i}") for i in (_index(x, f"{where}.{key}") for x in items)]


def _index(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise DcgmOutputError(f"expected a GPU index (an integer or digits) under {where}, got {_kind(value)}")


def _status(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DcgmOutputError(f"expected a status string under {where}, got {_kind(value)}")
    return STATUSES.get(value.strip().lower(), value.strip())


def _warnings(row: dict[str, Any], where: str) -> tuple[DcgmWarning, ...]:
    raw = row.get("warnings", row.get("warning"))
    if raw in (None, "", []):
        return ()
    if isinstance(raw, str):  # <= 3.2: the text, with error_id beside it on the row
        return (DcgmWarning(raw, _int(row.get("error_id"))),)
    out = []
    for i, item in enumerate(_list(raw, f"{where}.warnings")):
        if isinstance(item, str):
            out.append(DcgmWarning(item))
        elif isinstance(item, dict):
            text = item.get("warning", item.get("warnings", item.get("message", "")))
            out.append(DcgmWarning(str(text), _int(item.get("error_id")), _int(item.get("error_category")),
                                   _int(item.get("error_severity"))))
        elif item is not None:
            raise DcgmOutputError(f"expected an object or a string under {where}.warnings[{i}], got {_kind(item)}")
    return tuple(out)


def _info(raw: Any, where: str) -> tuple[str, ...]:
    if raw in (None, ""):
        return ()
    if isinstance(raw, str):
        return (raw,)
    return tuple(str(x) for x in _list(raw, where) if x is not None)


def _serials(groups: Any) -> dict[int, str]:
    """GPU serial numbers from 4.x ``entity_groups`` (cosmetic: an odd shape here is ignored, not fatal)."""
    serials: dict[int, str] = {}
    for group in groups if isinstance(groups, list) else []:
        if isinstance(group, dict) and group.get("entity_group") == "GPU" and isinstance(group.get("entities"), list):
            for e in group["entities"]:
                serial = e.get("serial_num") if isinstance(e, dict) else None
                if isinstance(serial, str) and serial and not serial.startswith("<<<") and _int(e.get("entity_id")) is not None:
                    serials[int(e["entity_id"])] = serial
    return serials


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DcgmOutputError(f"expected an object under {where}, got {_kind(value)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DcgmOutputError(f"expected a list under {where}, got {_kind(value)}")
    return value


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.strip().lstrip("-").isdigit() else None


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    shown = json.dumps(value)[:60] if not isinstance(value, (dict, list)) else ""
    return "null" if value is None else f"{names.get(type(value), type(value).__name__)}" + (f" {shown}" if shown else "")


def _head(output: str) -> str:
    return repr(output.strip()[:120]) if output.strip() else "(empty output)"
