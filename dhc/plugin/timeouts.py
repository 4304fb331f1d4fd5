"""Per-check timeouts inside pytest, and SIGTERM treated like Ctrl-C so a report is still written.

The alarm interrupts Python code and interruptible system calls. A check stuck inside native code
that never returns to the interpreter is caught one level up, by ``dhc run``'s watchdog.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from dhc.errors import CheckTimeout


@contextmanager
def alarm(seconds: float, message: str) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def fire(signum: int, frame: FrameType | None) -> None:
        raise CheckTimeout(message)

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def sigterm_as_interrupt() -> None:
    """Kubernetes stops a pod with SIGTERM: end the run as Ctrl-C would, with a report."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt("SIGTERM")
