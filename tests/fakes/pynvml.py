"""A stand-in for the ``pynvml`` module that answers from a recording (tests only).

Put ``tests/fakes`` first on PYTHONPATH and name the recording in FAKE_NVML_FILE; without that
variable it behaves like a machine with no NVIDIA driver. The same names and error classes as
pynvml, so dhc's real NVML seam runs unchanged on top of it.
"""

import json
import os
from types import SimpleNamespace


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 (pynvml's spelling)
    pass


class NVMLError_DriverNotLoaded(NVMLError):  # noqa: N801
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801
    pass


_state = {"recording": None}


def load_recording(recording):
    """In-process tests hand the recording over directly."""
    _state["recording"] = recording


def _recording():
    if _state["recording"] is None:
        path = os.environ.get("FAKE_NVML_FILE")
        if not path:
            raise NVMLError_LibraryNotFound("NVML Shared Library Not Found")
        with open(path) as handle:
            _state["recording"] = json.load(handle)
    return _state["recording"]


def nvmlInit():  # noqa: N802
    _recording()


def nvmlShutdown():  # noqa: N802
    pass


def nvmlSystemGetDriverVersion():  # noqa: N802
    return _recording()["driver_version"]


def nvmlSystemGetCudaDriverVersion():  # noqa: N802
    return _recording()["cuda_driver_version"]


def nvmlDeviceGetCount():  # noqa: N802
    return len(_recording()["gpus"])


def nvmlDeviceGetHandleByIndex(index):  # noqa: N802
    return _recording()["gpus"][index]


def nvmlDeviceGetName(handle):  # noqa: N802
    return handle["name"]


def nvmlDeviceGetUUID(handle):  # noqa: N802
    return handle["uuid"]


def nvmlDeviceGetSerial(handle):  # noqa: N802
    if handle.get("serial") is None:
        raise NVMLError_NotSupported("Not Supported")
    return handle["serial"]


def nvmlDeviceGetPciInfo(handle):  # noqa: N802
    return SimpleNamespace(busId=handle["bus_id"])


def nvmlDeviceGetCurrentClocksEventReasons(handle):  # noqa: N802
    return handle.get("clock_event_reasons", 0)


class NVMLError_Timeout(NVMLError):  # noqa: N801
    pass


def _supported(handle, key, default):
    value = handle.get(key, default)
    if value == "not supported":
        raise NVMLError_NotSupported("Not Supported")
    return value


def nvmlDeviceGetEccMode(handle):  # noqa: N802
    mode = _supported(handle, "ecc_mode", 1)
    return [mode, mode]


def nvmlDeviceGetTotalEccErrors(handle, error_type, counter_type):  # noqa: N802
    key = "ecc_uncorrected_volatile" if counter_type == 0 else "ecc_uncorrected_aggregate"
    return _supported(handle, key, 0) if error_type == 1 else 0


def nvmlDeviceGetRemappedRows(handle):  # noqa: N802
    return [0, 0, _supported(handle, "remap_pending", 0), _supported(handle, "remap_failure", 0)]


def nvmlDeviceGetRetiredPages(handle, cause):  # noqa: N802
    return list(range(_supported(handle, "retired_pages", "not supported")))


def nvmlDeviceGetRetiredPagesPendingStatus(handle):  # noqa: N802
    return _supported(handle, "retired_pages_pending", "not supported")


def nvmlDeviceGetCurrPcieLinkGeneration(handle):  # noqa: N802
    return _supported(handle, "pcie_gen", 1)  # idle GPUs drop their link generation


def nvmlDeviceGetMaxPcieLinkGeneration(handle):  # noqa: N802
    return 5


def nvmlDeviceGetCurrPcieLinkWidth(handle):  # noqa: N802
    return _supported(handle, "pcie_width", 16)


def nvmlDeviceGetMaxPcieLinkWidth(handle):  # noqa: N802
    return 16


def nvmlDeviceGetNvLinkState(handle, link):  # noqa: N802
    if link >= 18:
        raise NVMLError_NotSupported("Not Supported")
    return 1 if link < _supported(handle, "nvlinks_up", 18) else 0


def nvmlDeviceGetTemperature(handle, sensor):  # noqa: N802
    return _supported(handle, "temperature", 34)


def nvmlEventSetCreate():  # noqa: N802
    return {"handles": []}


def nvmlDeviceRegisterEvents(handle, event_types, event_set):  # noqa: N802
    event_set["handles"].append(handle)


def nvmlEventSetWait_v2(event_set, timeout_ms):  # noqa: N802
    import time
    for handle in event_set["handles"]:
        pending = handle.setdefault("xid_events", [])
        if pending:
            return SimpleNamespace(device=handle, eventType=0x8, eventData=pending.pop(0))
    time.sleep(timeout_ms / 1000)
    raise NVMLError_Timeout("Timeout")
