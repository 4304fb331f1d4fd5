"""A run's folder: the files one run leaves there, starting a reused folder clean, and pytest's log.

One run, one folder. ``dhc run`` and ``pytest suites/`` (the plugin's controlling process) both call
``start_clean`` before anything is written, so a reused ``--out`` never mixes an earlier run's
journal, fault log lines or DCGM output with this run's. Only dhc's own files go; an operator's
other files in the folder are left alone. ``pytest.log`` is opened ``0644`` like every run file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from dhc.errors import ReportError
from dhc.report.files import FILE_MODE, JOURNAL_NAME, PLAN_NAME, REPORT_NAME

LOG_NAME = "dhc.log.jsonl"
IDENTITY_NAME = "identity.json"  # what dhc run wrote before run-config.json; still removed from a reused folder
CONFIG_NAME = "run-config.json"  # the run configuration dhc run hands its child (dhc.runconfig)
PYTEST_LOG_NAME = "pytest.log"
RUN_FILES = (REPORT_NAME, "report.html", JOURNAL_NAME, PLAN_NAME, LOG_NAME, CONFIG_NAME, IDENTITY_NAME, PYTEST_LOG_NAME,
             "dcgm-diag.txt", "nv-hostengine.log")  # what one run leaves in its folder


def start_clean(out: Path, flag: str) -> list[str]:
    """Remove an earlier run's files from ``out`` (and only those); return their names.

    ``flag`` names the option that chose the folder, for the error when a file cannot be removed.
    """
    earlier = [name for name in RUN_FILES if os.path.lexists(out / name)]
    for name in earlier:
        try:
            (out / name).unlink()
        except OSError as exc:
            raise ReportError(f"{flag} {out} holds an earlier run's {name}, which cannot be removed "
                              f"({exc.strerror or exc}): choose an empty folder") from None
    return earlier


def earlier_run_note(out: Path, earlier: list[str]) -> str:
    return f"{out} held an earlier run ({', '.join(earlier)}): removed them; one run, one folder"


def open_run_log(path: Path) -> BinaryIO:
    """``path`` opened for appending, ``0644`` whatever the umask (the child's stdout and stderr)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return os.fdopen(fd, "ab")
