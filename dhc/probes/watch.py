"""Watch the GPUs while a stress runs: hardware clock slowdowns, critical XIDs and GPUs lost, as faults.

A watch that NVML stopped early (any error but a lost GPU, e.g. NVML_ERROR_UNKNOWN from an event
wait) could not see what it was there to see, so the stress it watched cannot pass: ``conclude``
records what was seen and then raises CheckIncomplete naming the watch and the NVML error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dhc.errors import CheckIncomplete
from dhc.model import Action, Device
from dhc.probes.clocks import ClockEventSampler
from dhc.probes.nvml import Nvml
from dhc.probes.xid import XidWatcher


@dataclass(frozen=True)
class WatchFault:
    gpu: int | None
    message: str
    action: Action


class StressWatch:
    """``with StressWatch([0, 1]) as watch: ...`` then ``watch.faults()``; a no-op without GPUs."""

    def __init__(self, indices: list[int], nvml: Callable[[], Nvml] = Nvml):
        self.clocks = ClockEventSampler(indices, nvml=nvml) if indices else None
        self.xids = XidWatcher(indices, nvml=nvml) if indices else None

    def __enter__(self) -> StressWatch:
        for watcher in (self.clocks, self.xids):
            if watcher is not None:
                watcher.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        for watcher in (self.clocks, self.xids):
            if watcher is not None:
                watcher.__exit__(*exc)

    def faults(self) -> list[WatchFault]:
        out = []
        if self.clocks is not None:
            for gpu, reasons in self.clocks.hardware_slowdowns().items():
                out.append(WatchFault(gpu, f"clocks held down during the stress: {'; '.join(reasons)}",
                                      Action.REPLACE))
        if self.xids is not None:
            for event in self.xids.events:
                if event.action is not Action.NONE:
                    out.append(WatchFault(event.gpu_index, f"{event.describe()} during the stress", event.action))
        lost = {i: exc for w in (self.clocks, self.xids) if w is not None for i, exc in w.lost.items()}
        for gpu, exc in sorted(lost.items()):  # one finding per GPU, whichever watch saw it first
            out.append(WatchFault(gpu, f"during the stress: {exc}", exc.action))
        return out

    def watching(self) -> dict[str, int]:
        """Which watches ran to the end (1) or stopped early (0), for the report."""
        return {f"{name}_watched": int(w.error is None)
                for name, w in (("clock_events", self.clocks), ("xid_events", self.xids)) if w is not None}

    def conclude(self, check: Any, devices: dict[int, Device]) -> None:
        """Record on ``check`` (a check's recorder: ``fault`` and ``record``) each fault seen, on its
        device by GPU index, and which watches ran to the end; then raise CheckIncomplete if one stopped
        early. Faults recorded before that still make the check Failed (dhc.plugin.outcomes)."""
        for fault in self.faults():
            check.fault(fault.message, devices.get(fault.gpu) if fault.gpu is not None else None, fault.action)
        for name, ran in self.watching().items():
            check.record(name, ran, "count")
        if self.problems():
            raise CheckIncomplete("NVML could not watch the GPUs for the whole stress, so an XID or a clock "
                                  f"slowdown may have gone unseen: {'; '.join(self.problems())}")

    def problems(self) -> list[str]:
        """Why a watcher stopped early, if one did (the stress itself still counts)."""
        return [w.error for w in (self.clocks, self.xids) if w is not None and w.error]
