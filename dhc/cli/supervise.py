"""Run pytest in a child process and watch over it: progress from its journal, and a watchdog.

The child's own alarms end a check that overruns in Python code. A check stuck in native code
never returns to the interpreter; the watchdog kills the whole child process group once a check
is ``grace_s`` past its timeout, so no run hangs forever. Ctrl-C and SIGTERM are passed on as one
SIGINT, which lets the child finish its report, with a bounded wait.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dhc.cli.progress import Progress


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
                 interrupt_wait_s: float = 60.0, poll_s: float = 0.2):
        self.argv, self.cwd, self.out, self.log_path = argv, cwd, out, log_path
        self.progress, self.env = progress, env
        self.collect_timeout_s, self.grace_s = collect_timeout_s, grace_s
        self.interrupt_wait_s, self.poll_s = interrupt_wait_s, poll_s
        self.tail = JournalTail(out / "journal.jsonl")
        self.plan_seen = False
        self.running: dict[str, tuple[dict[str, Any], float]] = {}  # nodeid -> (start event, since)

    def run(self) -> ChildOutcome:
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            child = subprocess.Popen(self.argv, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
        stopped = None
        try:
            while child.poll() is None:
                self._pump()
                stopped = self._overdue(started)
                if stopped:
                    self._kill(child)
                    break
                try:
                    child.wait(timeout=self.poll_s)  # returns the moment the child ends
                except subprocess.TimeoutExpired:
                    pass
        except KeyboardInterrupt:
            stopped = "interrupted (Ctrl-C or SIGTERM)"
            self.progress.note("interrupted: letting the running check stop and the report be written")
            self._interrupt(child)
        self._pump()
        return ChildOutcome(child.returncode, stopped)

    def _pump(self) -> None:
        if not self.plan_seen and (self.out / "plan.json").exists():
            try:
                plan = json.loads((self.out / "plan.json").read_text())
            except (OSError, json.JSONDecodeError):
                plan = None  # being replaced right now; read it on the next poll
            if plan is not None:
                self.plan_seen = True
                self.progress.planned(plan)
        for event in self.tail.new_events():
            if event.get("event") == "start":
                self.running[event["nodeid"]] = (event, time.monotonic())
                self.progress.started(event)
            elif event.get("event") == "result":
                self.running.pop(event["result"].get("nodeid"), None)
                self.progress.finished(event["result"])
        self.progress.tick()

    def _overdue(self, started: float) -> str | None:
        now = time.monotonic()
        if not self.plan_seen and now - started > self.collect_timeout_s:
            return f"collecting the checks took longer than {self.collect_timeout_s:g} s; dhc stopped the run"
        for event, since in self.running.values():
            if now - since > event["timeout_s"] + self.grace_s:
                return (f"{event['check']} hung: still running {now - since:.0f} s after it started, past its "
                        f"{event['timeout_s']:g} s timeout, and did not respond; dhc stopped the run")
        return None

    def _interrupt(self, child: subprocess.Popen[bytes]) -> None:
        _signal_group(child, signal.SIGINT)
        try:
            deadline = time.monotonic() + self.interrupt_wait_s
            while child.poll() is None and time.monotonic() < deadline:
                self._pump()
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: stop waiting
        if child.poll() is None:
            self._kill(child)

    def _kill(self, child: subprocess.Popen[bytes]) -> None:
        _signal_group(child, signal.SIGKILL)
        child.wait()


def _signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass
