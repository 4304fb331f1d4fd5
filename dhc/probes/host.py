"""What the host itself can tell without any GPU tooling: cores, memory, CPU model, /dev/shm space."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ShmSpace:
    """Size and free space of the shared-memory mount the ranks of a collective use."""

    path: str
    size_bytes: int
    free_bytes: int


def shm_space(path: str = "/dev/shm", statvfs: Callable[[str], os.statvfs_result] = os.statvfs) -> ShmSpace:
    """statvfs of ``path`` (a tmpfs: 64 MiB in a container unless something larger is mounted there).

    Raises OSError when the mount is not there or cannot be read.
    """
    st = statvfs(path)
    return ShmSpace(path, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)


def shm_shortfall(space: ShmSpace | OSError, ranks: int, per_rank_bytes: int) -> str:
    """Why ``ranks`` local ranks cannot run in this /dev/shm, or "" when it has room for them."""
    need = ranks * per_rank_bytes
    if isinstance(space, OSError):
        return (f"/dev/shm cannot be read ({space.strerror or space}); {ranks} ranks need at least {_size(need)} "
                "of shared memory: mount a memory-backed /dev/shm (emptyDir medium Memory)")
    if space.free_bytes >= need:
        return ""
    used = f", {_size(space.free_bytes)} free" if space.free_bytes < space.size_bytes else ""
    return (f"{space.path} is {_size(space.size_bytes)}{used}; {ranks} ranks need at least {_size(need)} "
            f"({_size(per_rank_bytes)} each): mount a larger memory-backed /dev/shm (emptyDir medium Memory)")


def _size(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} B"
