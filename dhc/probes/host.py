"""What the host itself can tell without any GPU tooling: cores, memory, CPU model."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from dhc.model import Device


def cpu_cores() -> int:
    """Cores this process may run on (honours affinity and cpusets, as a container sees them)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 0


def memory_gib(meminfo: Path = Path("/proc/meminfo")) -> float:
    return _meminfo_bytes("MemTotal", meminfo) / 2**30


def memory_available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int:
    """What the kernel says can be allocated without swapping (MemAvailable)."""
    return _meminfo_bytes("MemAvailable", meminfo)


def _meminfo_bytes(key: str, meminfo: Path) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"{meminfo}: no {key} line")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("model name", "Model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_device() -> Device:
    return Device(kind="cpu", index=0, name=cpu_model())
