"""Files a run leaves behind: the atomic report and the append-only journal of check events.

The journal is written as checks start and finish, so a run that dies still leaves every
finished result on disk; the report is replaced in one rename, so it is never half written.

Permissions are deliberate, whatever the umask: every file of a run is 0644 and a run folder dhc
creates is 0755. A report holds no secret (instance IDs, measurements, versions), and the person
or fleet review that reads it is often not the root that wrote it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from dhc.errors import ReportError
from dhc.textfile import MAX_REPORT_BYTES, FileRefused, read_text

REPORT_NAME = "report.json"
JOURNAL_NAME = "journal.jsonl"
PLAN_NAME = "plan.json"
FILE_MODE = 0o644
DIR_MODE = 0o755


def write_json_atomic(path: Path, document: Any) -> None:
    text = json.dumps(document, indent=2, sort_keys=False, allow_nan=False) + "\n"
    write_text_atomic(path, text)


UNDECODABLE_ESCAPED = "backslashreplace"  # errors= for text holding paths: one that is not UTF-8 shows as \udcff


def write_text_atomic(path: Path, text: str, errors: str = "strict") -> None:
    """``text`` to ``path`` atomically (a temporary file, fsync, rename), UTF-8; ``errors`` as ``str.encode``'s
    (``UNDECODABLE_ESCAPED`` where the text holds paths: the fleet review's files)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600
        with os.fdopen(fd, "w", encoding="utf-8", errors=errors) as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


def read_json(path: Path) -> Any:
    """A JSON document from a regular file of at most 64 MiB (a FIFO or device is refused, never waited on)."""
    try:
        return json.loads(read_text(path, MAX_REPORT_BYTES))
    except FileRefused as exc:
        raise ReportError(str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"{path}: not a readable JSON document ({exc})") from None


def ensure_writable_dir(path: Path) -> None:
    """Fail before any check runs if the output folder cannot take files."""
    try:
        if not path.is_dir():
            path.mkdir(parents=True)
            path.chmod(DIR_MODE)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".dhc-write-test.", delete=True)
        probe.close()
    except OSError as exc:
        raise ReportError(f"output folder {path} is not writable: {exc.strerror or exc}") from None


class Journal:
    def __init__(self, path: Path):
        self.path = path

    def append(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, allow_nan=False, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            os.fchmod(fd, FILE_MODE)
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def events(self) -> list[dict[str, Any]]:
        """Every complete event; a torn last line (the writer died mid-write) is dropped."""
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out
