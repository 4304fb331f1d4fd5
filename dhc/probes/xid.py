"""NVIDIA XID errors: what each one asks of an operator, where to find them, and a live watcher.

XIDs come from two places: the kernel log (``NVRM: Xid (PCI:0000:53:00): 79, ...``, since boot,
when the log is readable) and NVML critical-XID events while the checks run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dhc.model import Action
from dhc.probes.background import NvmlWatch
from dhc.probes.nvml import Nvml

# XID -> (action, meaning), after NVIDIA's XID catalogue and common cloud operator practice.
# XIDs caused by applications (13, 31, 43, 45) ask nothing of the node.
XID_ACTIONS: dict[int, tuple[Action, str]] = {
    13: (Action.NONE, "graphics engine exception (usually the application)"),
    31: (Action.NONE, "GPU memory page fault (usually the application)"),
    43: (Action.NONE, "GPU stopped processing (usually the application)"),
    45: (Action.NONE, "preemptive cleanup after an earlier error"),
    48: (Action.REBOOT, "double-bit ECC error"),
    61: (Action.REBOOT, "internal micro-controller breakpoint"),
    62: (Action.REBOOT, "internal micro-controller halt"),
    63: (Action.REBOOT, "ECC page retirement or row remapping recorded"),
    64: (Action.REPLACE, "ECC page retirement or row remapping failed"),
    69: (Action.REBOOT, "graphics engine class error"),
    74: (Action.REBOOT, "NVLink error"),
    79: (Action.REPLACE, "GPU has fallen off the bus"),
    92: (Action.NONE, "high single-bit ECC error rate"),
    94: (Action.REBOOT, "contained ECC error"),
    95: (Action.REBOOT, "uncontained ECC error"),
    119: (Action.REBOOT, "GSP RPC timeout"),
    120: (Action.REBOOT, "GSP error"),
    140: (Action.REBOOT, "unrecovered ECC error"),
}

_KERNEL_XID = re.compile(r"NVRM: Xid \(PCI:(?P<pci>[0-9a-fA-F:.]+)\): (?P<xid>\d+),\s*(?P<text>.*)")


@dataclass(frozen=True)
class XidEvent:
    xid: int
    pci_bus_id: str | None  # as the kernel writes it, e.g. "0000:53:00"
    gpu_index: int | None
    text: str
    source: str  # "kernel log" | "NVML event"

    @property
    def action(self) -> Action:
        return XID_ACTIONS.get(self.xid, (Action.NONE, ""))[0]

    @property
    def meaning(self) -> str:
        return XID_ACTIONS.get(self.xid, (Action.NONE, "not in dhc's XID table"))[1]


def parse_kernel_log(text: str) -> list[XidEvent]:
    events = []
    for line in text.splitlines():
        match = _KERNEL_XID.search(line)
        if match:
            events.append(XidEvent(int(match["xid"]), match["pci"], None, match["text"].strip(), "kernel log"))
    return events


def same_pci_device(kernel_id: str | None, nvml_id: str | None) -> bool:
    """Kernel ``0000:53:00`` names the same GPU as NVML ``00000000:53:00.0``."""
    try:
        return bool(kernel_id and nvml_id) and _pci_key(kernel_id) == _pci_key(nvml_id)
    except ValueError:
        return False


def _pci_key(text: str) -> tuple[int, int, int]:
    parts = text.lower().split(".")[0].split(":")
    domain, bus, device = (["0", *parts] if len(parts) == 2 else parts)[-3:]
    return int(domain, 16), int(bus, 16), int(device, 16)


def read_kernel_log(path: Path = Path("/dev/kmsg")) -> str | None:
    """The kernel ring buffer since boot, or None when this process may not read it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    chunks = []
    try:
        while True:
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == 32:  # EPIPE: the ring buffer moved on under us; keep reading
                    continue
                break
            if not record:
                break
            chunks.append(record.decode(errors="replace"))
    finally:
        os.close(fd)
    return "".join(chunks)


class XidWatcher(NvmlWatch):
    """Collects NVML critical-XID events on the given GPUs while the ``with`` block runs."""

    name = "XID event watch"

    def __init__(self, indices: list[int], nvml: Callable[[], Nvml] = Nvml, wait_ms: int = 200):
        super().__init__(indices, nvml)
        self.wait_ms = wait_ms
        self.events: list[XidEvent] = []

    def watch(self, nvml: Nvml) -> None:
        sets = nvml.xid_event_sets(self.indices)
        per_set = max(1, self.wait_ms // max(1, len(sets)))
        while not self.stopping.is_set():
            for index, events in sets.items():
                xid = nvml.wait_xid(events, per_set)
                if xid is not None:
                    self.events.append(XidEvent(xid, None, index, "", "NVML event"))
