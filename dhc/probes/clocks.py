"""Sample NVML clock event (throttle) reasons while a burn runs; the hardware-caused ones are faults.

What NVML does: ``nvmlDeviceGetCurrentClocksEventReasons`` (``...ThrottleReasons`` before driver
535) returns a bit mask; a lost GPU answers GPU_IS_LOST, which this sampler keeps in ``lost`` and
stops sampling that GPU while the others go on.
"""

from __future__ import annotations

from collections.abc import Callable

from dhc.probes.background import NvmlWatch
from dhc.probes.nvml import GpuUnusable, Nvml

# nvmlClocksEventReason* bits that mean the hardware itself slowed the GPU down
HARDWARE_REASONS = {
    0x8: "HW slowdown (power brake, overheating or a failing power supply)",
    0x40: "HW thermal slowdown (the GPU is too hot)",
    0x80: "HW power brake slowdown (an external power brake asserted)",
}


class ClockEventSampler(NvmlWatch):
    """ORs together the reasons seen on each GPU while the ``with`` block runs."""

    name = "clock event sampling"

    def __init__(self, indices: list[int], interval_s: float = 0.5, nvml: Callable[[], Nvml] = Nvml):
        super().__init__(indices, nvml)
        self.interval_s = interval_s
        self.seen: dict[int, int] = dict.fromkeys(indices, 0)
        self.samples = 0

    def hardware_slowdowns(self) -> dict[int, list[str]]:
        """GPU index -> the hardware reasons seen on it."""
        return {i: [text for bit, text in HARDWARE_REASONS.items() if mask & bit]
                for i, mask in self.seen.items() if mask & sum(HARDWARE_REASONS)}

    def watch(self, nvml: Nvml) -> None:
        while True:
            for index in self.indices:
                if index in self.lost:
                    continue
                try:
                    self.seen[index] |= nvml.clock_event_reasons(index)
                except GpuUnusable as exc:
                    self.lost[index] = exc
            self.samples += 1
            if self.stopping.wait(self.interval_s):
                return
