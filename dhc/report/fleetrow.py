"""The fleet row: what the fleet review reads from one report, compact and columnar, beside report.json.

A fleet of 100,000 reports is some 11 GB of indented JSON; decoding it costs the review a minute and a
half of CPU. Every run therefore also writes ``fleet-row.json``: no indentation, only the fields the
review reads: a table of series (check, metric, unit, limit) and of devices, and the measurements'
series and device codes, values and judgements as flat number lists that go straight into arrays (the
measurements grouped by series, so a column is per metric). Some 8 kB instead of 68.

One definition: ``fleet_row`` makes the row from the typed ``Report``; ``save_report`` writes it
(``write_row``) after report.json; the fleet review reads it through ``row_for`` and ``parse``, and
reads report.json instead, counting why, whenever the row cannot stand for its report:

- missing: a run older than rows, or one that died between report.json and its row;
- stale: report.json was rewritten after its row. The row records report.json's size, mtime_ns,
  inode, sha256 and run id. Same size, mtime and inode: fresh, with a stat and no read (an atomic
  rewrite makes a new inode, even within one tick of the clock). Same size otherwise (a fleet
  copied without keeping times): fresh only if the sha256 of report.json matches. Else stale;
- corrupt: not JSON, another row version, or a field of the wrong type or length.

A reused run folder may keep an earlier run's row: it stands for nothing once report.json is
replaced (stale) or removed (only report.json files are looked for).

A non-finite value (JSON has none) is null in ``value`` and spelled in ``non_finite`` as
``[position, "nan" | "inf" | "-inf"]``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from array import array
from pathlib import Path
from typing import Any

from dhc.errors import ReportError
from dhc.model.codec import non_finite
from dhc.model.report import Report
from dhc.report.files import REPORT_NAME, write_text_atomic
from dhc.textfile import FileRefused, read_regular

try:  # the fleet review's fast decoder (dhc[fleet]); the same answer as json, sooner
    from msgspec.json import decode as _decode
except ImportError:  # pragma: no cover - exercised where msgspec is absent
    _decode = json.loads

ROW_NAME = "fleet-row.json"
ROW_VERSION = 1
JUDGEMENTS = ("within", "outside", "unlimited", "uncalibrated")  # a judgement's code is its index
NODE_DEVICE = "node"  # the device of a node-wide measurement
MAX_ROW_BYTES = 16 << 20
NODE_FIELDS = ("instance_id", "instance_type", "region", "node_name", "status", "action", "profile", "started_at",
               "duration_s")


def fleet_row(report: Report, stamp: dict[str, Any]) -> dict[str, Any]:
    """The row of ``report``; ``stamp`` is ``report_stamp`` of the report.json it stands for."""
    i, run = report.instance, report.run
    node = dict(zip(NODE_FIELDS, (i.instance_id.value, report.thresholds.instance_type, i.region.value,
                                  i.node_name.value, str(report.verdict.status), str(report.verdict.action),
                                  run.profile, run.started_at, run.duration_s), strict=True))
    devices: dict[str, int] = {}
    series: dict[tuple, list] = {}  # key -> the series' measurements, in report order
    for check in report.checks:
        for m in check.measurements:
            limit = (None, None, None) if m.limit is None else (str(m.limit.comparison), m.limit.value, m.limit.unit)
            series.setdefault((m.check, m.name, m.unit, *limit), []).append(m)
    columns: dict[str, list] = {"series": [], "device": [], "value": [], "judgement": [], "non_finite": []}
    for code, measured in enumerate(series.values()):
        for m in measured:
            label = NODE_DEVICE if m.device is None else m.device.label(ids=False)
            if (spelled := non_finite(m.value)) is not None:
                columns["non_finite"].append([len(columns["value"]), spelled])
            columns["series"].append(code)
            columns["device"].append(devices.setdefault(label, len(devices)))
            columns["value"].append(None if spelled else m.value)
            columns["judgement"].append(JUDGEMENTS.index(str(m.judgement)))
    return {"fleet_row": ROW_VERSION, "report": {"run_id": run.run_id, **stamp},
            "schema_version": report.schema_version, "node": node,
            "reasons": [r.message for r in report.verdict.reasons],
            "checks": [[c.check, str(c.status), c.reason] for c in report.checks],
            "devices": list(devices), "series": [list(key) for key in series], "measurements": columns}


def report_stamp(data: bytes, info: os.stat_result) -> dict[str, Any]:
    """What says a row still stands for report.json: ``data`` (its bytes) and ``info`` (its stat)."""
    return {"size": len(data), "mtime_ns": info.st_mtime_ns, "ino": info.st_ino,
            "sha256": hashlib.sha256(data).hexdigest()}


def dumps(row: dict[str, Any]) -> str:
    return json.dumps(row, separators=(",", ":"), allow_nan=False)


def write_row(out: Path, report: Report | dict[str, Any]) -> None:
    """``out/fleet-row.json`` for the report.json just written in ``out`` (atomic, like the report)."""
    try:
        with open(out / REPORT_NAME, "rb") as handle:  # its stat and its bytes from one open file
            stamp = report_stamp(handle.read(), os.fstat(handle.fileno()))
    except OSError as exc:
        raise ReportError(f"cannot write {out / ROW_NAME}: reading {REPORT_NAME} back: {exc.strerror or exc}") from None
    write_text_atomic(out / ROW_NAME, dumps(fleet_row(Report.of(report), stamp)))


def row_for(report: Path | str) -> tuple[dict[str, Any] | None, str | None]:
    """The fresh row beside ``report``, or (None, why not): "missing", "stale: ..." or "corrupt: ...".

    (None, None) when ``report`` is not a regular file: the report reader refuses it and says why.
    """
    try:
        info = os.stat(report)
    except OSError:
        return None, None
    if not stat.S_ISREG(info.st_mode):
        return None, None
    try:
        row = _decode(_read_row(os.path.join(os.path.dirname(report), ROW_NAME)))
        stamp = row["report"]
        size, mtime_ns, ino, sha256 = stamp["size"], stamp["mtime_ns"], stamp["ino"], stamp["sha256"]
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"corrupt: cannot read it ({exc.strerror or exc})"
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        return None, f"corrupt: {_why(exc)}"
    if size != info.st_size:
        return None, f"stale: report.json is {info.st_size} bytes, its row says {size}"
    if (mtime_ns, ino) != (info.st_mtime_ns, info.st_ino) and _sha256(report) != sha256:
        return None, "stale: report.json changed after its row was written (sha256 differs)"
    return row, None


def _read_row(path: str) -> bytes:
    """The row's bytes with one open, fstat and read (a fleet has 100,000 rows); only a regular file is read
    (a FIFO is never waited on). A short read leaves JSON the decoder refuses: corrupt, never half a row."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("it is not a regular file")
        if info.st_size > MAX_ROW_BYTES:
            raise ValueError(f"{info.st_size} bytes; at most {MAX_ROW_BYTES}")
        return os.read(fd, info.st_size + 1)
    finally:
        os.close(fd)


