"""A stand-in for the ``pynvml`` module that answers from a recording (tests only).

Put ``tests/fakes`` first on PYTHONPATH and name the recording in FAKE_NVML_FILE; without that
variable it behaves like a machine with no NVIDIA driver. The same names and error classes as
pynvml (``NVMLError(code)`` becomes the subclass for that code, the code in ``.value``), so dhc's
real NVML seam runs unchanged on top of it.

Failures are scripted in the recording, as real NVML raises them:
- ``"errors": {"<nvml function>": "GPU_IS_LOST"}`` on a GPU (or at the top level for calls that
  take no GPU, such as ``nvmlDeviceGetCount``) makes every such call on that GPU raise that error;
- a list scripts calls in order and its last entry repeats: ``["ok", "ok", "GPU_IS_LOST"]`` answers
  twice, then the GPU is lost for good (a GPU that falls off the bus in the middle of a run);
- ``"count": 7`` makes ``nvmlDeviceGetCount`` answer fewer GPUs than the recording lists.
"""

import json
import os
import threading
import time
from types import SimpleNamespace

CODES = {
    "INVALID_ARGUMENT": 2, "NOT_SUPPORTED": 3, "NO_PERMISSION": 4, "DRIVER_NOT_LOADED": 9, "TIMEOUT": 10,
    "LIBRARY_NOT_FOUND": 12, "FUNCTION_NOT_FOUND": 13, "GPU_IS_LOST": 15, "RESET_REQUIRED": 16, "UNKNOWN": 999,
}
MESSAGES = {
    2: "Invalid Argument", 3: "Not Supported", 4: "Insufficient Permissions", 9: "Driver Not Loaded",
    10: "Timeout", 12: "NVML Shared Library Not Found", 13: "Function Not Found", 15: "GPU is lost",
    16: "GPU requires restart", 999: "Unknown Error",
}


class NVMLError(Exception):
    _by_code: dict = {}

    def __new__(cls, value):
        if cls is NVMLError:
            cls = NVMLError._by_code.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value):
        super().__init__(value)

    def __str__(self):
        return MESSAGES.get(self.value, f"NVML Error with code {self.value}")


def _error_class(name, code):
    return type(name, (NVMLError,), {"__new__": lambda cls, *args: NVMLError.__new__(cls, code)})


NVMLError_InvalidArgument = _error_class("NVMLError_InvalidArgument", 2)
NVMLError_NotSupported = _error_class("NVMLError_NotSupported", 3)
NVMLError_NoPermission = _error_class("NVMLError_NoPermission", 4)
NVMLError_DriverNotLoaded = _error_class("NVMLError_DriverNotLoaded", 9)
NVMLError_Timeout = _error_class("NVMLError_Timeout", 10)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", 12)
NVMLError_FunctionNotFound = _error_class("NVMLError_FunctionNotFound", 13)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", 15)
NVMLError_ResetRequired = _error_class("NVMLError_ResetRequired", 16)
NVMLError_Unknown = _error_class("NVMLError_Unknown", 999)
NVMLError._by_code.update({cls("x").value: cls for cls in (
    NVMLError_InvalidArgument, NVMLError_NotSupported, NVMLError_NoPermission, NVMLError_DriverNotLoaded,
    NVMLError_Timeout, NVMLError_LibraryNotFound, NVMLError_FunctionNotFound, NVMLError_GpuIsLost,
    NVMLError_ResetRequired, NVMLError_Unknown)})

_state = {"recording": None}
_lock = threading.Lock()  # the watches call from their own threads


def load_recording(recording):
    """In-process tests hand the recording over directly."""
    _state["recording"] = recording


def _recording():
    if _state["recording"] is None:
        path = os.environ.get("FAKE_NVML_FILE")
        if not path:
            raise NVMLError(CODES["LIBRARY_NOT_FOUND"])
        with open(path) as handle:
            _state["recording"] = json.load(handle)
    return _state["recording"]


def _scripted(where, call):
    """Raise what the recording scripts for this call on this GPU (or globally), if anything."""
    script = where.get("errors", {}).get(call)
    if script is None:
        return
    with _lock:
        if isinstance(script, list):
            outcome = script.pop(0) if len(script) > 1 else script[0]
        else:
            outcome = script
    if outcome != "ok":
        raise NVMLError(CODES[outcome])


def nvmlInit():  # noqa: N802
    _recording()


def nvmlShutdown():  # noqa: N802
    pass


def nvmlSystemGetDriverVersion():  # noqa: N802
    return _recording()["driver_version"]


