"""What the agent polls every few seconds: NVML (GPU count, lost GPUs, ECC, row remaps, NVLinks,
clock slowdowns), the EFA devices in sysfs and the root filesystem.

No GPU kernels and no GPU memory: only NVML queries (``dhc.probes.nvml``, whose docstring says how
each NVML error is read) and ``statvfs``. A GPU NVML calls lost is a detection; a metric NVML could
not read is a note (logged once), never read as healthy or as a fault. Detectors: ``agent.gpu-count``,
``agent.gpu-lost``, ``agent.ecc``, ``agent.remap``, ``agent.nvlink``, ``agent.clocks`` (hardware
slowdown held past its window: a warning), ``agent.efa`` and ``agent.disk``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dhc.agent.detection import Detection, detection, device_key, pci_key
from dhc.model import Action, Device
from dhc.probes.efa import sysfs_devices
from dhc.probes.nvml import GpuHealth, GpuUnusable, Nvml, NvmlQueryError, NvmlUnavailable
from dhc.thresholds.agent import AgentLimits


@dataclass(frozen=True)
class Expected:
    """What the instance type promises; None where the type is unknown (that detector is then off)."""

    gpus: int | None = None
    efa: int | None = None
    nvlinks_per_gpu: int | None = None


class Poller:
    def __init__(self, limits: AgentLimits, expected: Expected, nvml: Callable[[], Nvml] = Nvml,
                 sys_infiniband: Path = Path("/sys/class/infiniband"), disk: Path = Path("/"),
                 clock: Callable[[], float] = time.monotonic, mountinfo: Path = Path("/proc/self/mountinfo")):
        self.limits, self.expected, self.clock, self.mountinfo = limits, expected, clock, mountinfo
        self.sys_infiniband, self.disk = sys_infiniband, disk
        self.gpus: dict[str, Device] = {}  # PCI key -> GPU, for the kernel-log detectors
        self.notes: list[str] = []  # what could not be read in the last poll
        self.slow_since: dict[str, float] = {}
        self.links_seen: dict[str, int] = {}
        self.nvml: Nvml | None = None
        try:
            self.nvml = nvml().__enter__()
        except NvmlUnavailable as exc:
            self.nvml_problem = f"NVML unavailable, the GPU detectors are not watching: {exc}"
        except Exception as exc:  # a broken binding, named at this edge: blind, and saying so
            self.nvml_problem = (f"NVML unavailable, the GPU detectors are not watching: starting it raised "
                                 f"{type(exc).__name__}: {str(exc)[:200]}")
        else:
            self.nvml_problem = None

    def close(self) -> None:
        if self.nvml is not None:
            self.nvml.__exit__(None, None, None)

    def poll(self) -> list[Detection]:
        self.notes = [self.nvml_problem] if self.nvml_problem else []
        return [*self._nvml(), *self._efa(), *self._disk()]

    def _nvml(self) -> list[Detection]:
        if self.nvml is None:
            return []
        try:
            gpus = self.nvml.gpus()
        except NvmlQueryError as exc:
            self.notes.append(f"NVML could not count the GPUs: {exc}")
            return []
        self.gpus = {pci_key(d.pci_bus_id): d for d in gpus if d.pci_bus_id}
        found = [self._lost(exc) for exc in gpus.lost]
        count, want = len(gpus) + len(gpus.lost), self.expected.gpus
        if want is not None and count < want:
            found.append(detection("agent.gpu-count", "count", f"NVML counts {count} GPUs; the instance type has "
                                   f"{want}", self.limits["agent.gpu-count"].action, reason="GpuCountLow",
                                   metric="gpu_count", value=float(count), limit=float(want), unit="count"))
        for gpu in gpus:
            found += self._gpu(gpu)
        return found

    def _lost(self, exc: GpuUnusable) -> Detection:
        action = self.limits["agent.gpu-lost"].action if exc.action is Action.REPLACE else Action.REBOOT
        return detection("agent.gpu-lost", exc.action.value, str(exc), action, exc.device,
                         reason="GpuLost" if exc.action is Action.REPLACE else "GpuResetRequired")

    def _gpu(self, gpu: Device) -> list[Detection]:
        try:
            health = self.nvml.health(gpu)  # type: ignore[union-attr]
            reasons = self.nvml.clock_event_reasons(gpu)  # type: ignore[union-attr]
        except GpuUnusable as exc:
            return [self._lost(exc)]
        except NvmlQueryError as exc:
            self.notes.append(f"NVML could not read {gpu.label()}: {exc.detail}")
            return []
        self.notes += [f"{gpu.label()}: {metric} unreadable: {why}" for metric, why in sorted(health.unreadable.items())]
        return [*self._memory(gpu, health), *self._links(gpu, health), *self._clocks(gpu, reasons)]

    def _memory(self, gpu: Device, health: GpuHealth) -> list[Detection]:
        found, ecc, remap = [], self.limits["agent.ecc"], self.limits["agent.remap"]
        count = health.ecc_uncorrected_volatile
        if count is not None and count >= ecc.value("rise"):
            found.append(detection("agent.ecc", "volatile", f"{gpu.label()}: {count} uncorrectable ECC errors since "
                                   "the driver loaded", ecc.action, gpu, reason="EccUncorrectable",
                                   metric="ecc_uncorrected_volatile", value=float(count),
                                   limit=ecc.value("rise") - 1, unit="count"))
        if health.remap_failure:
            found.append(detection("agent.remap", "failed", f"{gpu.label()}: a row remap failed", remap.actions[
                "failed_action"], gpu, reason="RowRemapFailed"))
        elif health.remapped_rows_pending:
            found.append(detection("agent.remap", "pending", f"{gpu.label()}: a row remap is pending (it takes "
                                   "effect at the next GPU reset)", remap.action, gpu, reason="RowRemapPending"))
        return found

    def _links(self, gpu: Device, health: GpuHealth) -> list[Detection]:
        up = health.nvlinks_up
        if up is None:
            return []
        key = device_key(gpu)
        want = self.expected.nvlinks_per_gpu or self.links_seen.get(key, 0)
        self.links_seen[key] = max(up, self.links_seen.get(key, 0))
        if up >= want:
            return []
        return [detection("agent.nvlink", "down", f"{gpu.label()}: {up} of {want} NVLinks up",
                          self.limits["agent.nvlink"].action, gpu, reason="NvLinkDown", metric="nvlinks_up",
                          value=float(up), limit=float(want), unit="count")]

    def _clocks(self, gpu: Device, reasons: int) -> list[Detection]:
        limits, key = self.limits["agent.clocks"], device_key(gpu)
        slow = reasons & int(limits.value("reasons_mask"))
        if not slow:
            self.slow_since.pop(key, None)
            return []
        held = self.clock() - self.slow_since.setdefault(key, self.clock())
        if held < limits.value("window_s"):
            return []
        return [detection("agent.clocks", "slowdown", f"{gpu.label()}: hardware clock slowdown (reasons {slow:#x}) "
                          f"held {held:.0f} s", limits.action, gpu, reason="HwSlowdown", metric="slowdown_s",
                          value=held, limit=limits.value("window_s"), unit="s")]

    def _efa(self) -> list[Detection]:
        want = self.expected.efa
        if not want:
            return []
        devices = sysfs_devices(self.sys_infiniband)
        if devices is None:
            self.notes.append(f"{self.sys_infiniband} is not there: the EFA devices cannot be counted")
            return []
        if len(devices) >= want:
            return []
        return [detection("agent.efa", "count", f"{len(devices)} EFA devices in {self.sys_infiniband}; the instance "
                          f"type has {want}", self.limits["agent.efa"].action, reason="EfaDevicesMissing",
                          metric="efa_devices", value=float(len(devices)), limit=float(want), unit="count")]

    def _disk(self) -> list[Detection]:
        limits = self.limits["agent.disk"]
        try:
            fs = os.statvfs(self.disk)
        except OSError as exc:
            self.notes.append(f"cannot read the filesystem at {self.disk}: {exc.strerror}")
            return []
        found = []
        try:
            readonly = superblock_readonly(self.disk, self.mountinfo)
        except OSError:  # no /proc here: statvfs's flag (a read-only bind mount reads read-only too)
            readonly = bool(fs.f_flag & os.ST_RDONLY)
        if readonly:
            found.append(detection("agent.disk", "readonly", f"the filesystem at {self.disk} is read-only",
                                   limits.action, reason="FilesystemReadOnly"))
        used, avail = fs.f_blocks - fs.f_bfree, fs.f_bavail
        share = 100.0 * used / (used + avail) if used + avail else 0.0
        if share > limits.value("max_used_percent"):
            found.append(detection("agent.disk", "full", f"the filesystem at {self.disk} is {share:.1f}% used",
                                   limits.actions["full_action"], reason="FilesystemFull", metric="used_percent",
                                   value=share, limit=limits.value("max_used_percent"), unit="%"))
        return found


def superblock_readonly(path: Path, mountinfo: Path) -> bool:
    """Whether the filesystem under ``path`` went read-only (its superblock options say ``ro``, as after
    ext4's errors=remount-ro). A read-only bind mount of a healthy filesystem (the DaemonSet mounts the
    host's root read-only) has ``ro`` in its own mount options only, and is not a fault.

    /proc/self/mountinfo: ``ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS``.
    """
    best, readonly = "", False
    target = str(path.resolve())
    for line in mountinfo.read_text(errors="replace").splitlines():
        fields, _, tail = line.partition(" - ")
        parts, after = fields.split(), tail.split()
        if len(parts) < 5 or len(after) < 3:
            continue
        point = parts[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, readonly = point, "ro" in after[2].split(",")
    return readonly
