"""Reports: the versioned JSON document, written atomically, its HTML page, and the run's journal."""

from pathlib import Path
from typing import Any

from dhc.model.report import Report
from dhc.report.document import (
    SCHEMA_PATH,
    SCHEMA_VERSION,
    complete_results,
    default_run_name,
    finish_report,
    journal_results,
    load_schema,
    read_plan,
    selected_checks,
    utc_now,
)
from dhc.report.files import (
    JOURNAL_NAME,
    PLAN_NAME,
    REPORT_NAME,
    Journal,
    ensure_writable_dir,
    read_json,
    write_json_atomic,
)
from dhc.report.fleetrow import write_row

__all__ = ["HTML_NAME", "save_report", "JOURNAL_NAME", "PLAN_NAME", "REPORT_NAME", "SCHEMA_PATH", "SCHEMA_VERSION", "Journal",
           "complete_results", "default_run_name", "ensure_writable_dir",
           "finish_report", "journal_results", "load_schema", "read_plan", "read_json", "selected_checks", "utc_now", "write_json_atomic"]


HTML_NAME = "report.html"


def save_report(out: Path, document: Report | dict[str, Any]) -> str | None:
    """report.json first (atomic), then report.html; a page that fails to render never costs the JSON.

    Returns why the page could not be written, or None.
    """
    write_json_atomic(out / REPORT_NAME, document.to_dict() if isinstance(document, Report) else document)
    write_row(out, document)  # the fleet review's compact row, stamped with the report just written
    from dhc.report.html import write_node  # jinja2 is needed only here

    try:
        write_node(document, out / HTML_NAME)
    except Exception as exc:  # the JSON is the record; the page is a view of it
        return f"report.html not written: {type(exc).__name__}: {exc}"
    return None