def _sha256(path: Path | str) -> str | None:
    try:
        return hashlib.sha256(read_regular(path, 1 << 30)).hexdigest()
    except FileRefused:
        return None


def parse(row: dict[str, Any], known: dict[tuple, tuple] | None = None) -> tuple:
    """A decoded row, checked whole: (node fields with reasons, checks, device labels, series keys, columns).

    A row's series is [check, metric, unit, comparison, limit, limit unit], its key (check, metric, unit,
    (comparison, limit, limit unit) or None: no limit); the columns are arrays of
    series and device codes (indices into those lists), values (array('d')) and judgement codes (index
    in JUDGEMENTS). ``known``: device and series tables already checked, returned as the same tuple
objects (every row of one kind of node has the same tables), so a reader may cache by identity.
    Raises ValueError/KeyError/TypeError naming what does not fit; nothing is returned half-checked.
    """
    if row.get("fleet_row") != ROW_VERSION or not str(row.get("schema_version", "")).startswith("1."):
        raise ValueError(f"row version {row.get('fleet_row')!r} of schema {row.get('schema_version')!r}; "
                         f"expected {ROW_VERSION} of 1.x")
    node = {name: row["node"][name] for name in NODE_FIELDS} | {"reasons": [_text(r) for r in row["reasons"]]}
    node["instance_type"] = _text(node["instance_type"])  # the fleet groups by it, as report.json's path checks
    checks = [(_text(c), _text(s), _text(r)) for c, s, r in row["checks"]]
    known = {} if known is None else known
    raw_devices, raw_series = tuple(row["devices"]), tuple(map(tuple, row["series"]))
    devices = known.get(raw_devices) or known.setdefault(raw_devices, tuple(map(_text, raw_devices)))
    keys = known.get(raw_series) or known.setdefault(raw_series, tuple(map(_key, raw_series)))
    return node, checks, devices, keys, _columns(row["measurements"], len(keys), len(devices))


def _key(raw: tuple) -> tuple:
    check, metric, unit, comparison, limit, limit_unit = raw
    if comparison is None and (limit is not None or limit_unit is not None):
        raise ValueError(f"series {metric!r}: a limit without a comparison")
    if comparison is None:
        return _text(check), _text(metric), _text(unit), None
    return (_text(check), _text(metric), _text(unit),
            (_text(comparison), _number_or_none(limit), None if limit_unit is None else _text(limit_unit)))


def _columns(columns: dict[str, Any], n_series: int, n_devices: int) -> tuple[array, array, array, array]:
    series, devices = array("i", columns["series"]), array("i", columns["device"])
    values, judged = list(columns["value"]), array("b", columns["judgement"])
    if not len(series) == len(devices) == len(values) == len(judged):
        raise ValueError(f"measurement columns of {len(series)} series, {len(devices)} devices, {len(values)} "
                         f"values and {len(judged)} judgements")
    for position, spelled in columns.get("non_finite", ()):
        if values[position] is not None or spelled not in ("nan", "inf", "-inf"):
            raise ValueError(f"non_finite {spelled!r} at {position} of a value that is not null")
        values[position] = float(spelled)
    if not {v.__class__ for v in values} <= {float, int}:
        raise ValueError("a measured value that is not a number")
    for name, codes, top in (("series", series, n_series), ("device", devices, n_devices), ("judgement", judged, 4)):
        if codes and (min(codes) < 0 or max(codes) >= top):
            raise ValueError(f"a {name} code out of range (0 to {top - 1})")
    return series, devices, array("d", values), judged


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected text, got {value!r:.40}")
    return value


def _number_or_none(value: Any) -> float | None:
    if value is not None and (value.__class__ is bool or not isinstance(value, (int, float)) or not math.isfinite(value)):
        raise TypeError(f"expected a number or null, got {value!r:.40}")
    return value


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    return f"{type(exc).__name__}: {exc}"[:200]
