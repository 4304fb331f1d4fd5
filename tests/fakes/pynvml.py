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
