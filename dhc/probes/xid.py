"""NVIDIA XIDs (and NVSwitch SXids) from the kernel log, and a live watcher for NVML XID events.

What the real driver does: NVRM writes one kernel message per line, e.g.
``NVRM: Xid (PCI:0000:53:00): 79, pid=0, name=python, GPU has fallen off the bus.`` (``pid=`` and
``name=`` are missing on some lines and drivers; recent drivers print ``Xid 154, ...`` without the
PCI part too). The same message reaches us in five dresses: a raw ``/dev/kmsg`` record
(``6,1234,5678901,-;NVRM: ...``), ``dmesg`` (``[12345.678901] NVRM: ...``), ``dmesg -T``
(``[Mon Nov 30 07:56:58 2026] NVRM: ...``), syslog/journald (``Nov 30 07:56:58 host kernel: NVRM:
...``) and ISO journald (``2026-11-30T07:56:58.123456+00:00 host kernel: NVRM: ...``); dhc finds the
``NVRM:`` message inside any of them. Recent drivers also report a GPU lost at probe or runtime
without an XID number, over several lines (``NVRM: The NVIDIA GPU 0000:b3:00.0`` / ``NVRM: (PCI ID:
10de:26b5) installed in this system has`` / ``NVRM: fallen off the bus and is not responding to
commands.``): dhc counts that as XID 79. NVSwitch errors (``nvidia-nvswitch0: SXid (PCI:...): 12028,
...``) are not XIDs: they are returned separately. ``XID 45 ... caused by previous Xid 149`` keeps
45 as its code and names 149 as its cause.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dhc.model import Action
from dhc.probes import xid_catalogue
from dhc.probes.background import NvmlWatch
from dhc.probes.nvml import GpuUnusable, Nvml

_NVRM = re.compile(r"NVRM: (?P<msg>.*)")
_XID = re.compile(r"^Xid (?:\(PCI:(?P<pci>[^)]+)\):? )?(?P<xid>\d+)\s*[,:]?\s*(?P<text>.*)$")
_SXID = re.compile(r"SXid \(PCI:(?P<pci>[^)]+)\):? (?P<sxid>\d+)\s*[,:]?\s*(?P<text>.*)$")
_CAUSE = re.compile(r"caused by previous Xid (?P<xid>\d+)", re.IGNORECASE)
_WHO = re.compile(r"^(?:(?:pid|name)=[^,]*,\s*)+")
_PCI = re.compile(r"\b(?P<pci>[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}(?:\.[0-7])?)\b")
FALLEN_OFF = "fallen off the bus"
UNKNOWN_MEANING = f"not in dhc's XID catalogue ({xid_catalogue.SOURCE}): unknown, look it up"


@dataclass(frozen=True)
class XidEvent:
    xid: int
    pci_bus_id: str | None  # as the kernel writes it, e.g. "0000:53:00"
    gpu_index: int | None
    text: str
    source: str  # "kernel log" | "NVML event"
    caused_by: int | None = None  # "caused by previous Xid 149"

    @property
    def known(self) -> bool:
        return xid_catalogue.lookup(self.xid) is not None

    @property
    def action(self) -> Action:
        """The catalogue's action; XID 154 the one its line asks for; an unknown XID asks for a reboot."""
        info = xid_catalogue.lookup(self.xid)
        if self.xid == 154:
            asked = xid_catalogue.recovery_action(self.text)
            return asked[1] if asked else Action.REBOOT
        return info.action if info else Action.REBOOT

    @property
    def meaning(self) -> str:
        info = xid_catalogue.lookup(self.xid)
        if self.xid == 154:
            asked = xid_catalogue.recovery_action(self.text)
            return f"the driver asks for: {asked[0] if asked else 'a recovery action dhc cannot read'}"
        return info.meaning if info else UNKNOWN_MEANING

    def describe(self) -> str:
        cause = f", caused by previous XID {self.caused_by}" if self.caused_by is not None else ""
        return f"XID {self.xid} ({self.meaning}{cause})"


@dataclass(frozen=True)
class SxidEvent:
    """An NVSwitch error: reported beside the XIDs, never counted as one."""

    sxid: int
    pci_bus_id: str
    text: str


def kernel_messages(text: str) -> list[str]:
    """The ``NVRM:`` messages of a kernel log in any of the five dresses, in order."""
    text = text.replace("\\x0a", "\n")  # /dev/kmsg escapes newlines inside a record
    return [match["msg"].rstrip() for line in text.splitlines() if (match := _NVRM.search(line))]


def parse_kernel_log(text: str) -> list[XidEvent]:
    messages = kernel_messages(text)
    events = [event for message in messages if (event := _xid_event(message)) is not None]
    for position, message in enumerate(messages):
        if FALLEN_OFF in message and not message.startswith("Xid"):
            pci = _recent_pci(messages, position)
            if not any(e.xid == 79 and same_pci_device(e.pci_bus_id, pci) for e in events):
                events.append(XidEvent(79, pci, None, "GPU has fallen off the bus (the driver printed no XID "
                                       "number)", "kernel log"))
    return events


def parse_sxids(text: str) -> list[SxidEvent]:
    return [SxidEvent(int(m["sxid"]), m["pci"], m["text"].strip())
            for line in text.replace("\\x0a", "\n").splitlines() if (m := _SXID.search(line))]


def _xid_event(message: str) -> XidEvent | None:
    match = _XID.match(message)
    if match is None:
        return None
    text = _WHO.sub("", match["text"].strip())
    cause = _CAUSE.search(text)
    return XidEvent(int(match["xid"]), match["pci"], None, text, "kernel log",
                    int(cause["xid"]) if cause else None)


def _recent_pci(messages: list[str], position: int) -> str | None:
    """The PCI address in this message or the (up to three) NVRM messages before it."""
    for message in reversed(messages[max(0, position - 3):position + 1]):
        if match := _PCI.search(message):
            return match["pci"]
    return None


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
    """Collects NVML critical-XID events on the given GPUs while the ``with`` block runs.

    A GPU NVML reports lost (or needing a reset) mid-watch goes to ``lost`` and the others are still
    watched; any other NVML error stops the watch and is kept in ``error``.
    """

    name = "XID event watch"

    def __init__(self, indices: list[int], nvml: Callable[[], Nvml] = Nvml, wait_ms: int = 200):
        super().__init__(indices, nvml)
        self.wait_ms = wait_ms
        self.events: list[XidEvent] = []

    def watch(self, nvml: Nvml) -> None:
        sets: dict[int, object] = {}
        for index in self.indices:
            try:
                sets.update(nvml.xid_event_sets([index]))
            except GpuUnusable as exc:
                self.lost[index] = exc
        per_set = max(1, self.wait_ms // max(1, len(sets)))
        while not self.stopping.is_set() and sets:
            for index, events in list(sets.items()):
                try:
                    xid = nvml.wait_xid(index, events, per_set)
                except GpuUnusable as exc:
                    self.lost[index] = exc
                    del sets[index]
                    continue
                if xid is not None:
                    self.events.append(XidEvent(xid, None, index, "", "NVML event"))
        if not sets:
            self.stopping.wait()  # every GPU is lost: nothing left to watch until the block ends
