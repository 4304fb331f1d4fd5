"""Read a file a user named (a report, a thresholds file, a tool's log): regular files only, size capped.

A FIFO, a socket or a device named ``report.json`` would block a plain ``read()`` forever (or read
without end from ``/dev/zero``); a 10 GB file would exhaust memory. ``read_regular`` looks before it
opens (``stat``), opens without blocking, checks again on the open descriptor (the name may have been
swapped in between), and reads at most ``max_bytes``. Every refusal is a ``FileRefused`` naming the
file and what it is instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dhc.errors import DhcError

MAX_REPORT_BYTES = 64 << 20  # a report of 8 GPUs is some 100 KiB; this leaves room for any real one
MAX_LOG_BYTES = 256 << 20  # an nccl-tests log


class FileRefused(DhcError):
    """A file that is missing, unreadable, not a regular file, or larger than allowed."""

    def __init__(self, path: Path | str, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{path}: {problem}")


def read_regular(path: Path | str, max_bytes: int) -> bytes:
    """The bytes of ``path`` when it is a regular file (symlinks to one are fine) of at most ``max_bytes``."""
    path = Path(path)
    try:
        _require_regular(path, os.stat(path).st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileRefused(path, "cannot read: file not found") from None
    except OSError as exc:
        raise FileRefused(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        _require_regular(path, os.fstat(fd).st_mode)
        data = _read_at_most(fd, max_bytes + 1)
    except OSError as exc:
        raise FileRefused(path, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise FileRefused(path, f"larger than {max_bytes} bytes; at most {max_bytes} allowed")
    return data


def read_text(path: Path | str, max_bytes: int, errors: str = "strict") -> str:
    """``read_regular`` decoded as UTF-8; undecodable bytes are a ``FileRefused`` unless ``errors`` says else."""
    data = read_regular(path, max_bytes)
    try:
        return data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise FileRefused(path, f"not UTF-8 text (byte {exc.start})") from None


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _require_regular(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "something other than a file")
    raise FileRefused(path, f"is {kind}, not a regular file; refused")
