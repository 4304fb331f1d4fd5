"""EFA devices: libfabric's view (``fi_info -p efa -t FI_EP_RDM``) and the kernel's (/sys/class/infiniband).

What the real ``fi_info`` does (libfabric ``util/info.c``, 1.x and 2.x alike):

- Success: exit 0, one block per fi_info entry on stdout::

      provider: efa
          fabric: efa-direct            (1.x: "efa", older 1.x: "EFA-fe80::..." per device)
          domain: rdmap79s0-rdm         (older drivers: efa_0-rdm)
          version: 201.0
          type: FI_EP_RDM
          protocol: FI_PROTO_EFA

  libfabric 2.x lists each NIC twice for RDM (fabric ``efa-direct`` and ``efa``); without
  ``-t FI_EP_RDM`` a ``<nic>-dgrm`` FI_EP_DGRAM entry follows too. Devices are therefore counted
  by domain with the ``-rdm``/``-dgrm`` suffix stripped, never by entries.
- No EFA (no device, the efa provider missing or unable to open ``/dev/infiniband/uverbs*``):
  ``fi_getinfo`` returns -FI_ENODATA; fi_info prints ``fi_getinfo: -61`` on **stderr** only and
  exits 61 (``return -ret``). With ``FI_LOG_LEVEL=warn`` libfabric's own warnings precede it.
- Other failures: another negative code (``fi_getinfo: -12``) with exit ``-code``; a bad option
  prints ``error: ...`` on stderr and exits 22; a crash ends with a signal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dhc.probes.tool import ToolResult, locate, run_tool

ENODATA = 61
_NO_DATA = re.compile(r"^fi_getinfo: -61\b.*$", re.MULTILINE)
_SUFFIX = re.compile(r"-(rdm|dgrm)$")


class FiInfoError(Exception):
    """fi_info failed in a way that says nothing about the devices, or printed what we cannot read."""


@dataclass(frozen=True)
class Inventory:
    """What libfabric offers: distinct EFA devices, or none with fi_info's own words for why."""

    devices: tuple[str, ...]
    fabrics: tuple[str, ...] = ()
    no_data: str = ""  # fi_info's stderr when it found nothing (``fi_getinfo: -61``)


def query(binary: str = "fi_info", timeout_s: float = 60) -> Inventory:
    """Run ``fi_info -p efa -t FI_EP_RDM``; ToolMissing / ToolTimeout / FiInfoError when it cannot tell."""
    path = locate(binary, "install the EFA software (libfabric's fi_info), or set DHC_FI_INFO")
    return interpret(run_tool([path, "-p", "efa", "-t", "FI_EP_RDM"], timeout_s))


def interpret(result: ToolResult) -> Inventory:
    """Turn one fi_info run into an inventory; anything unrecognised is a FiInfoError naming what was seen."""
    if result.returncode < 0:
        raise FiInfoError(f"fi_info was killed by signal {-result.returncode}: {result.tail(200)}")
    if result.returncode != 0:
        found = _NO_DATA.search(result.stderr) or _NO_DATA.search(result.stdout)
        if found and result.returncode in (ENODATA, 256 - ENODATA):
            return Inventory((), no_data=_context(result.stderr or result.stdout))
        raise FiInfoError(f"fi_info exited {result.returncode}: {result.tail(200)}")
    return parse(result.stdout)


def parse(text: str) -> Inventory:
    """Distinct EFA devices in fi_info's short output (any libfabric generation, with or without -t)."""
    entries = _entries(text)
    if not entries:
        raise FiInfoError(f"fi_info exited 0 but printed no 'provider:' entry; expected fi_info's "
                          f"entry list, got {_first_bytes(text)}")
    efa = [e for e in entries if "efa" in e.get("provider", "").split(";")]
    if not efa:
        names = sorted({e.get("provider", "?") for e in entries})
        raise FiInfoError(f"fi_info was asked for the efa provider but listed only {', '.join(names)}")
    missing = [e for e in efa if not e.get("domain")]
    if missing:
        raise FiInfoError(f"an efa entry of fi_info has no 'domain:' line; got {_first_bytes(text)}")
    devices = dict.fromkeys(_SUFFIX.sub("", e["domain"]) for e in efa)
    fabrics = dict.fromkeys(e.get("fabric", "") for e in efa)
    return Inventory(tuple(devices), tuple(f for f in fabrics if f))


def _entries(text: str) -> list[dict[str, str]]:
    """One dict per ``provider:`` block; lines before the first block are ignored (log noise)."""
    entries: list[dict[str, str]] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if not sep or " " in key:
            continue
        if key == "provider" and not line[:1].isspace():
            entries.append({})
        if entries:
            entries[-1].setdefault(key, value.strip())
    return entries


def _context(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines[-3:])[-300:]


def _first_bytes(text: str, count: int = 120) -> str:
    return repr(text[:count]) if text.strip() else "no output at all"


def sysfs_devices(root: Path = Path("/sys/class/infiniband")) -> list[str] | None:
    """EFA devices the kernel shows (``rdmap*``, older ``efa_*``), or None when the folder is not there."""
    try:
        return sorted(p.name for p in root.iterdir() if p.name.startswith(("rdmap", "efa")))
    except OSError:
        return None
