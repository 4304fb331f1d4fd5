"""A watch that runs in a background thread for the length of a ``with`` block.

Subclasses implement ``watch(nvml)``, looping until ``self.stopping`` is set. A GPU NVML reports
lost (or needing a reset) during the watch is kept in ``lost`` (a finding on that GPU) while the
other GPUs are still watched; anything else that stops the watch early is kept in ``error``
(reported beside the verdict, never silently dropped).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from dhc.probes.nvml import GpuUnusable, Nvml


class NvmlWatch:
    name = "watch"

    def __init__(self, indices: list[int], nvml: Callable[[], Nvml] = Nvml):
        self.indices, self._nvml = indices, nvml
        self.error: str | None = None
        self.lost: dict[int, GpuUnusable] = {}
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dhc-{self.name}", daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._thread.join(timeout=10)

    def watch(self, nvml: Nvml) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            with self._nvml() as nvml:
                self.watch(nvml)
        except Exception as exc:  # NvmlUnavailable, NvmlQueryError and anything a binding raises alike
            self.error = f"{self.name} stopped: {exc}"
