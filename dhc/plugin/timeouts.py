"""Per-check timeouts inside pytest, and SIGTERM and SIGHUP treated like Ctrl-C so a report is still written.

The alarm interrupts Python code and interruptible system calls. A check stuck inside native code
that never returns to the interpreter is caught one level up, by ``dhc run``'s watchdog; before
that, faulthandler writes every thread's stack to ``pytest.log``, so the hang leaves its place.

Which signal stopped the run is remembered for the report's ``ended_by``, and so is whether the
process that started pytest has died (``dhc run`` arms SIGTERM as its child's parent-death signal):
then the report says so, since nothing above it will write one.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import BinaryIO

from dhc.errors import CheckTimeout

STACK_DUMP_AFTER_S = 0.5  # past the timeout: the alarm had its chance; dhc run's watchdog waits longer (30 s)


@contextmanager
def alarm(seconds: float, message: str, stacks: BinaryIO | None = None) -> Iterator[None]:
    """Raise ``CheckTimeout(message)`` after ``seconds``; and if the check is still there a moment later
    (stuck in native code, where the alarm cannot reach it), dump every thread's stack into ``stacks``
    from faulthandler's own C thread, before ``dhc run``'s watchdog kills the process."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def fire(signum: int, frame: FrameType | None) -> None:
        raise CheckTimeout(message)

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    if stacks is not None:  # writes nothing unless it fires: "Timeout (0:00:02.500000)!" and the stacks
        faulthandler.dump_traceback_later(seconds + STACK_DUMP_AFTER_S, file=stacks)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if stacks is not None:
            faulthandler.cancel_dump_traceback_later()


_STOP: dict[str, object] = {"signal": None, "parent": None}


def sigterm_as_interrupt() -> dict[int, object]:
    """Kubernetes stops a pod with SIGTERM, a closed terminal sends SIGHUP: end the run as Ctrl-C would.

    A signal someone deliberately set (ignored, or handled) is left alone. Returns the handlers it
    replaced, to hand to ``restore_sigterm``.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    _STOP.update(signal=None, parent=os.getppid())
    replaced = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            replaced[sig] = signal.signal(sig, _raise_interrupt)
    return replaced


def restore_sigterm(previous: dict[int, object] | None) -> None:
    if previous and threading.current_thread() is threading.main_thread():
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def stop_reason() -> str:
    """Why an interrupted run stopped, for the report's ``ended_by``."""
    name = _STOP["signal"] or "SIGINT"
    if _STOP["parent"] is not None and os.getppid() != _STOP["parent"]:
        return (f"the process that started pytest (pid {_STOP['parent']}, dhc run) died, and {name} stopped the "
                f"checks before every one finished")
    why = "Ctrl-C or kill -INT" if name == "SIGINT" else "Kubernetes stops a pod this way" \
        if name == "SIGTERM" else "the terminal or session went away"
    return f"interrupted by {name} ({why}) before every check finished"


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    _STOP["signal"] = signal.Signals(signum).name
    raise KeyboardInterrupt(_STOP["signal"])
