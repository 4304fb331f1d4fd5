"""The kernel log, followed live, and what the agent's kernel-log detectors make of each line.

What the real source does: ``/dev/kmsg`` is a character device; each ``read`` returns one record
``PRI,SEQ,USEC,FLAGS;MESSAGE\\n`` (continuation lines `` KEY=VALUE`` follow some records), starting
from the oldest record still in the ring buffer; ``read`` fails with EPIPE when the buffer overran
the reader (the next read goes on), and a reader without CAP_SYSLOG (or with dmesg_restrict) gets
EPERM at ``open``. SEQ rises by one per record for the whole boot, so (boot id, SEQ) names a record
across agent restarts. A plain file or a FIFO (tests, a journald export) is followed the same way,
line by line, in any of the five dresses ``dhc.probes.xid`` reads; such lines carry no SEQ.

Detectors: ``agent.xid`` (XIDs with the catalogue's action; "has fallen off the bus" without a
number counts as XID 79; an application-class XID is nothing until it repeats), ``agent.sxid``
(NVSwitch SXids, never counted as XIDs), ``agent.kernel-deadlock`` (hung tasks) and ``agent.oom``.
"""

from __future__ import annotations

import errno
import os
import re
import select
import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from dhc.agent.detection import Detection, detection, pci_key, where
from dhc.model import Action, Device
from dhc.probes import xid
from dhc.thresholds.agent import AgentLimits

_KMSG = re.compile(r"^(?P<pri>\d{1,10}),(?P<seq>\d{1,20}),(?P<usec>\d{1,20}),[^;]*;(?P<msg>.*)$")
_HUNG = re.compile(r"task (?P<task>\S+?):(?P<pid>\d+) blocked for more than (?P<s>\d+) seconds")
_OOM = re.compile(r"(?P<scope>Memory cgroup out of memory|Out of memory)[^:]*: Killed process (?P<pid>\d+) "
                  r"\((?P<name>[^)]*)\)")
_WORDS = ("NVRM:", "SXid", "blocked for more than", "Killed process")  # every detector's line has one
NO_NUMBER = "printed no XID"  # dhc.probes.xid's words for a fallen-off-the-bus message without a number


BATCH_S = 0.1  # at most this much added to the detection latency (aim: under 5 s from line to label)


class KernelLogUnavailable(Exception):
    """The kernel log cannot be opened; the message names the path and the OS error."""


def record(line: str) -> tuple[int | None, str]:
    """(SEQ, message) of a /dev/kmsg record; (None, line) for any other dress."""
    match = _KMSG.match(line)
    return (int(match["seq"]), match["msg"]) if match else (None, line)


