"""Run pytest in a child process and watch over it: progress from its journal, and a watchdog.

The child's own alarms end a check that overruns in Python code. A check stuck in native code
never returns to the interpreter; the watchdog kills the whole child process group once a check
is ``grace_s`` past its timeout, so no run hangs forever. A stop (SIGINT, SIGTERM, SIGHUP, raised
here as ``Stopped``) is passed on as one SIGINT, which lets the child stop the running check and
finish its report, with a bounded wait: 60 s for Ctrl-C, 15 s for SIGTERM/SIGHUP (Kubernetes
sends SIGKILL 30 s after SIGTERM, and the report and sinks still need their turn). The stop
signals settle the moment the child has ended: a stop after that (or one that came after the child
ended by itself, before dhc saw it end) is noted as late and leaves the child's own report standing.

The child starts with SIGINT, SIGTERM and SIGHUP at their defaults whatever dhc inherited (a
script's ``dhc run &`` hands down SIGINT ignored), and on Linux it gets SIGTERM when dhc dies
(``PR_SET_PDEATHSIG``), so a pytest child never outlives the dhc that watches it.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhc.cli.progress import Progress
from dhc.model import CheckResult, PlannedCheck
from dhc.model.codec import ModelError
from dhc.report import JOURNAL_NAME, PLAN_NAME, read_plan
from dhc.report.folder import open_run_log

PR_SET_PDEATHSIG = 1  # linux/prctl.h
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_WHY = {"SIGINT": "Ctrl-C or kill -INT", "SIGTERM": "Kubernetes stops a pod this way",
        "SIGHUP": "the terminal or session went away"}


class Stopped(KeyboardInterrupt):
    """dhc was told to stop by ``signal_name``; raised by dhc run's signal handlers."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


def stop_reason(signal_name: str) -> str:
    return f"interrupted by {signal_name} ({_WHY.get(signal_name, 'a signal')}) before every check finished"


@dataclass
class ChildOutcome:
    returncode: int | None
    stopped: str | None  # why dhc ended the child early, None when it ended by itself


