"""Waiting for a positive signal in tests: poll a condition until it holds, or fail naming what never came."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """The condition's first truthy value, polled every 50 ms; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ended(pid: int) -> bool:
    """Whether process ``pid`` has ended: gone, or a zombie its parent has not reaped (a SIGKILLed
    orphan stays one until init reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_ended(*pids: int, timeout: float = 10.0, what: str = "the processes") -> None:
    """Wait until every one of ``pids`` has ended; a kill is delivered asynchronously, so a process may
    have closed its pipes and still be running a moment later."""
    wait_for(lambda: all(ended(pid) for pid in pids), timeout, f"{what} ({', '.join(map(str, pids))}) to end")
