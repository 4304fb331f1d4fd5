"""Read a batch of report.json files into one compact Part: node rows, and measurements as number arrays.

What the review needs from a report is a node row, each check's status, and each measurement's
value with its series (type, check, metric, unit, limit) and device. A batch keeps the values in
``array`` columns with small integer codes for series, device and judgement: some 21 bytes a
measurement while a batch is read, instead of a row of Python objects (the old reader's 2 GB at
10,000 reports).

Two decoders, one answer. The fast one (msgspec, typed: only the fields named below are built)
takes a well-formed report; anything it refuses (a NaN literal, a bool where a number goes, a
missing field) is read again by the plain ``json`` path, which either accepts it or names why the
file is skipped. A file is never half-counted: its rows are added only once the whole file was read.

Before either, the report's fleet row (``fleet-row.json``, ``dhc.report.fleetrow``) is tried: some
12 kB of columns instead of 68 kB of indented JSON. A row that is missing, stale or corrupt is
counted (and, unless missing, listed with why), and report.json is read instead.
"""

from __future__ import annotations

import json
import math
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dhc.model import Device
from dhc.report import fleetrow
from dhc.textfile import MAX_REPORT_BYTES, FileRefused, read_regular

try:  # the fast decoder comes with dhc[fleet]; without it every file takes the json path
    import msgspec
except ImportError:  # pragma: no cover - exercised where msgspec is absent
    msgspec = None

NODE_COLUMNS = ["file", "instance_id", "instance_type", "region", "node", "status", "action", "profile",
                "started_at", "duration_s", "failed_checks", "incomplete_checks", "reasons"]
SERIES_COLUMNS = ["instance_type", "check", "metric", "unit", "comparison", "limit", "limit_unit"]
JUDGEMENTS = list(fleetrow.JUDGEMENTS)
STATUSES = ("Passed", "Failed", "Incomplete")
ACTIONS = ("None", "Reboot", "Replace")
CHECK_STATUSES = ("Passed", "Failed", "Incomplete", "Skipped")


@dataclass
class Part:
    """One batch of files: rows for the nodes, codes and values for the measurements."""

    nodes: list[list[Any]] = field(default_factory=list)
    series: dict[tuple, int] = field(default_factory=dict)  # (type, check, metric, unit, limit) -> code here
    devices: dict[str, int] = field(default_factory=dict)  # "GPU 3", "cpu", "node" -> code in this part
    node: array = field(default_factory=lambda: array("i"))  # row in ``nodes``
    code: array = field(default_factory=lambda: array("i"))  # series code
    device: array = field(default_factory=lambda: array("i"))
    value: array = field(default_factory=lambda: array("d"))
    judgement: array = field(default_factory=lambda: array("b"))  # index in JUDGEMENTS, -1 for another word
    checks: Counter = field(default_factory=Counter)  # (instance_type, check, status) -> reports
    problems: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # Failed/Incomplete checks
    skipped: list[tuple[str, str]] = field(default_factory=list)
    device_keys: dict[Any, int] = field(default_factory=dict)  # a decoded device (or None) -> device code
    from_rows: int = 0  # reports read from their fleet row
    row_keys: dict[tuple, tuple] = field(default_factory=dict)  # rows' series and device tables, checked once
    row_codes: dict[tuple, tuple] = field(default_factory=dict)  # those tables' codes in this part (_row_codes)
    fallback: Counter = field(default_factory=Counter)  # "missing" / "stale" / "corrupt" -> reports read whole
    fallback_files: list[tuple[str, str]] = field(default_factory=list)  # (file, why) of each stale/corrupt row

    def add(self, node: list[Any], measured: list[tuple], checks: list[tuple[str, str, str]]) -> None:
        """Add one report; a key that cannot be coded raises before anything is added."""
        itype, series, devices = node[2], self.series, self.devices
        codes = [series.setdefault((itype, *key), len(series)) for key, _, _, _ in measured]
        labels = [devices.setdefault(label, len(devices)) for _, label, _, _ in measured]
        self.extend(node, codes, labels, [value for _, _, value, _ in measured],
                    [_JUDGEMENT_CODE.get(j, -1) for _, _, _, j in measured], checks)

    def extend(self, node: list[Any], codes: list[int], devices: list[int], values: list[float],
               judgements: list[int], checks: list[tuple[str, str, str]]) -> None:
        itype = node[2]
        self.node.extend([len(self.nodes)] * len(codes))
        self.nodes.append(node)
        self.code.extend(codes)
        self.device.extend(devices)
        self.value.extend(values)
        self.judgement.extend(judgements)
        for check, status, reason in checks:
            self.checks[(itype, check, status)] += 1
            if status in ("Failed", "Incomplete"):
                self.problems.append((node[1], itype, check, status, reason))