class JournalTail:
    """Reads the events appended to a journal since the last call (complete lines only)."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def new_events(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        events = []
        for line in complete.splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events


class Supervisor:
    def __init__(self, argv: list[str], cwd: Path, out: Path, log_path: Path, progress: Progress,
                 env: dict[str, str] | None, collect_timeout_s: float = 300.0, grace_s: float = 30.0,
                 interrupt_wait_s: float = 60.0, term_wait_s: float = 15.0, poll_s: float = 0.2,
                 stops: StopSignals | None = None):
        self.argv, self.cwd, self.out, self.log_path = argv, cwd, out, log_path
        self.progress, self.env, self.stops = progress, env, stops
        self.collect_timeout_s, self.grace_s = collect_timeout_s, grace_s
        self.interrupt_wait_s, self.term_wait_s, self.poll_s = interrupt_wait_s, term_wait_s, poll_s
        self.tail = JournalTail(out / JOURNAL_NAME)
        self.plan_seen = False
        self.killed_for: str | None = None  # why the watchdog killed the child
        self.running: dict[str, tuple[PlannedCheck, float]] = {}  # nodeid -> (the check that started, since)

    def run(self) -> ChildOutcome:
        started = time.monotonic()
        with open_run_log(self.log_path) as log:  # 0644 like every run file, whatever the umask
            child = subprocess.Popen(self.argv, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env, start_new_session=True,
                                     preexec_fn=child_start(os.getpid()))
        try:
            stopped = self._supervise(child, started)
        finally:
            self._settle()  # again, should a stop have cut the first settle short
        self._pump()  # a stop from here on is noted as late, never raised: the child has ended
        return ChildOutcome(child.returncode, stopped)

    def _supervise(self, child: subprocess.Popen[bytes], started: float) -> str | None:
        """Watch the child to its end; return why dhc ended it early, or None when it ended by itself.

        The stop signals are settled the moment the child has ended, before anything else runs: a
        stop that lands after that (or after the child ended but before dhc saw it) is noted as late.
        """
        try:
            stopped = self._watch(child, started)
            self._settle()
            return stopped
        except KeyboardInterrupt as exc:
            name = exc.signal_name if isinstance(exc, Stopped) else "SIGINT"
            if child.poll() is not None:  # it had ended (or the watchdog had killed it) before the stop
                self._settle(late=name)
                return self.killed_for  # None when it ended by itself: its own report stands
            self.progress.note(f"{name}: letting the running check stop and the report be written")
            self._interrupt(child, self.interrupt_wait_s if name == "SIGINT" else self.term_wait_s)
            self._settle()
            return stop_reason(name)

    def _watch(self, child: subprocess.Popen[bytes], started: float) -> str | None:
        while child.poll() is None:
            self._pump()
            stopped = self._overdue(started)
            if stopped:
                self.killed_for = stopped
                self._kill(child)
                return stopped
            try:
                child.wait(timeout=self.poll_s)  # returns the moment the child ends
            except subprocess.TimeoutExpired:
                pass
        return None

    def _settle(self, late: str | None = None) -> None:
        if self.stops is not None:
            self.stops.settle(late)

    def _pump(self) -> None:
        if not self.plan_seen and (self.out / PLAN_NAME).exists():  # written atomically: whole once there
            self.plan_seen = True
            self.progress.planned(read_plan(self.out))
        for event in self.tail.new_events():
            try:
                self._event(event)
            except (KeyError, TypeError, ModelError):
                continue  # not an event dhc wrote: nothing to show or to watch
        self.progress.tick()

    def _event(self, event: dict[str, Any]) -> None:
        if event.get("event") == "start":
            check = PlannedCheck.from_dict(event)  # a start event is the planned check, stamped
            self.running[check.nodeid] = (check, time.monotonic())
            self.progress.started(check)
        elif event.get("event") == "result":
            result = CheckResult.from_dict(event["result"])
            self.running.pop(result.nodeid or "", None)
            self.progress.finished(result)

    def _overdue(self, started: float) -> str | None:
        now = time.monotonic()
        if not self.plan_seen and now - started > self.collect_timeout_s:
            return f"collecting the checks took longer than {self.collect_timeout_s:g} s; dhc stopped the run"
        for check, since in self.running.values():
            if now - since > check.timeout_s + self.grace_s:
                return (f"{check.check} hung: still running {now - since:.0f} s after it started, past its "
                        f"{check.timeout_s:g} s timeout, and did not respond; dhc stopped the run")
        return None

    def _interrupt(self, child: subprocess.Popen[bytes], wait_s: float) -> None:
        _signal_group(child, signal.SIGINT)
        try:
            deadline = time.monotonic() + wait_s
            while child.poll() is None and time.monotonic() < deadline:
                self._pump()
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            pass  # a second stop signal: stop waiting
        if child.poll() is None:
            self._kill(child)

    def _kill(self, child: subprocess.Popen[bytes]) -> None:
        _signal_group(child, signal.SIGKILL)
        child.wait()


def _signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    if child.returncode is not None:
        return  # reaped: its process group id may already be someone else's
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def child_start(parent_pid: int) -> Callable[[], None]:
    """What the child runs between fork and exec: default stop signals, and death with its parent."""
    libc = _libc()  # loaded here, in the parent: nothing is loaded between fork and exec

    def start() -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # dhc died before the death signal was armed
            os._exit(128 + signal.SIGTERM)

    return start


def describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the pytest child was killed by {name}"
    return f"pytest ended (exit status {returncode})"


class StopSignals:
    """While a run is supervised, SIGINT, SIGTERM and SIGHUP raise ``Stopped``; afterwards they are noted.

    SIGINT is handled even when it was inherited ignored (a script's ``dhc run &``): an operator's
    explicit ``kill -INT`` must still stop the run. SIGHUP inherited ignored (``nohup``) stays ignored.
    Once the verdict stands (``settle``), a stop signal no longer cuts the report or a sink short.
    """

    def __init__(self) -> None:
        self.raising = True
        self.late: list[str] = []
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in STOP_SIGNALS:
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)

    def settle(self, late: str | None = None) -> None:
        """From now on a stop is noted, not raised; ``late`` is one that was raised but came too late.

        A stop whose handler lands while this runs is noted as late too, never raised to the caller.
        """
        while True:
            try:
                if late is not None:
                    self.late.append(late)
                    late = None
                self.raising = False
                return
            except Stopped as exc:
                late = exc.signal_name

    def _handle(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if self.raising:
            raise Stopped(name)
        self.late.append(name)
