"""The one seam between dhc and NVML: which GPUs there are, their health, and what NVML's errors mean.

``Nvml`` wraps the handful of NVML calls dhc makes. It takes the NVML module as a parameter
(``pynvml`` by default) so every piece of logic above it runs on CPU against recorded values.

What the real library does (nvml.h, nvidia-ml-py): every call returns an ``nvmlReturn_t``; pynvml
raises ``NVMLError`` (a subclass per code, the code in ``.value``). Without NVIDIA hardware or driver
``nvmlInit`` fails with LIBRARY_NOT_FOUND or DRIVER_NOT_LOADED (``NvmlUnavailable``, which says which).
A GPU that fell off the bus after the driver loaded is still counted by ``nvmlDeviceGetCount`` and
answers GPU_IS_LOST; one lost before the driver loaded is simply not counted. How dhc reads each code:

- NOT_SUPPORTED (3), FUNCTION_NOT_FOUND (13, a driver older than the call): the GPU does not have
  this metric; it is left out and nothing is judged on it. For an NVLink link index past the GPU's
  links, NVML answers INVALID_ARGUMENT (2) or NOT_SUPPORTED: that link does not exist.
- GPU_IS_LOST (15): the GPU fell off the bus; RESET_REQUIRED (16): it needs a reset before use.
  Both raise ``GpuUnusable``, a finding on that GPU, never "not supported".
- A maximum PCIe link width of 0 lanes (seen on some virtualised GPUs) is named unreadable, like an error.
- TIMEOUT (10) from an event wait means no event came; anywhere else, like UNKNOWN (999),
  NO_PERMISSION (4) and every other code, the measurement could not be read: it is named in
  ``GpuHealth.unreadable`` (or raised as ``NvmlQueryError``) so the check cannot pass on it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType, TracebackType
from typing import Any

from dhc.model import Action, Device

# NVML constants (nvml.h), spelled out so the seam does not depend on a particular pynvml's names
UNCORRECTED, VOLATILE, AGGREGATE = 1, 0, 1
TEMPERATURE_GPU = 0
NVLINK_MAX_LINKS = 18
RETIRED_BY_SBE, RETIRED_BY_DBE = 0, 1
EVENT_XID_CRITICAL = 0x8

ERROR_NAMES = {
    1: "UNINITIALIZED", 2: "INVALID_ARGUMENT", 3: "NOT_SUPPORTED", 4: "NO_PERMISSION", 5: "ALREADY_INITIALIZED",
    6: "NOT_FOUND", 7: "INSUFFICIENT_SIZE", 8: "INSUFFICIENT_POWER", 9: "DRIVER_NOT_LOADED", 10: "TIMEOUT",
    11: "IRQ_ISSUE", 12: "LIBRARY_NOT_FOUND", 13: "FUNCTION_NOT_FOUND", 14: "CORRUPTED_INFOROM",
    15: "GPU_IS_LOST", 16: "RESET_REQUIRED", 17: "OPERATING_SYSTEM", 18: "LIB_RM_VERSION_MISMATCH",
    19: "IN_USE", 20: "MEMORY", 21: "NO_DATA", 22: "VGPU_ECC_NOT_SUPPORTED", 23: "INSUFFICIENT_RESOURCES",
    24: "FREQ_NOT_SUPPORTED", 25: "ARGUMENT_VERSION_MISMATCH", 26: "DEPRECATED", 27: "NOT_READY",
    28: "GPU_NOT_FOUND", 29: "INVALID_STATE", 999: "UNKNOWN",
}
INVALID_ARGUMENT, NOT_SUPPORTED, TIMEOUT, FUNCTION_NOT_FOUND = 2, 3, 10, 13
ABSENT = frozenset({NOT_SUPPORTED, FUNCTION_NOT_FOUND})  # the GPU or driver does not have this metric
NO_SUCH_LINK = ABSENT | {INVALID_ARGUMENT}  # an NVLink index past the GPU's links
UNUSABLE = {15: Action.REPLACE, 16: Action.REBOOT}  # GPU_IS_LOST, RESET_REQUIRED


@dataclass(frozen=True)
class GpuHealth:
    """What NVML says about one GPU's health; None where the GPU does not support the query or where
    it could not be read (then ``unreadable`` names the metric and the NVML error)."""

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
    unreadable: dict[str, str] = field(default_factory=dict)  # metric -> why it could not be read


class NvmlUnavailable(Exception):
    """NVML could not start: no driver, no library, or no permission. The message says which."""


class NvmlQueryError(NvmlUnavailable):
    """An NVML call failed with an error that is neither "not supported" nor a lost GPU."""

    def __init__(self, device: Device, detail: str):
        self.device, self.detail = device, detail  # detail: "nvmlX: NVML_ERROR_UNKNOWN (Unknown Error)"
        super().__init__(f"{device.label()}: {detail}")


class GpuUnusable(Exception):
    """NVML says this GPU is lost (fell off the bus) or needs a reset: a finding on that GPU."""

    def __init__(self, device: Device, error: str, action: Action):
        self.device, self.error, self.action = device, error, action
        what = "is lost to NVML (fallen off the bus?)" if action is Action.REPLACE else "needs a GPU reset"
        super().__init__(f"{device.label()} {what}: {error}")


class GpuList(list[Device]):
    """The GPUs NVML can use, in NVML order; ``lost`` holds those it enumerates but cannot use."""

    def __init__(self, present: list[Device], lost: list[GpuUnusable]):
        super().__init__(present)
        self.lost = lost


def error_code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def describe_error(call: str, exc: BaseException) -> str:
    """``nvmlDeviceGetTotalEccErrors: NVML_ERROR_UNKNOWN (Unknown Error)``."""
    code = error_code(exc)
    name = f"NVML_ERROR_{ERROR_NAMES.get(code, code)}" if code is not None else type(exc).__name__
    return f"{call}: {name} ({str(exc)[:120] or 'no message'})"


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

    def gpus(self) -> GpuList:
        """Every GPU NVML counts; one that is lost or needs a reset goes to ``lost`` with what is known."""
        present, lost = [], []
        for index in range(self.call("nvmlDeviceGetCount", Device("node"))):
            try:
                present.append(self._identity(index))
            except GpuUnusable as exc:
                lost.append(exc)
        return GpuList(present, lost)

    def _identity(self, index: int) -> Device:
        known = Device(kind="gpu", index=index)
        handle = self.call("nvmlDeviceGetHandleByIndex", known, index)
        known = Device("gpu", index, pci_bus_id=_text(self.call("nvmlDeviceGetPciInfo", known, handle).busId))
        uuid = _text(self.call("nvmlDeviceGetUUID", known, handle))
        known = Device("gpu", index, pci_bus_id=known.pci_bus_id, uuid=uuid)
        serial = self.call("nvmlDeviceGetSerial", known, handle, absent=ABSENT)  # GeForce, some vGPUs
        return Device(kind="gpu", index=index, name=_text(self.call("nvmlDeviceGetName", known, handle)),
                      uuid=uuid, serial=None if serial is None else _text(serial), pci_bus_id=known.pci_bus_id)

    def call(self, name: str, device: Device, *args: Any, absent: frozenset[int] = frozenset()) -> Any:
        """Call NVML's ``name``; None for an ``absent`` code, GpuUnusable or NvmlQueryError otherwise."""
        try:
            return getattr(self._lib, name)(*args)
        except Exception as exc:  # NVMLError and anything a broken binding raises, named at this edge
            code = error_code(exc) if isinstance(exc, getattr(self._lib, "NVMLError", ())) else None
            if code in absent:
                return None
            if code in UNUSABLE:
                raise GpuUnusable(device, describe_error(name, exc), UNUSABLE[code]) from None
            raise NvmlQueryError(device, describe_error(name, exc)) from None

    def clock_event_reasons(self, gpu: Device | int) -> int:
        """The bit mask of why the GPU's clocks are held down right now (throttle reasons)."""
        device = _device(gpu)
        name = "nvmlDeviceGetCurrentClocksEventReasons"
        if getattr(self._lib, name, None) is None:
            name = "nvmlDeviceGetCurrentClocksThrottleReasons"  # the name before driver 535
        return int(self.call(name, device, self._handle(device)))

    def health(self, gpu: Device | int) -> GpuHealth:
        """Every health item NVML has for this GPU; raises GpuUnusable when NVML says it is lost."""
        device = _device(gpu)
        ask = _Asker(self, device, self._handle(device))
        ecc_mode = ask("ecc_enabled", "nvmlDeviceGetEccMode")
        remap = ask(("remapped_rows_pending", "remap_failure"), "nvmlDeviceGetRemappedRows")  # (corr, unc, pending, failed)
        retired = [ask(("retired_pages",), "nvmlDeviceGetRetiredPages", cause) for cause in (RETIRED_BY_SBE, RETIRED_BY_DBE)]
        gen = (ask("pcie_gen", "nvmlDeviceGetCurrPcieLinkGeneration"), ask("pcie_gen", "nvmlDeviceGetMaxPcieLinkGeneration"))
        width = _pcie_width(ask)
        links = [ask("nvlinks_up", "nvmlDeviceGetNvLinkState", link, absent=NO_SUCH_LINK)
                 for link in range(NVLINK_MAX_LINKS)]
        return GpuHealth(
            index=device.index,
            ecc_enabled=None if ecc_mode is None else bool(ecc_mode[0]),
            ecc_uncorrected_volatile=ask("ecc_uncorrected_volatile", "nvmlDeviceGetTotalEccErrors", UNCORRECTED, VOLATILE),
            ecc_uncorrected_aggregate=ask("ecc_uncorrected_aggregate", "nvmlDeviceGetTotalEccErrors", UNCORRECTED, AGGREGATE),
            remapped_rows_pending=None if remap is None else bool(remap[2]),
            remap_failure=None if remap is None else bool(remap[3]),
            retired_pages=None if None in retired else sum(len(pages) for pages in retired),
            retired_pages_pending=_flag(ask("retired_pages_pending", "nvmlDeviceGetRetiredPagesPendingStatus")),
            nvlinks_up=None if all(x is None for x in links) or "nvlinks_up" in ask.unreadable
            else sum(1 for x in links if x),
            pcie_gen=None if None in gen else gen, pcie_width=None if None in width else width,
            temperature_c=ask("temperature_c", "nvmlDeviceGetTemperature", TEMPERATURE_GPU),
            unreadable=dict(ask.unreadable),
        )

    def xid_event_sets(self, gpus: list[Device] | list[int]) -> dict[int, Any]:
        """One NVML event set per GPU watching for critical XIDs (so each event names its GPU)."""
        sets = {}
        for device in map(_device, gpus):
            events = self.call("nvmlEventSetCreate", device)
            self.call("nvmlDeviceRegisterEvents", device, self._handle(device), EVENT_XID_CRITICAL, events)
            sets[device.index] = events
        return sets

    def wait_xid(self, gpu: Device | int, events: Any, timeout_ms: int) -> int | None:
        """The next critical XID in this event set, or None when NVML's wait timed out. Only TIMEOUT
        means "no event": a lost GPU raises GpuUnusable and any other error NvmlQueryError."""
        data = self.call("nvmlEventSetWait_v2", _device(gpu), events, timeout_ms, absent=frozenset({TIMEOUT}))
        return None if data is None else int(data.eventData)

    def _handle(self, device: Device) -> Any:
        return self.call("nvmlDeviceGetHandleByIndex", device, device.index)


