"""Fleet review: many node reports into counts, failures ranked, distributions and outliers.

pandas lives here and nowhere else. The page itself is rendered by ``dhc.report.fleet_html``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dhc.fleet import analysis
from dhc.fleet.load import Fleet, load, report_files
from dhc.report.files import write_text_atomic

__all__ = ["Fleet", "load", "report_files", "review", "write_csv"]

FLEET_SCHEMA_VERSION = "1.3"  # 1.1 added distributions[].non_finite; 1.2 checks_by_type; 1.3 read_from
MAX_ROW_PROBLEMS = 100  # stale or corrupt fleet rows listed by file; all are counted


def review(paths: list[Path], k: float = 3.5, workers: int | None = None) -> tuple[dict[str, Any], Any]:
    """The fleet document (JSON-able) and the node table (a DataFrame, worst first, for CSV)."""
    fleet = load(paths, workers)
    suspects = analysis.outliers(fleet, k)
    table = analysis.node_table(fleet, suspects)
    document = {
        "schema_version": FLEET_SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reports": int(len(fleet.nodes)),
        "skipped": [{"file": f, "why": why} for f, why in fleet.skipped],
        "read_from": read_from(fleet),
        "outlier_k": k,
        "counts": analysis.counts(fleet),
        "checks_by_type": analysis.checks_by_type(fleet),
        "failed_checks": analysis.failed_checks(fleet),
        "distributions": analysis.distributions(fleet),
        "outliers": records(suspects.drop(columns="node_row")),
        "nodes": records(table),
    }
    return document, table


def read_from(fleet: Fleet) -> dict[str, Any]:
    """How the reports were read: from fleet rows, or whole (and why: no row, a stale or a corrupt one)."""
    return {"fleet_rows": fleet.from_rows, "report_json": sum(fleet.fallback.values()),
            "why_report_json": fleet.fallback,
            "row_problems": [{"file": f, "why": why} for f, why in fleet.fallback_files[:MAX_ROW_PROBLEMS]]}


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def write_csv(table: Any, path: Path) -> None:
    """The node table as CSV that a spreadsheet opens without running anything (OWASP CSV injection).

    A text cell that starts with ``= + - @``, a tab or a carriage return gets a leading single quote,
    unless it is a plain number (``-12.5``); numeric columns are written as numbers, so negative
    numbers stay numbers.
    """
    safe = table.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(neutralise).astype(object)
    write_text_atomic(path, safe.to_csv(index=False))


def neutralise(cell: Any) -> Any:
    if isinstance(cell, str) and cell.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of JSON's types (NaN and infinities as None), built column by column: fast at 100,000 rows."""
    columns = [[None if isinstance(v, float) and not math.isfinite(v) else v for v in table[c].tolist()]
               for c in table.columns]
    return [dict(zip(table.columns, row, strict=True)) for row in zip(*columns, strict=True)]
