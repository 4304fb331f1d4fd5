"""EFA devices: libfabric's view (``fi_info -p efa -t FI_EP_RDM``) and the kernel's (/sys/class/infiniband)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def rdm_domains(fi_info_output: str) -> list[str]:
    """Distinct EFA RDM domains (``fi_info`` lists a domain once per version and capability set)."""
    domains: list[str] = []
    for entry in _entries(fi_info_output):
        domain = entry.get("domain")
        if entry.get("provider") == "efa" and entry.get("type") == "FI_EP_RDM" and domain and domain not in domains:
            domains.append(domain)
    return domains


def _entries(text: str) -> list[dict[str, str]]:
    """One dict per ``provider:`` block of fi_info's output."""
    entries: list[dict[str, str]] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if key.strip() == "provider":
            entries.append({})
        if entries:
            entries[-1][key.strip()] = value.strip()
    return entries


def run_fi_info(binary: str = "fi_info", timeout_s: float = 30) -> str:
    path = shutil.which(binary)
    if path is None:
        raise FileNotFoundError(f"{binary} is not on PATH (install the EFA software: libfabric's fi_info)")
    proc = subprocess.run([path, "-p", "efa", "-t", "FI_EP_RDM"], capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0 and "No data available" not in proc.stdout + proc.stderr:
        raise RuntimeError(f"{binary} exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:200]}")
    return proc.stdout


def sysfs_devices(root: Path = Path("/sys/class/infiniband")) -> list[str] | None:
    """EFA devices the kernel shows (``rdmap*``), or None when the folder is not there."""
    try:
        return sorted(p.name for p in root.iterdir() if p.name.startswith(("rdmap", "efa")))
    except OSError:
        return None