class _Asker:
    """Asks NVML for one GPU's health items, remembering which metric each real error made unreadable."""

    def __init__(self, nvml: Nvml, device: Device, handle: Any):
        self.nvml, self.device, self.handle = nvml, device, handle
        self.unreadable: dict[str, str] = {}

    def __call__(self, metrics: str | tuple[str, ...], call: str, *args: Any,
                 absent: frozenset[int] = ABSENT) -> Any:
        try:
            return self.nvml.call(call, self.device, self.handle, *args, absent=absent)
        except NvmlQueryError as exc:
            for metric in (metrics,) if isinstance(metrics, str) else metrics:
                self.unreadable.setdefault(metric, exc.detail)
            return None


def _pcie_width(ask: _Asker) -> tuple[int | None, int | None]:
    """(current, max) lanes. A maximum below one lane (NVML has answered 0 on some virtualised GPUs)
    gives no ratio to judge: the width is named unreadable, never divided by."""
    current = ask("pcie_width_ratio", "nvmlDeviceGetCurrPcieLinkWidth")
    widest = ask("pcie_width_ratio", "nvmlDeviceGetMaxPcieLinkWidth")
    if widest is not None and widest < 1:
        ask.unreadable.setdefault("pcie_width_ratio", f"nvmlDeviceGetMaxPcieLinkWidth: answered {widest} lanes "
                                                      "(expected 1 to 32)")
        return current, None
    return current, widest


def _device(gpu: Device | int) -> Device:
    return gpu if isinstance(gpu, Device) else Device(kind="gpu", index=gpu)


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
