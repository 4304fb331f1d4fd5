"""The agent's counts and gauges, kept in memory for ``/metrics`` (read at scrape time) and the benchmark."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from dhc.agent.detection import CONDITION_TYPES


@dataclass
class Tally:
    node: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    raised: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CONDITION_TYPES, 0))  # detector -> 0|1
    detections: Counter[tuple[str, str]] = field(default_factory=Counter)  # (detector, action) -> raised
    duplicates: int = 0  # detections already raised (this boot, or before a restart)
    kernel_lines: int = 0  # kernel-log lines read and interpreted
    polls: int = 0  # NVML / sysfs / disk polls completed
    watching: dict[str, int] = field(default_factory=lambda: {"kernel": 0, "nvml": 0})
    publish_errors: int = 0  # node writes that failed (retried at the next detection)
    cloudwatch_errors: int = 0  # CloudWatch Logs puts that failed (``--sink cloudwatch``; kept and tried again)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + amount)

    def detected(self, detector: str, action: str) -> None:
        with self.lock:
            self.raised[detector] = 1
            self.detections[(detector, action)] += 1
