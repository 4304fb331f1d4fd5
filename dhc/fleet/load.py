"""Read many report.json files into two tables: one row per node, one row per measurement.

A file that cannot be read, is not JSON, or is not a dhc report of schema 1.x is skipped and
listed with the reason; one bad file never stops the review. Only regular files are read (a FIFO
named report.json is listed, never waited on), and symbolic links to folders are listed, not
followed (no loops, no walking out of the tree). A measured value that is NaN or infinite is kept
as NaN in the table, so distributions can leave it out while the node still counts.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dhc.textfile import MAX_REPORT_BYTES, FileRefused, read_regular

NODE_COLUMNS = ["file", "instance_id", "instance_type", "region", "node", "status", "action", "profile",
                "started_at", "duration_s", "failed_checks", "incomplete_checks", "reasons"]
MEASUREMENT_COLUMNS = ["instance_id", "instance_type", "check", "metric", "device", "value", "unit", "limit",
                       "limit_unit", "comparison", "judgement"]


@dataclass
class Fleet:
    nodes: pd.DataFrame
    measurements: pd.DataFrame
    checks: pd.DataFrame
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, why)


def report_files(paths: list[Path]) -> list[Path]:
    """Files as given, and every report.json below each folder given."""
    return find_reports(paths)[0]


def find_reports(paths: list[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Report files, and (path, why) for each symbolic link to a folder met on the way (not followed)."""
    found: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for path in paths:
        if not path.is_dir():
            found.append(path)
            continue
        for folder, dirs, files in os.walk(path, onerror=lambda exc: skipped.append((exc.filename, _why(exc)))):
            for name in sorted(d for d in dirs if os.path.islink(os.path.join(folder, d))):
                skipped.append((os.path.join(folder, name), "a symbolic link to a folder; not followed"))
            dirs.sort()
            found += [Path(folder) / "report.json"] if "report.json" in files else []
    return sorted(found), skipped


def load(paths: list[Path], workers: int = 2) -> Fleet:
    files, links = find_reports(paths)
    chunks = [files[i::workers] for i in range(workers)] if len(files) > 200 and workers > 1 else [files]
    if len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_rows_of, chunks))
    else:
        parts = [_rows_of(files)]
    nodes = [row for part in parts for row in part[0]]
    measurements = [row for part in parts for row in part[1]]
    checks = [row for part in parts for row in part[2]]
    skipped = links + [item for part in parts for item in part[3]]
    return Fleet(pd.DataFrame(nodes, columns=NODE_COLUMNS),
                 pd.DataFrame(measurements, columns=MEASUREMENT_COLUMNS),
                 pd.DataFrame(checks, columns=["instance_id", "instance_type", "check", "status", "reason"]),
                 skipped)


def _rows_of(files: list[Path]) -> tuple[list[list[Any]], list[list[Any]], list[list[Any]], list[tuple[str, str]]]:
    nodes, measurements, checks, skipped = [], [], [], []
    for path in files:
        try:
            document = json.loads(read_regular(path, MAX_REPORT_BYTES))
            node, node_measurements, node_checks = _rows(document, str(path))
        except (FileRefused, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            skipped.append((str(path), _why(exc)))
            continue
        nodes.append(node)
        measurements += node_measurements
        checks += node_checks
    return nodes, measurements, checks, skipped


def _rows(document: dict[str, Any], file: str) -> tuple[list[Any], list[list[Any]], list[list[Any]]]:
    if not isinstance(document, dict) or not str(document.get("schema_version", "")).startswith("1."):
        raise ValueError("not a dhc report of schema 1.x")
    instance, verdict, run = document["instance"], document["verdict"], document["run"]
    iid, itype = instance["instance_id"]["value"], document["thresholds"]["instance_type"]
    statuses = [c["status"] for c in document["checks"]]
    if verdict["status"] not in _STATUSES or verdict["action"] not in _ACTIONS:
        raise ValueError(f"verdict {verdict['status']!r} / {verdict['action']!r} is not a dhc verdict")
    node = [file, iid, itype, instance["region"]["value"], instance["node_name"]["value"], verdict["status"],
            verdict["action"], run["profile"], run["started_at"], _finite_or_none(run["duration_s"]),
            statuses.count("Failed"),
            statuses.count("Incomplete"), "; ".join(r["message"] for r in verdict["reasons"])[:500]]
    measurements = []
    for check in document["checks"]:
        for m in check["measurements"]:
            limit = m["limit"] or {}
            device = m["device"]
            label = "node" if not device else (f"GPU {device['index']}" if device["kind"] == "gpu" else device["kind"])
            measurements.append([iid, itype, m["check"], m["name"], label, _measured(m), m["unit"],
                                 limit.get("value"), limit.get("unit"), limit.get("comparison"), m["judgement"]])
    checks = [[iid, itype, c["check"], c["status"], c["reason"]] for c in document["checks"]]
    return node, measurements, checks


_STATUSES = ("Passed", "Failed", "Incomplete")
_ACTIONS = ("None", "Reboot", "Replace")


def _measured(m: dict[str, Any]) -> float:
    """The value as a float: NaN/inf from ``non_finite`` (schema 1.1) or a JSON NaN literal; else a number."""
    if m.get("non_finite") in ("nan", "inf", "-inf"):
        return float(m["non_finite"])
    value = m["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"measurement {m.get('check')} {m.get('name')}: value {value!r} is not a number")
    return float(value)


def _finite_or_none(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg} at line {exc.lineno})"
    if isinstance(exc, FileRefused):
        return exc.problem
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return str(exc) or type(exc).__name__
