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
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024 / 2**30
    raise ValueError(f"{meminfo}: no MemTotal line")


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