def nvmlSystemGetCudaDriverVersion():  # noqa: N802
    return _recording()["cuda_driver_version"]


def nvmlDeviceGetCount():  # noqa: N802
    _scripted(_recording(), "nvmlDeviceGetCount")
    return _recording().get("count", len(_recording()["gpus"]))


def nvmlDeviceGetHandleByIndex(index):  # noqa: N802
    gpus = _recording()["gpus"]
    if not 0 <= index < len(gpus):
        raise NVMLError(CODES["INVALID_ARGUMENT"])
    _scripted(gpus[index], "nvmlDeviceGetHandleByIndex")
    return gpus[index]


def _answer(call):
    """Wrap a per-GPU query so the recording can script its failures."""
    def wrapper(handle, *args):
        _scripted(handle, call.__name__)
        return call(handle, *args)
    wrapper.__name__ = call.__name__
    return wrapper


def _supported(handle, key, default):
    value = handle.get(key, default)
    if value == "not supported":
        raise NVMLError(CODES["NOT_SUPPORTED"])
    return value


@_answer
def nvmlDeviceGetName(handle):  # noqa: N802
    return handle["name"]


@_answer
def nvmlDeviceGetUUID(handle):  # noqa: N802
    return handle["uuid"]


@_answer
def nvmlDeviceGetSerial(handle):  # noqa: N802
    if handle.get("serial") is None:
        raise NVMLError(CODES["NOT_SUPPORTED"])
    return handle["serial"]


@_answer
def nvmlDeviceGetPciInfo(handle):  # noqa: N802
    return SimpleNamespace(busId=handle["bus_id"])


@_answer
def nvmlDeviceGetCurrentClocksEventReasons(handle):  # noqa: N802
    return handle.get("clock_event_reasons", 0)


@_answer
def nvmlDeviceGetEccMode(handle):  # noqa: N802
    mode = _supported(handle, "ecc_mode", 1)
    return [mode, mode]


@_answer
def nvmlDeviceGetTotalEccErrors(handle, error_type, counter_type):  # noqa: N802
    key = "ecc_uncorrected_volatile" if counter_type == 0 else "ecc_uncorrected_aggregate"
    return _supported(handle, key, 0) if error_type == 1 else 0


@_answer
def nvmlDeviceGetRemappedRows(handle):  # noqa: N802
    return [0, 0, _supported(handle, "remap_pending", 0), _supported(handle, "remap_failure", 0)]


@_answer
def nvmlDeviceGetRetiredPages(handle, cause):  # noqa: N802
    return list(range(_supported(handle, "retired_pages", "not supported")))


@_answer
def nvmlDeviceGetRetiredPagesPendingStatus(handle):  # noqa: N802
    return _supported(handle, "retired_pages_pending", "not supported")


@_answer
def nvmlDeviceGetCurrPcieLinkGeneration(handle):  # noqa: N802
    return _supported(handle, "pcie_gen", 1)  # idle GPUs drop their link generation


@_answer
def nvmlDeviceGetMaxPcieLinkGeneration(handle):  # noqa: N802
    return 5


@_answer
def nvmlDeviceGetCurrPcieLinkWidth(handle):  # noqa: N802
    return _supported(handle, "pcie_width", 16)


@_answer
def nvmlDeviceGetMaxPcieLinkWidth(handle):  # noqa: N802
    return 16


@_answer
def nvmlDeviceGetNvLinkState(handle, link):  # noqa: N802
    if link >= handle.get("nvlinks", 18):  # H100 has 18 links; recent drivers answer INVALID_ARGUMENT past them
        raise NVMLError(CODES["INVALID_ARGUMENT"])
    return 1 if link < _supported(handle, "nvlinks_up", 18) else 0


@_answer
def nvmlDeviceGetTemperature(handle, sensor):  # noqa: N802
    return _supported(handle, "temperature", 34)


def nvmlEventSetCreate():  # noqa: N802
    return {"handles": []}


@_answer
def nvmlDeviceRegisterEvents(handle, event_types, event_set):  # noqa: N802
    event_set["handles"].append(handle)


def nvmlEventSetWait_v2(event_set, timeout_ms):  # noqa: N802
    for handle in event_set["handles"]:
        _scripted(handle, "nvmlEventSetWait_v2")
        with _lock:
            pending = handle.setdefault("xid_events", [])
            xid = pending.pop(0) if pending else None
        if xid is not None:
            return SimpleNamespace(device=handle, eventType=0x8, eventData=xid)
    time.sleep(timeout_ms / 1000)
    raise NVMLError(CODES["TIMEOUT"])
