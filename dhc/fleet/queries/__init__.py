"""The fleet review as queries for engines that reach past one machine, shipped as text files.

``fleet.duckdb.sql``: DuckDB over the report.json files (a folder or an S3 bucket): a setup part
(where the reports are, a view of the fields read) and named queries. ``fleet.insights``:
CloudWatch Logs Insights over the JSON log lines dhc sends to CloudWatch Logs, one named query
per block. A block starts with ``-- name: X`` (SQL) or ``# name: X`` (Insights).
"""

from __future__ import annotations

import re
from pathlib import Path

FOLDER = Path(__file__).resolve().parent
DUCKDB = FOLDER / "fleet.duckdb.sql"
INSIGHTS = FOLDER / "fleet.insights"
REPORTS_PLACEHOLDER = "s3://my-bucket/reports/*/report.json"


def duckdb_queries(reports: str | None = None) -> tuple[str, dict[str, str]]:
    """The setup statements (with ``reports``, a glob or s3:// URL, in place of the example) and each query."""
    setup, named = _blocks(DUCKDB.read_text(encoding="utf-8"), "--")
    if reports is not None:
        setup = setup.replace(f"'{REPORTS_PLACEHOLDER}'", "'" + reports.replace("'", "''") + "'")
    return setup, named


def insights_queries() -> dict[str, str]:
    """Each Logs Insights query by name, its comment lines kept (Insights ignores ``#`` lines)."""
    return _blocks(INSIGHTS.read_text(encoding="utf-8"), "#")[1]


def _blocks(text: str, comment: str) -> tuple[str, dict[str, str]]:
    head, *rest = re.split(rf"^{re.escape(comment)} name: ", text, flags=re.M)
    named = {}
    for block in rest:
        name, body = block.split("\n", 1)
        named[name.strip()] = body.strip() + "\n"
    return head, named