_JUDGEMENT_CODE = {word: code for code, word in enumerate(JUDGEMENTS)}


def read_batch(files: list[str] | list[Path]) -> Part:
    part = Part()
    for path in files:
        if _from_row(part, str(path)):
            continue
        try:
            data = read_regular(path, MAX_REPORT_BYTES)
            _read_into(part, data, str(path))
        except (FileRefused, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            part.skipped.append((str(path), why(exc)))
    return part


def _from_row(part: Part, file: str) -> bool:
    """Whether ``file`` was added from its fresh fleet row; if not, why not is counted (and listed)."""
    row, why_not = fleetrow.row_for(file)
    if row is not None:
        try:
            _add_row(part, fleetrow.parse(row, part.row_keys), file)
            part.from_rows += 1
            return True
        except (ValueError, KeyError, TypeError, IndexError, OverflowError) as exc:
            why_not = f"corrupt: {why(exc)}"
    if why_not is not None:
        part.fallback[why_not.split(":")[0]] += 1
        if why_not != "missing":
            part.fallback_files.append((file, f"{fleetrow.ROW_NAME} {why_not}; read report.json instead"))
    return False


def _add_row(part: Part, parsed: tuple, file: str) -> None:
    """A checked row (``fleetrow.parse``): its columns arrive as arrays, recoded to this part's codes."""
    n, checks, labels, keys, (series, devices, values, judgements) = parsed
    node = _node_row(file, n["instance_id"], n["instance_type"], n["region"], n["node_name"], n["status"],
                     n["action"], (n["profile"], n["started_at"], n["duration_s"]), [c[1] for c in checks],
                     n["reasons"])
    series_code, device_code = _row_codes(part, node[2], keys, labels)
    part.extend(node, _recode(series_code, series), _recode(device_code, devices), values, judgements, checks)


def _row_codes(part: Part, itype: str, keys: tuple, labels: tuple) -> tuple[np.ndarray, np.ndarray]:
    """This part's codes for a row's series and device tables; cached by the tables' identity (parse hands
    the same checked tuples back for the same tables, and the cache keeps them alive)."""
    cached = part.row_codes.get((id(keys), id(labels), itype))
    if cached is None or cached[0] is not keys or cached[1] is not labels:
        series, devices = part.series, part.devices
        cached = (keys, labels, np.array([series.setdefault((itype, *key), len(series)) for key in keys], np.int32),
                  np.array([devices.setdefault(label, len(devices)) for label in labels], np.int32))
        part.row_codes[(id(keys), id(labels), itype)] = cached
    return cached[2], cached[3]


def _recode(codes: np.ndarray, column: array) -> array:
    out = array("i")
    out.frombytes(codes[np.frombuffer(column, dtype=np.int32)].tobytes())
    return out


def _read_into(part: Part, data: bytes, file: str) -> None:
    if _FAST is not None:
        try:
            return _add_struct(part, _FAST.decode(data), file)
        except (msgspec.DecodeError, ValueError):
            pass  # the json path reads it, or says why not
    part.add(*_from_dict(json.loads(data), file))


def _node_row(file: str, iid: Any, itype: Any, region: Any, node: Any, status: Any, action: Any, run: tuple,
              statuses: list[str], reasons: list[str]) -> list[Any]:
    if status not in STATUSES or action not in ACTIONS:
        raise ValueError(f"verdict {status!r} / {action!r} is not a dhc verdict")
    profile, started_at, duration_s = run
    return [file, iid, itype, region, node, status, action, profile, started_at, finite_or_none(duration_s),
            statuses.count("Failed"), statuses.count("Incomplete"), "; ".join(reasons)[:500]]


def _from_dict(document: Any, file: str) -> tuple[list[Any], list[tuple], list[tuple[str, str, str]]]:
    if not isinstance(document, dict) or not str(document.get("schema_version", "")).startswith("1."):
        raise ValueError("not a dhc report of schema 1.x")
    instance, verdict, run = document["instance"], document["verdict"], document["run"]
    checks = [(c["check"], c["status"], c["reason"]) for c in document["checks"]]
    node = _node_row(file, instance["instance_id"]["value"], _text(document["thresholds"]["instance_type"], "instance type"),
                     instance["region"]["value"], instance["node_name"]["value"], verdict["status"], verdict["action"],
                     (run["profile"], run["started_at"], run["duration_s"]), [c[1] for c in checks],
                     [r["message"] for r in verdict["reasons"]])
    measured = []
    for check in document["checks"]:
        for m in check["measurements"]:
            limit, device = m["limit"] or {}, m["device"]
            label = fleetrow.NODE_DEVICE if not device else Device(device["kind"], device.get("index", 0)).label(ids=False)
            key = (_text(m["check"], "measurement check"), _text(m["name"], "measurement name"),
                   _text(m["unit"], f"measurement {m['name']} unit"),
                   (limit.get("comparison"), limit.get("value"), limit.get("unit")))
            measured.append((key, label, measured_value(m), m["judgement"]))
    return node, measured, checks


def _add_struct(part: Part, doc: Any, file: str) -> None:
    """The fast path's rows, added to ``part`` in one pass (hot: some 170 measurements a report)."""
    if not doc.schema_version.startswith("1."):
        raise ValueError("not a dhc report of schema 1.x")
    checks = [(c.check, c.status, c.reason) for c in doc.checks]
    i, run, itype = doc.instance, doc.run, doc.thresholds.instance_type
    node = _node_row(file, i.instance_id.value, itype, i.region.value, i.node_name.value,
                     doc.verdict.status, doc.verdict.action, (run.profile, run.started_at, run.duration_s),
                     [c[1] for c in checks], [r.message for r in doc.verdict.reasons])
    series, device_keys, judgement_code = part.series, part.device_keys, _JUDGEMENT_CODE
    codes, devices, values, judgements = [], [], [], []
    for check in doc.checks:
        for m in check.measurements:
            if m.non_finite is not None:
                raise ValueError("a non-finite value: the json path decides")
            key = (itype, m.check, m.name, m.unit, m.limit)  # a Limit struct: hashable, expanded in merge
            code = series.get(key)
            codes.append(series.setdefault(key, len(series)) if code is None else code)
            code = device_keys.get(m.device)
            devices.append(_device_code(part, m.device) if code is None else code)
            values.append(m.value)
            judgements.append(judgement_code.get(m.judgement, -1))
    part.extend(node, codes, devices, values, judgements, checks)


def _device_code(part: Part, device: Any) -> int:
    label = fleetrow.NODE_DEVICE if device is None else Device(device.kind, device.index).label(ids=False)
    code = part.devices.setdefault(label, len(part.devices))
    part.device_keys[device] = code
    return code


def _text(value: Any, what: str) -> str:
    """A field the schema makes text (a series' type, check, metric and unit: the fleet groups by them).
    A number or a boolean is grouped by its text, as the review always did; a null has no group and
    the report is skipped, named (it used to end the whole review in a traceback)."""
    if value is None or isinstance(value, (dict, list)):
        raise ValueError(f"{what}: expected text, got {json.dumps(value)[:40]}")
    return value if isinstance(value, str) else str(value)


def measured_value(m: dict[str, Any]) -> float:
    """The value as a float: NaN/inf from ``non_finite`` (schema 1.1) or a JSON NaN literal; else a number."""
    if m.get("non_finite") in ("nan", "inf", "-inf"):
        return float(m["non_finite"])
    value = m["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"measurement {m.get('check')} {m.get('name')}: value {value!r} is not a number")
    return float(value)


def finite_or_none(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg} at line {exc.lineno})"
    if isinstance(exc, FileRefused):
        return exc.problem
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    return str(exc) or type(exc).__name__


def _fast_decoder() -> Any:
    """A typed decoder for exactly the fields read above; every other field is skipped unbuilt."""
    if msgspec is None:
        return None
    from dhc.fleet import shapes
    return msgspec.json.Decoder(shapes.Report)


_FAST = _fast_decoder()
