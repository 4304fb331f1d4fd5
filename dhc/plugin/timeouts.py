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


def sigterm_as_interrupt() -> object | None:
    """Kubernetes stops a pod with SIGTERM: end the run as Ctrl-C would, with a report.

    Returns the handler it replaced (to hand to ``restore_sigterm``), or None if it left it alone.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return None
    return signal.signal(signal.SIGTERM, _raise_interrupt)


def restore_sigterm(previous: object | None) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt("SIGTERM")
