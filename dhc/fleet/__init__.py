"""Fleet review: many node reports into counts, failures ranked, distributions and outliers.

pandas lives here and nowhere else. The page itself is rendered by ``dhc.report.fleet_html``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dhc.fleet import analysis
from dhc.fleet.load import Fleet, load, report_files
from dhc.fleet.read import msgspec
from dhc.report.files import UNDECODABLE_ESCAPED, write_json_atomic, write_text_atomic

__all__ = ["Fleet", "analyse", "load", "report_files", "review", "write_csv", "write_json"]

FLEET_SCHEMA_VERSION = "1.3"  # 1.1 added distributions[].non_finite; 1.2 checks_by_type; 1.3 read_from
MAX_ROW_PROBLEMS = 100  # stale or corrupt fleet rows listed by file; all are counted


def review(paths: list[Path], k: float = 3.5, workers: int | None = None) -> tuple[dict[str, Any], Any]:
    """The fleet document (JSON-able) and the node table (a DataFrame, worst first, for CSV)."""
    return analyse(load(paths, workers), k)


def analyse(fleet: Fleet, k: float = 3.5) -> tuple[dict[str, Any], Any]:
    """``review`` of a Fleet already read: the work after reading, in this process."""
    suspects = analysis.outliers(fleet, k)
    distributions = analysis.distributions(fleet)
    analysis.release(fleet)
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
        "distributions": distributions,
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
    numbers stay numbers. The text is pandas' ``to_csv(index=False)`` of that table, written by the
    same ``csv`` module from whole columns turned into Python values by numpy (twice as fast as per cell).
    """
    if not all(dtype.kind in "fiubO" for dtype in table.dtypes):
        safe = table.copy()  # a column of another kind (dates, durations): pandas writes it
        for column in safe.columns:
            if not pd.api.types.is_numeric_dtype(safe[column]):
                safe[column] = safe[column].map(neutralise).astype(object)
        write_text_atomic(path, safe.to_csv(index=False), errors=UNDECODABLE_ESCAPED)
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # pandas' dialect: QUOTE_MINIMAL, '"' doubled, "\n"
    writer.writerow(list(table.columns))
    writer.writerows(zip(*(_csv_cells(table[c]) for c in table.columns), strict=True))
    write_text_atomic(path, buffer.getvalue(), errors=UNDECODABLE_ESCAPED)


def _csv_cells(column: pd.Series) -> list[Any]:
    """A column's cells as pandas writes them: a missing cell (NaN, None) empty, text neutralised."""
    cells = _cells(column, np.isnan)  # pandas writes NaN as empty and infinities as inf, as repr does
    if _numpy_number(column):
        return cells
    return [neutralise(c) if c.__class__ is str and c.startswith(_FORMULA_START) else c for c in cells]


def _cells(column: pd.Series, dropped: Callable[[np.ndarray], np.ndarray]) -> list[Any]:
    """A column's cells as Python values, turned a whole column at a time by numpy: missing cells, and
    the floats ``dropped`` marks, become None."""
    if column.dtype.kind == "f" and isinstance(column.dtype, np.dtype):
        values = column.to_numpy(dtype=np.float64)
        cells = values.astype(object)
        cells[dropped(values)] = None
        return cells.tolist()
    if _numpy_number(column):
        return column.to_numpy().tolist()
    cells = column.to_numpy(dtype=object, copy=True)  # never a view of the table (read-only under copy-on-write)
    cells[column.isna().to_numpy()] = None
    return cells.tolist()


def _numpy_number(column: pd.Series) -> bool:
    return column.dtype.kind in "fiub" and isinstance(column.dtype, np.dtype)


def neutralise(cell: Any) -> Any:
    if isinstance(cell, str) and cell.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def write_json(document: dict[str, Any], path: Path) -> None:
    """The review as indented JSON, encoded by msgspec where it is installed (100,000 nodes in a fraction of
    the time ``json`` takes); non-ASCII text is written as UTF-8 rather than escaped. NaN and infinities
    never reach it (``records`` and the analysis write None), so both encoders write the same values. A
    document msgspec refuses (a key json spells differently, such as None; a path that is not UTF-8,
    which json escapes) is written by ``json``."""
    try:
        text = None if msgspec is None else msgspec.json.format(msgspec.json.encode(document), indent=2).decode()
    except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
        text = None
    if text is None:
        write_json_atomic(path, document)
        return
    write_text_atomic(path, text + "\n", errors=UNDECODABLE_ESCAPED)


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of JSON's types (NaN, infinities and missing cells as None), built column by column."""
    rows: list[dict[str, Any]] = [{} for _ in range(len(table))]
    for name in table.columns:  # filled a column at a time: faster than a dict from each row's tuple
        for row, cell in zip(rows, _json_cells(table[name]), strict=True):
            row[name] = cell
    return rows


def _json_cells(column: pd.Series) -> list[Any]:
    """A column's cells as Python values of JSON's types: NaN, infinities and missing cells as None."""
    cells = _cells(column, lambda values: ~np.isfinite(values))
    if _numpy_number(column):
        return cells
    return [None if isinstance(v, float) and not math.isfinite(v) else v for v in cells]  # floats among objects
