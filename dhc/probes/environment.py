"""Versions of the software stack a verdict was reached on (driver, CUDA, torch, NCCL, DCGM).

What ``dcgmi --version`` does: prints "dcgmi  version: X.Y.Z" on stdout and exits 0, without a host engine
(it does not connect); on a node without DCGM the binary is absent. A hung or crashing dcgmi reads as an
unknown version (None), never as an exception, and is killed with its process group after a few seconds.
"""

from __future__ import annotations

import importlib.metadata
import platform

import dhc
from dhc.probes.nvml import Nvml, NvmlUnavailable
from dhc.probes.tool import ToolMissing, ToolTimeout, locate, run_tool

_NCCL_DISTRIBUTIONS = ("nvidia-nccl-cu13", "nvidia-nccl-cu12", "nvidia-nccl-cu11")
VERSION_TIMEOUT_S = 10.0


def software_versions(nvml: Nvml | None = None, dcgmi: str | None = "dcgmi") -> dict[str, str | None]:
    """Never raises: what cannot be read is None. Reads package metadata, so torch is not imported."""
    versions: dict[str, str | None] = {
        "dhc": dhc.__version__, "python": platform.python_version(),
        "kernel": platform.release(), "torch": _dist_version("torch"),
        "nccl": next(filter(None, map(_dist_version, _NCCL_DISTRIBUTIONS)), None),
        "driver": None, "cuda_driver": None, "dcgm": _dcgm_version(dcgmi),
    }
    try:
        with nvml or Nvml() as lib:
            versions["driver"], versions["cuda_driver"] = lib.driver_version(), lib.cuda_driver_version()
    except NvmlUnavailable:
        pass
    return versions


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _dcgm_version(dcgmi: str | None) -> str | None:
    if not dcgmi:
        return None
    try:
        out = run_tool([locate(dcgmi), "--version"], VERSION_TIMEOUT_S).stdout
    except (ToolMissing, ToolTimeout, OSError):
        return None
    for line in out.splitlines():
        if "version" in line.lower() and ":" in line:
            return line.split(":", 1)[1].strip()
    return None
