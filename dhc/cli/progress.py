"""Live progress of a run: a redrawn status line on a terminal, plain lines anywhere else.

Progress is a courtesy: a stream that stops taking it (a closed pipe, a full disk) silences it
and never stops the run. Every line goes through ``one_line``: a check's reason comes from data
(a tool's output, a file), and a line break or control character in it must not forge a line.
"""

from __future__ import annotations

import time
from typing import TextIO

from dhc.model import CheckResult, PlannedCheck, Status
from dhc.sinks.logline import one_line


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, stream: TextIO, devices: str, live: bool | None = None):
        self.stream, self.devices = stream, devices
        self.live = (stream is not None and stream.isatty()) if live is None else live
        self.total = 0
        self.done = 0
        self.begun = 0  # checks started so far; with xdist several run at once
        self.current: PlannedCheck | None = None
        self.current_since = 0.0
        self._drawn = ""  # the live line now on screen, "" when none

    def planned(self, plan: list[PlannedCheck]) -> None:
        self.total = len(plan)
        expected = sum(p.expected_s for p in plan)
        self._line(f"dhc: {self.total} check(s) planned on {self.devices}, expected ~{_clock(expected)}")

    def started(self, check: PlannedCheck) -> None:
        self.current, self.current_since = check, time.monotonic()
        self.begun += 1
        if not self.live:
            self._line(f"dhc: [{self.begun}/{self.total}] {check.check} started on {self.devices} "
                       f"(expected ~{_clock(check.expected_s)}, timeout {_clock(check.timeout_s)})")
        self.tick()

    def finished(self, result: CheckResult) -> None:
        self.done += 1
        self.current = None
        detail = f": {result.reason}" if result.reason and result.status is not Status.PASSED else ""
        self._line(f"dhc: [{self.done}/{self.total}] {result.status:<10} {result.check} "
                   f"in {result.duration_s:.1f} s{detail}")

    def tick(self) -> None:
        """Redraw the live line: which check, on what, elapsed against expected."""
        if not self.live or self.current is None:
            return
        elapsed = time.monotonic() - self.current_since
        check = self.current
        late = "  (over expected)" if elapsed > check.expected_s else ""
        text = (f"[{self.begun}/{self.total}] {check.check} on {self.devices}  "
                f"{_clock(elapsed)} / ~{_clock(check.expected_s)}{late}")
        if self._drawn == text:
            return  # redraw only when what it says changes
        self._write(f"\r\x1b[K{one_line(text)}")
        self._drawn = text

    def note(self, text: str) -> None:
        self._line(f"dhc: {text}")

    def _line(self, text: str) -> None:
        if self._drawn:
            self._write("\r\x1b[K")
            self._drawn = ""
        self._write(one_line(text) + "\n")

    def _write(self, text: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.stream = None  # type: ignore[assignment]
