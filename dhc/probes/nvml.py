"""The one seam between dhc and NVML.

``Nvml`` wraps the handful of NVML calls dhc makes. It takes the NVML module as a parameter
(``pynvml`` by default) so every piece of logic above it runs on CPU against recorded values.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any

from dhc.model import Device

# NVML constants (nvml.h), spelled out so the seam does not depend on a particular pynvml's names
UNCORRECTED, VOLATILE, AGGREGATE = 1, 0, 1
TEMPERATURE_GPU = 0
NVLINK_MAX_LINKS = 18
RETIRED_BY_SBE, RETIRED_BY_DBE = 0, 1
EVENT_XID_CRITICAL = 0x8


@dataclass(frozen=True)
class GpuHealth:
    """What NVML says about one GPU's health; None where the GPU does not support the query."""

    index: int
    ecc_enabled: bool | None = None
    ecc_uncorrected_volatile: int | None = None
    ecc_uncorrected_aggregate: int | None = None
    remapped_rows_pending: bool | None = None
    remap_failure: bool | None = None
    retired_pages: int | None = None
    retired_pages_pending: bool | None = None
    nvlinks_up: int | None = None
    pcie_gen: tuple[int, int] | None = None  # (current, max); current drops at idle to save power
    pcie_width: tuple[int, int] | None = None  # (current, max)
    temperature_c: int | None = None


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

    def health(self, index: int) -> GpuHealth:
        lib, h = self._lib, self._lib.nvmlDeviceGetHandleByIndex(index)
        ask = self._ask
        ecc_mode = ask(lib.nvmlDeviceGetEccMode, h)
        remap = ask(lib.nvmlDeviceGetRemappedRows, h)  # (correctable, uncorrectable, pending, failed)
        retired = [ask(lib.nvmlDeviceGetRetiredPages, h, cause) for cause in (RETIRED_BY_SBE, RETIRED_BY_DBE)]
        gen = (ask(lib.nvmlDeviceGetCurrPcieLinkGeneration, h), ask(lib.nvmlDeviceGetMaxPcieLinkGeneration, h))
        width = (ask(lib.nvmlDeviceGetCurrPcieLinkWidth, h), ask(lib.nvmlDeviceGetMaxPcieLinkWidth, h))
        links = [ask(lib.nvmlDeviceGetNvLinkState, h, link) for link in range(NVLINK_MAX_LINKS)]
        return GpuHealth(
            index=index,
            ecc_enabled=None if ecc_mode is None else bool(ecc_mode[0]),
            ecc_uncorrected_volatile=ask(lib.nvmlDeviceGetTotalEccErrors, h, UNCORRECTED, VOLATILE),
            ecc_uncorrected_aggregate=ask(lib.nvmlDeviceGetTotalEccErrors, h, UNCORRECTED, AGGREGATE),
            remapped_rows_pending=None if remap is None else bool(remap[2]),
            remap_failure=None if remap is None else bool(remap[3]),
            retired_pages=None if None in retired else sum(len(pages) for pages in retired),
            retired_pages_pending=_flag(ask(lib.nvmlDeviceGetRetiredPagesPendingStatus, h)),
            nvlinks_up=None if all(x is None for x in links) else sum(1 for x in links if x),
            pcie_gen=None if None in gen else gen, pcie_width=None if None in width else width,
            temperature_c=ask(lib.nvmlDeviceGetTemperature, h, TEMPERATURE_GPU),
        )

    def xid_event_sets(self, indices: list[int]) -> dict[int, Any]:
        """One NVML event set per GPU watching for critical XIDs (so each event names its GPU)."""
        lib, sets = self._lib, {}
        for index in indices:
            events = lib.nvmlEventSetCreate()
            lib.nvmlDeviceRegisterEvents(lib.nvmlDeviceGetHandleByIndex(index), EVENT_XID_CRITICAL, events)
            sets[index] = events
        return sets

    def wait_xid(self, events: Any, timeout_ms: int) -> int | None:
        """The next critical XID in this event set, or None when none came within the timeout."""
        try:
            return int(self._lib.nvmlEventSetWait_v2(events, timeout_ms).eventData)
        except self._lib.NVMLError:  # a quiet wait ends in NVML's timeout error
            return None

    def _ask(self, call: Any, *args: Any) -> Any:
        """NVML's answer, or None where the GPU does not support the query (NOT_SUPPORTED and kin)."""
        try:
            return call(*args)
        except self._lib.NVMLError:
            return None

    def _optional(self, call: Any, handle: Any) -> str | None:
        """Some boards (GeForce, some vGPUs) answer NOT_SUPPORTED for fields like the serial."""
        value = self._ask(call, handle)
        return None if value is None else _text(value)


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


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
