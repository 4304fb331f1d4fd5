"""The one seam between dhc and NVML.

``Nvml`` wraps the handful of NVML calls dhc makes. It takes the NVML module as a parameter
(``pynvml`` by default) so every piece of logic above it runs on CPU against recorded values.
"""

from __future__ import annotations

import importlib
from types import ModuleType, TracebackType
from typing import Any

from dhc.model import Device


class NvmlUnavailable(Exception):
    """NVML could not start: no driver, no library, or no permission. The message says which."""


class Nvml:
    def __init__(self, lib: ModuleType | Any | None = None):
        self._lib = lib

    def __enter__(self) -> Nvml:
        if self._lib is None:
            try:
                self._lib = importlib.import_module("pynvml")
            except ImportError as exc:
                raise NvmlUnavailable(f"the nvidia-ml-py package is not installed ({exc})") from exc
        try:
            self._lib.nvmlInit()
        except self._lib.NVMLError as exc:
            raise NvmlUnavailable(_explain(self._lib, exc)) from exc
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._lib.nvmlShutdown()
        except self._lib.NVMLError:
            pass

    def driver_version(self) -> str:
        return _text(self._lib.nvmlSystemGetDriverVersion())

    def cuda_driver_version(self) -> str:
        raw = self._lib.nvmlSystemGetCudaDriverVersion()  # e.g. 12040 -> "12.4"
        return f"{raw // 1000}.{raw % 1000 // 10}"

    def gpus(self) -> list[Device]:
        lib = self._lib
        out = []
        for index in range(lib.nvmlDeviceGetCount()):
            handle = lib.nvmlDeviceGetHandleByIndex(index)
            out.append(Device(
                kind="gpu", index=index, name=_text(lib.nvmlDeviceGetName(handle)),
                uuid=_text(lib.nvmlDeviceGetUUID(handle)),
                serial=self._optional(lib.nvmlDeviceGetSerial, handle),
                pci_bus_id=_text(lib.nvmlDeviceGetPciInfo(handle).busId),
            ))
        return out

    def clock_event_reasons(self, index: int) -> int:
        """The bit mask of why the GPU's clocks are held down right now (throttle reasons)."""
        lib = self._lib
        call = getattr(lib, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            lib.nvmlDeviceGetCurrentClocksThrottleReasons  # the name before driver 535
        return int(call(lib.nvmlDeviceGetHandleByIndex(index)))

    def _optional(self, call: Any, handle: Any) -> str | None:
        """Some boards (GeForce, some vGPUs) answer NOT_SUPPORTED for fields like the serial."""
        try:
            return _text(call(handle))
        except self._lib.NVMLError:
            return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _explain(lib: Any, exc: Exception) -> str:
    if isinstance(exc, getattr(lib, "NVMLError_LibraryNotFound", ())):
        return "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver is installed or visible here"
    if isinstance(exc, getattr(lib, "NVMLError_DriverNotLoaded", ())):
        return "the NVIDIA kernel driver is not loaded"
    if isinstance(exc, getattr(lib, "NVMLError_NoPermission", ())):
        return "no permission to open the NVIDIA devices"
    return f"NVML failed to start: {exc}"
