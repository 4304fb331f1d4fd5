"""What a detector hands on: a ``Detection`` (dhc's Finding plus the identity that dedupes it), the
Node condition type each detector writes (as node-problem-detector names its conditions), and the
plain-JSON form the state file keeps a detection in until it is delivered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from dhc.model import Action, Device, Finding, Status
from dhc.model.codec import dump, load

# detector id -> Node condition type (one condition per detector; kubectl describe node lists them)
CONDITION_TYPES = {
    "agent.xid": "GpuXid", "agent.gpu-lost": "GpuLost", "agent.sxid": "NvSwitchSXid",
    "agent.kernel-deadlock": "KernelDeadlock", "agent.oom": "OOMKilling", "agent.gpu-count": "GpuCount",
    "agent.ecc": "GpuEccUncorrectable", "agent.remap": "GpuRowRemap", "agent.nvlink": "NvLinkDown",
    "agent.clocks": "GpuClocksSlowdown", "agent.efa": "EfaDevices", "agent.disk": "RootFilesystem",
}
_PCI = re.compile(r"^(?:(?P<domain>[0-9a-fA-F]{4,8}):)?(?P<bus>[0-9a-fA-F]{2}):(?P<dev>[0-9a-fA-F]{2})")


@dataclass(frozen=True)
class Detection:
    finding: Finding  # check = the detector id; status Failed; action as judged
    key: str  # what makes two detections the same fault within one boot: detector|device|code
    reason: str  # CamelCase, for the condition and the Event (e.g. "XID79")
    seq: int | None = None  # the kernel-log record it came from, where known

    @property
    def detector(self) -> str:
        return self.finding.check

    @property
    def action(self) -> Action:
        return self.finding.action

    @property
    def condition_type(self) -> str:
        return CONDITION_TYPES[self.detector]

    def escalated(self, action: Action, why: str) -> Detection:
        finding = replace(self.finding, action=action, message=f"{self.finding.message}; {why}")
        return replace(self, finding=finding)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; the finding through the model's codec (a NaN value is null with ``non_finite``)."""
        return {"finding": dump(self.finding), "key": self.key, "reason": self.reason, "seq": self.seq}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detection:
        """The detection ``to_dict`` wrote; KeyError, TypeError or ValueError (``ModelError``, naming the key)
        for anything else."""
        finding = load(Finding, data["finding"], "finding")
        seq = data.get("seq")
        return cls(finding, str(data["key"]), str(data["reason"]), seq if isinstance(seq, int) else None)


def detection(detector: str, code: str, message: str, action: Action, device: Device | None = None,
              reason: str | None = None, seq: int | None = None, **measured: object) -> Detection:
    """A detection keyed by detector, device (its PCI address where known) and ``code``."""
    where = device_key(device)
    finding = Finding(detector, Status.FAILED, message, action, device, **measured)  # type: ignore[arg-type]
    return Detection(finding, f"{detector}|{where}|{code}", reason or code, seq)


def device_key(device: Device | None) -> str:
    """The same GPU across reboots and across the kernel's and NVML's spellings of its PCI address."""
    if device is None or device.kind != "gpu":
        return "node"
    if device.pci_bus_id:
        return pci_key(device.pci_bus_id)
    return f"gpu{device.index}"


def pci_key(text: str) -> str:
    """``0000:53:00`` (kernel) and ``00000000:53:00.0`` (NVML) both become ``0000:53:00``."""
    match = _PCI.match(text.strip())
    if match is None:
        return text.strip().lower()
    domain = int(match["domain"] or "0", 16)
    return f"{domain:04x}:{match['bus'].lower()}:{match['dev'].lower()}"


def where(device: Device | None) -> str | None:
    """``GPU 0 (UUID, PCI ...)`` where NVML knows the GPU, else ``the GPU at PCI 0000:53:00``."""
    if device is None:
        return None
    if device.kind != "gpu" or device.index >= 0:
        return device.label()
    return f"the GPU at PCI {device.pci_bus_id}" if device.pci_bus_id else "a GPU the driver did not name"
