"""Run an external tool (dcgmi, fi_info, all_reduce_perf, nv-hostengine) with a hard deadline.

Each tool runs in its own process group, so a timeout or an interrupt of dhc kills the tool *and*
whatever it started (dcgmi's nvvs, an MPI launcher's ranks); ``subprocess.run(timeout=)`` kills
only the direct child and leaves grandchildren running. Output is captured as text (undecodable
bytes replaced), stdin is closed so no tool can wait on a terminal.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class ToolMissing(FileNotFoundError):
    """The tool is not on PATH (or the named path is not an executable)."""


class ToolTimeout(Exception):
    """The tool ran past its deadline; it and its process group were killed."""

    def __init__(self, argv: Sequence[str], timeout_s: float, partial: str):
        self.argv, self.timeout_s, self.partial = list(argv), timeout_s, partial
        super().__init__(f"{os.path.basename(argv[0])} ran past {timeout_s:g} s and was stopped "
                         f"(with everything it started)")


@dataclass(frozen=True)
class ToolResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str  # empty when stderr was merged into stdout

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def tail(self, chars: int = 300) -> str:
        """The end of what the tool printed, for an error message (stderr first: that is where errors go)."""
        text = (self.stderr.strip() or self.stdout.strip()) or "(no output)"
        return text[-chars:]


def locate(binary: str, hint: str = "") -> str:
    """The tool's path, or ``ToolMissing`` naming it (and ``hint``: how to install or point at it)."""
    path = shutil.which(binary)
    if path is None:
        raise ToolMissing(f"{binary} is not on PATH" + (f" ({hint})" if hint else ""))
    return path


def run_tool(argv: Sequence[str], timeout_s: float, env: Mapping[str, str] | None = None,
             merge_stderr: bool = False) -> ToolResult:
    """Run ``argv`` to its end or its deadline; on timeout or interrupt the whole process group dies."""
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=None if env is None else dict(env),
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        out, err = kill_group(proc)
        raise ToolTimeout(argv, timeout_s, _text(out) + _text(err)) from None
    except BaseException:  # the check's own timeout or Ctrl-C: leave nothing running
        kill_group(proc)
        raise
    return ToolResult(tuple(argv), proc.returncode, _text(out), _text(err))


def kill_group(proc: subprocess.Popen[bytes]) -> tuple[bytes | None, bytes | None]:
    """SIGKILL the tool's process group and collect what it had printed."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:  # a grandchild kept the pipe open outside the group
        return None, None


def _text(data: bytes | None) -> str:
    return "" if data is None else data.decode(errors="replace")