def follow(path: Path, stop: threading.Event, idle_s: float = 0.2) -> Iterator[str]:
    """Lines of ``path`` as they arrive, until ``stop`` is set: /dev/kmsg, a file (tail -f) or a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise KernelLogUnavailable(f"cannot open the kernel log {path}: {exc.strerror} (errno {exc.errno})") from None
    return _lines(fd, path, stop, idle_s)  # opened now: a log that cannot be opened is known at once


def _lines(fd: int, path: Path, stop: threading.Event, idle_s: float) -> Iterator[str]:
    pending = b""
    try:
        while not stop.is_set():
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                if select.select([fd], [], [], idle_s)[0]:
                    stop.wait(BATCH_S)  # let a burst gather: one wake-up reads many records, not one each
                continue
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # the ring buffer overran us: the next read goes on
                    continue
                raise KernelLogUnavailable(f"reading the kernel log {path}: {exc.strerror}") from None
            if not chunk:  # end of a file, or a FIFO without a writer: wait for more
                stop.wait(idle_s)
                continue
            *lines, pending = (pending + chunk).split(b"\n")
            yield from (line.decode(errors="replace") for line in lines)
    finally:
        os.close(fd)


class KernelDetectors:
    """Turns kernel-log lines into detections. ``gpus`` maps a PCI key to the GPU NVML knows there."""

    def __init__(self, limits: AgentLimits, gpus: Callable[[], dict[str, Device]] = dict,
                 clock: Callable[[], float] | None = None):
        import time

        self.limits, self.gpus, self.clock = limits, gpus, clock or time.monotonic
        self.recent: deque[str] = deque(maxlen=4)  # the last NVRM lines: a lost GPU's message spans three
        self.app_xids: dict[tuple[str, int], deque[float]] = {}

    def feed(self, line: str) -> list[Detection]:
        seq, message = record(line)
        if not any(word in message for word in _WORDS):  # most of a busy log: nothing to judge
            return []
        found = [*self._xids(message, seq), *self._sxids(message, seq)]
        if hung := _HUNG.search(message):
            found += self._hung(hung, seq)
        if oom := _OOM.search(message):
            found.append(detection("agent.oom", f"pid{oom['pid']}", f"the kernel's OOM killer killed process "
                                   f"{oom['pid']} ({oom['name']}): {oom['scope'].lower()}",
                                   self.limits["agent.oom"].action, reason="OOMKilling", seq=seq))
        return found

    def _xids(self, message: str, seq: int | None) -> list[Detection]:
        if "NVRM:" not in message:
            return []
        self.recent.append(message)
        events = [e for e in xid.parse_kernel_log(message) if NO_NUMBER not in e.text]
        if xid.FALLEN_OFF in message and not events:
            events = [e for e in xid.parse_kernel_log("\n".join(self.recent)) if NO_NUMBER in e.text][-1:]
        return [d for e in events if (d := self._xid(e, seq)) is not None]

    def _xid(self, event: xid.XidEvent, seq: int | None) -> Detection | None:
        device = self._device(event.pci_bus_id)
        if event.action is not Action.NONE:
            return detection("agent.xid", str(event.xid), f"{event.describe()} on {where(device)}: {event.text}",
                             event.action, device, reason=f"XID{event.xid}", seq=seq)
        return self._app_xid(event, device, seq)

    def _app_xid(self, event: xid.XidEvent, device: Device, seq: int | None) -> Detection | None:
        """An application-class XID is the application's business until it repeats on one GPU."""
        limits = self.limits["agent.xid"]
        now, window = self.clock(), limits.value("app_window_s")
        seen = self.app_xids.setdefault((pci_key(event.pci_bus_id or "?"), event.xid), deque())
        seen.append(now)
        while seen and seen[0] < now - window:
            seen.popleft()
        if len(seen) < limits.value("app_repeat"):
            return None
        seen.clear()
        return detection("agent.xid", f"{event.xid}-repeated", f"{event.describe()} on {where(device)} "
                         f"{limits.value('app_repeat'):g} times within {window:g} s: {event.text}", limits.action,
                         device, reason=f"XID{event.xid}Repeated", seq=seq)

    def _sxids(self, message: str, seq: int | None) -> list[Detection]:
        return [detection("agent.sxid", f"{pci_key(s.pci_bus_id)}|{s.sxid}", f"NVSwitch SXid {s.sxid} at PCI "
                          f"{s.pci_bus_id} (an NVSwitch error, not a GPU XID): {s.text}",
                          self.limits["agent.sxid"].action, Device("nvswitch", pci_bus_id=s.pci_bus_id),
                          reason=f"SXid{s.sxid}", seq=seq) for s in xid.parse_sxids(message)]

    def _hung(self, hung: re.Match[str], seq: int | None) -> list[Detection]:
        limits = self.limits["agent.kernel-deadlock"]
        if int(hung["s"]) < limits.value("blocked_s"):
            return []
        return [detection("agent.kernel-deadlock", "hung", f"task {hung['task']}:{hung['pid']} blocked for more "
                          f"than {hung['s']} seconds (limit {limits.value('blocked_s'):g} s)", limits.action,
                          reason="TaskHung", seq=seq, metric="blocked_s", value=float(hung["s"]),
                          limit=limits.value("blocked_s"), unit="s")]

    def _device(self, pci: str | None) -> Device:
        if pci is None:
            return Device("gpu", -1)
        return self.gpus().get(pci_key(pci)) or Device("gpu", -1, pci_bus_id=pci)

