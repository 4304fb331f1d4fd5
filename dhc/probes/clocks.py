"""Sample NVML clock event (throttle) reasons while a burn runs; the hardware-caused ones are faults."""

from __future__ import annotations

import threading
from collections.abc import Callable

from dhc.probes.nvml import Nvml, NvmlUnavailable

# nvmlClocksEventReason* bits that mean the hardware itself slowed the GPU down
HARDWARE_REASONS = {
    0x8: "HW slowdown (power brake, overheating or a failing power supply)",
    0x40: "HW thermal slowdown (the GPU is too hot)",
    0x80: "HW power brake slowdown (an external power brake asserted)",
}


class ClockEventSampler:
    """A background thread ORs together the reasons seen on each GPU until ``stop()``."""

    def __init__(self, indices: list[int], interval_s: float = 0.5, nvml: Callable[[], Nvml] = Nvml):
        self.indices, self.interval_s, self._nvml = indices, interval_s, nvml
        self.seen: dict[int, int] = dict.fromkeys(indices, 0)
        self.samples = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dhc-clock-events", daemon=True)

    def __enter__(self) -> ClockEventSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def hardware_slowdowns(self) -> dict[int, list[str]]:
        """GPU index -> the hardware reasons seen on it."""
        return {i: [text for bit, text in HARDWARE_REASONS.items() if mask & bit]
                for i, mask in self.seen.items() if mask & sum(HARDWARE_REASONS)}

    def _run(self) -> None:
        try:
            with self._nvml() as nvml:
                while True:
                    for index in self.indices:
                        self.seen[index] |= nvml.clock_event_reasons(index)
                    self.samples += 1
                    if self._stop.wait(self.interval_s):
                        return
        except (NvmlUnavailable, Exception) as exc:  # reported beside the verdict, never silently
            self.error = f"clock event sampling stopped: {exc}"
