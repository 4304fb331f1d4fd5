"""Read many report.json files into two tables: one row per node, one row per measurement.

A file that cannot be read, is not JSON, or is not a dhc report of schema 1.x is skipped and
listed with the reason; one bad file never stops the review.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

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
    found: list[Path] = []
    for path in paths:
        found += sorted(path.rglob("report.json")) if path.is_dir() else [path]
    return found


def load(paths: list[Path], workers: int = 2) -> Fleet:
    files = report_files(paths)
    chunks = [files[i::workers] for i in range(workers)] if len(files) > 200 and workers > 1 else [files]
    if len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_rows_of, chunks))
    else:
        parts = [_rows_of(files)]
    nodes = [row for part in parts for row in part[0]]
    measurements = [row for part in parts for row in part[1]]
    checks = [row for part in parts for row in part[2]]
    skipped = [item for part in parts for item in part[3]]
    return Fleet(pd.DataFrame(nodes, columns=NODE_COLUMNS),
                 pd.DataFrame(measurements, columns=MEASUREMENT_COLUMNS),
                 pd.DataFrame(checks, columns=["instance_id", "instance_type", "check", "status", "reason"]),
                 skipped)


def _rows_of(files: list[Path]) -> tuple[list[list[Any]], list[list[Any]], list[list[Any]], list[tuple[str, str]]]:
    nodes, measurements, checks, skipped = [], [], [], []
    for path in files:
        try:
            document = json.loads(path.read_bytes())
            node, node_measurements, node_checks = _rows(document, str(path))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
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
    node = [file, iid, itype, instance["region"]["value"], instance["node_name"]["value"], verdict["status"],
            verdict["action"], run["profile"], run["started_at"], run["duration_s"], statuses.count("Failed"),
            statuses.count("Incomplete"), "; ".join(r["message"] for r in verdict["reasons"])[:500]]
    measurements = []
    for check in document["checks"]:
        for m in check["measurements"]:
            limit = m["limit"] or {}
            device = m["device"]
            label = "node" if not device else (f"GPU {device['index']}" if device["kind"] == "gpu" else device["kind"])
            measurements.append([iid, itype, m["check"], m["name"], label, float(m["value"]), m["unit"],
                                 limit.get("value"), limit.get("unit"), limit.get("comparison"), m["judgement"]])
    checks = [[iid, itype, c["check"], c["status"], c["reason"]] for c in document["checks"]]
    return node, measurements, checks


def _why(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing field {exc}"
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg} at line {exc.lineno})"
    return str(exc) or type(exc).__name__
