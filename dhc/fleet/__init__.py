"""Fleet review: many node reports into counts, failures ranked, distributions and outliers.

pandas lives here and nowhere else. The page itself is rendered by ``dhc.report.fleet_html``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dhc.fleet import analysis
from dhc.fleet.load import Fleet, load, report_files

__all__ = ["Fleet", "load", "report_files", "review", "write_csv"]

FLEET_SCHEMA_VERSION = "1.0"


def review(paths: list[Path], k: float = 3.5) -> tuple[dict[str, Any], Any]:
    """The fleet document (JSON-able) and the node table (a DataFrame, for CSV)."""
    fleet = load(paths)
    suspects = analysis.outliers(fleet, k)
    table = analysis.node_table(fleet, suspects)
    document = {
        "schema_version": FLEET_SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reports": int(len(fleet.nodes)),
        "skipped": [{"file": f, "why": why} for f, why in fleet.skipped],
        "outlier_k": k,
        "counts": analysis.counts(fleet),
        "failed_checks": analysis.failed_checks(fleet),
        "distributions": analysis.distributions(fleet),
        "outliers": [_plain(row) for row in suspects.to_dict("records")],
        "nodes": [_plain(row) for row in table.to_dict("records")],
    }
    return document, table


def write_csv(table: Any, path: Path) -> None:
    table.to_csv(path, index=False)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars and NaN into JSON's types."""
    out = {}
    for key, value in row.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and value != value:  # NaN
            value = None
        out[key] = value
    return out
