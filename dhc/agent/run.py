"""The agent's loop: one thread follows the kernel log line by line, the caller's thread polls NVML,
sysfs and the disk every ``poll_s``; every detection passes the state (dedupe, escalation) and is
published. A detection stays pending in the state until it is on the node; pending ones (from before
a restart too) are delivered again at every tick. Stops when ``stop`` is set (SIGTERM, SIGINT).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from dhc.agent.detection import Detection
from dhc.agent.kernel import KernelDetectors, KernelLogUnavailable, follow, record
from dhc.agent.poll import Poller
from dhc.agent.publish import Publisher
from dhc.agent.state import State
from dhc.agent.tally import Tally


@dataclass
class Agent:
    state: State
    kernel: KernelDetectors
    poller: Poller
    publisher: Publisher
    tally: Tally
    kernel_log: Path
    poll_s: float
    stop: threading.Event

    def __post_init__(self) -> None:
        self.lock = threading.Lock()  # the state and the publisher are shared by both threads

    def run(self) -> None:
        if self.state.problem:
            self.publisher.note(self.state.problem)
        if self.poller.nvml_problem:  # blind to the GPUs: an error, never the silence of a healthy node
            self.publisher.note(self.poller.nvml_problem, level="error")
        follower = threading.Thread(target=self._follow, name="kernel-log", daemon=True)
        follower.start()
        try:
            while not self.stop.is_set():
                self.tick()
                self.stop.wait(self.poll_s)
        finally:
            self.stop.set()
            follower.join(timeout=5)
            self.poller.close()

    def tick(self) -> None:
        try:
            found = self.poller.poll()
        except Exception as exc:  # a poll that breaks is named, and the next one tries again
            found = []
            with self.lock:
                self.publisher.note(f"a poll of NVML, sysfs and the disk failed ({type(exc).__name__}: {exc}); "
                                    "tried again at the next tick", level="error")
        self.tally.watching["nvml"] = int(self.poller.nvml is not None)
        self.handle(found)
        with self.lock:
            for note in self.poller.notes:
                self.publisher.note(note)
            self.redeliver()
        self.tally.add("polls")

    def handle(self, found: list[Detection]) -> None:
        with self.lock:
            for detection in found:
                admitted = self.state.admit(detection)
                if admitted is None:
                    self.tally.add("duplicates")
                    continue
                self.tally.detected(admitted.detector, admitted.action.value)
                if self.publisher.publish(admitted):
                    self.state.delivered(admitted.key)

    def redeliver(self) -> None:
        """Deliver what is pending (the caller holds the lock): refused writes, and those of before a restart."""
        for found in self.state.undelivered():
            if self.publisher.deliver(found):
                self.state.delivered(found.key)

    def line(self, text: str) -> None:
        """Judge one kernel-log line; counted once it has been judged and published."""
        try:
            seq, _ = record(text)
            if not self.state.seen(seq):
                self.handle(self.kernel.feed(text))
        except Exception as exc:  # one line that breaks a detector is named; the watch goes on
            with self.lock:
                self.publisher.note(f"could not judge the kernel-log line starting {text[:120]!r} "
                                    f"({type(exc).__name__}: {exc})", level="error")
        self.tally.add("kernel_lines")

    def _follow(self) -> None:
        try:
            lines = follow(self.kernel_log, self.stop)
            self.tally.watching["kernel"] = 1
            for text in lines:
                self.line(text)
        except KernelLogUnavailable as exc:
            with self.lock:
                self.publisher.note(f"{exc}; the kernel-log detectors (agent.xid, agent.sxid, agent.kernel-deadlock, "
                                    "agent.oom) are not watching", level="error")
        finally:
            self.tally.watching["kernel"] = 0
