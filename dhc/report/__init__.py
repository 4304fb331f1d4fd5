"""Reports: the versioned JSON document, written atomically, and the journal a run streams."""

from dhc.report.document import (
                                 SCHEMA_PATH,
                                 SCHEMA_VERSION,
                                 RunInfo,
                                 build_document,
                                 build_report,
                                 complete_results,
                                 default_run_name,
                                 load_schema,
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

__all__ = ["JOURNAL_NAME", "PLAN_NAME", "REPORT_NAME", "SCHEMA_PATH", "SCHEMA_VERSION", "Journal", "RunInfo",
           "build_document", "build_report", "complete_results", "default_run_name", "ensure_writable_dir",
           "load_schema", "read_json", "utc_now", "write_json_atomic"]
