"""Probes: the NVML seam on recorded answers (each NVML error per query) and on this machine's real
(absent) NVML; matching CUDA devices to NVML GPUs by UUID; host facts."""

import importlib.util
import json
import warnings
from pathlib import Path

import pytest

from dhc.kernels import devices as cuda_devices
from dhc.model import Action, Device
from dhc.probes import environment, host
from dhc.probes.nvml import GpuUnusable, Nvml, NvmlQueryError, NvmlUnavailable

DATA = Path(__file__).parent / "data"


@pytest.fixture
def fake_nvml():
    spec = importlib.util.spec_from_file_location("fake_pynvml", Path(__file__).parent / "fakes" / "pynvml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.load_recording(json.loads((DATA / "nvml_p5_h100.json").read_text()))
    return module


def test_gpus_from_a_recorded_p5(fake_nvml):
    with Nvml(fake_nvml) as nvml:
        gpus = nvml.gpus()
        assert (nvml.driver_version(), nvml.cuda_driver_version()) == ("550.90.07", "12.4")
    assert len(gpus) == 8 and [g.index for g in gpus] == list(range(8))
    assert gpus[5].pci_bus_id == "00000000:A8:00.0" and gpus[5].uuid.startswith("GPU-5d7b")
    assert gpus[0].label() == "GPU 0 (GPU-2f6a1c1e-8d0b-4e51-9a3c-6c1b0f7d2a01, serial 1654922012001, PCI 00000000:53:00.0)"


def test_serial_not_supported_is_none(fake_nvml):
    recording = json.loads((DATA / "nvml_p5_h100.json").read_text())
    recording["gpus"][0]["serial"] = None
    fake_nvml.load_recording(recording)
    with Nvml(fake_nvml) as nvml:
        assert nvml.gpus()[0].serial is None


def test_real_pynvml_without_a_driver_says_so():
    pytest.importorskip("pynvml", reason="nvidia-ml-py is a core dependency")
    try:
        with Nvml() as nvml:
            nvml.gpus()
    except NvmlUnavailable as exc:
        assert "not found" in str(exc) or "not loaded" in str(exc)
    else:
        pytest.skip("this machine has a working NVIDIA driver; the no-driver path is covered elsewhere")


def test_software_versions_never_raise_and_skip_torch_import():
    import sys
    had_torch = "torch" in sys.modules
    versions = environment.software_versions(dcgmi=None)
    assert versions["python"] and versions["dhc"]
    assert ("torch" in sys.modules) == had_torch  # read from package metadata, not by importing


def test_host_memory_and_cores(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24641848 kB\nMemFree:        1 kB\n")
    assert host.memory_gib(meminfo) == pytest.approx(23.5, abs=0.01)
    meminfo.write_text("nothing here\n")
    with pytest.raises(ValueError, match="no MemTotal line"):
        host.memory_gib(meminfo)
    assert host.cpu_cores() >= 1
    assert host.cpu_device().kind == "cpu"


def _recording(**gpu_errors):
    data = json.loads((DATA / "nvml_p5_h100.json").read_text())
    for key, value in gpu_errors.items():
        index, call = key.split("__")
        data["gpus"][int(index.removeprefix("gpu"))].setdefault("errors", {})[call] = value
    return data


# (NVML call, the GpuHealth fields it feeds, the metric names dhc records for them)
QUERIES = [
    ("nvmlDeviceGetEccMode", ["ecc_enabled"], ["ecc_enabled"]),
    ("nvmlDeviceGetTotalEccErrors", ["ecc_uncorrected_volatile", "ecc_uncorrected_aggregate"],
     ["ecc_uncorrected_volatile", "ecc_uncorrected_aggregate"]),
    ("nvmlDeviceGetRemappedRows", ["remapped_rows_pending", "remap_failure"], ["remapped_rows_pending", "remap_failure"]),
    ("nvmlDeviceGetNvLinkState", ["nvlinks_up"], ["nvlinks_up"]),
    ("nvmlDeviceGetCurrPcieLinkWidth", ["pcie_width"], ["pcie_width_ratio"]),
    ("nvmlDeviceGetTemperature", ["temperature_c"], ["temperature_c"]),
]


@pytest.mark.parametrize(("call", "fields", "metrics"), QUERIES)
@pytest.mark.parametrize("error", ["NOT_SUPPORTED", "FUNCTION_NOT_FOUND"])
def test_a_query_the_gpu_lacks_is_absent_not_an_error(fake_nvml, call, fields, metrics, error):
    fake_nvml.load_recording(_recording(**{f"gpu2__{call}": error}))
    with Nvml(fake_nvml) as nvml:
        health = nvml.health(2)
    assert all(getattr(health, f) is None for f in fields) and health.unreadable == {}


@pytest.mark.parametrize(("call", "fields", "metrics", "error"), [
    (*query, error) for query in QUERIES for error in ("UNKNOWN", "NO_PERMISSION", "TIMEOUT", "INVALID_ARGUMENT")
    if (query[0], error) != ("nvmlDeviceGetNvLinkState", "INVALID_ARGUMENT")])  # there: no such link (below)
def test_a_query_that_fails_names_the_metric_and_the_nvml_error(fake_nvml, call, fields, metrics, error):
    fake_nvml.load_recording(_recording(**{f"gpu2__{call}": error}))
    with Nvml(fake_nvml) as nvml:
        health = nvml.health(2)
    assert all(getattr(health, f) is None for f in fields)
    assert set(health.unreadable) == set(metrics)
    assert all(why.startswith(f"{call}: NVML_ERROR_{error} (") for why in health.unreadable.values())
    assert health.temperature_c is not None or call == "nvmlDeviceGetTemperature"  # the rest is still read


@pytest.mark.parametrize(("call", "fields", "metrics"), QUERIES)
@pytest.mark.parametrize(("error", "action"), [("GPU_IS_LOST", Action.REPLACE), ("RESET_REQUIRED", Action.REBOOT)])
def test_a_lost_gpu_is_a_finding_never_not_supported(fake_nvml, call, fields, metrics, error, action):
    fake_nvml.load_recording(_recording(**{f"gpu5__{call}": error}))
    with Nvml(fake_nvml) as nvml, pytest.raises(GpuUnusable) as lost:
        nvml.health(Device("gpu", 5, uuid="GPU-5d7b", pci_bus_id="00000000:A8:00.0"))
    assert lost.value.action is action and lost.value.device.index == 5
    assert f"NVML_ERROR_{error}" in str(lost.value) and "PCI 00000000:A8:00.0" in str(lost.value)


def test_nvlink_indices_past_the_gpus_links_are_not_links(fake_nvml):
    recording = _recording()
    recording["gpus"][1].update(nvlinks=12, nvlinks_up=12)  # an A100 has 12 links: 12..17 are INVALID_ARGUMENT
    fake_nvml.load_recording(recording)
    with Nvml(fake_nvml) as nvml:
        health = nvml.health(1)
    assert health.nvlinks_up == 12 and health.unreadable == {}


def test_a_gpu_lost_in_enumeration_is_listed_with_what_is_known(fake_nvml):
    fake_nvml.load_recording(_recording(gpu3__nvmlDeviceGetHandleByIndex="GPU_IS_LOST",
                                        gpu6__nvmlDeviceGetUUID="GPU_IS_LOST"))
    with Nvml(fake_nvml) as nvml:
        gpus = nvml.gpus()
    assert [g.index for g in gpus] == [0, 1, 2, 4, 5, 7]
    assert [(e.device.index, e.device.pci_bus_id, e.action) for e in gpus.lost] == [
        (3, None, Action.REPLACE), (6, "00000000:B9:00.0", Action.REPLACE)]
    assert str(gpus.lost[1]).startswith("GPU 6 (PCI 00000000:B9:00.0) is lost to NVML (fallen off the bus?): "
                                        "nvmlDeviceGetUUID: NVML_ERROR_GPU_IS_LOST (GPU is lost)")


def test_an_enumeration_error_that_is_not_a_lost_gpu_stops_with_its_name(fake_nvml):
    recording = _recording(gpu1__nvmlDeviceGetPciInfo="UNKNOWN")
    fake_nvml.load_recording(recording)
    with Nvml(fake_nvml) as nvml, pytest.raises(NvmlQueryError, match="GPU 1: nvmlDeviceGetPciInfo: NVML_ERROR_UNKNOWN"):
        nvml.gpus()


def test_a_gpu_that_falls_off_between_calls(fake_nvml):
    fake_nvml.load_recording(_recording(gpu0__nvmlDeviceGetTemperature=["ok", "GPU_IS_LOST"]))
    with Nvml(fake_nvml) as nvml:
        assert nvml.health(0).temperature_c == 34
        with pytest.raises(GpuUnusable):
            nvml.health(0)


def test_xid_wait_only_a_timeout_means_no_event(fake_nvml):
    fake_nvml.load_recording(_recording(gpu4__nvmlEventSetWait_v2=["ok", "GPU_IS_LOST"],
                                        gpu5__nvmlEventSetWait_v2="UNKNOWN"))
    with Nvml(fake_nvml) as nvml:
        sets = nvml.xid_event_sets([4, 5])
        assert nvml.wait_xid(4, sets[4], 1) is None  # NVML_ERROR_TIMEOUT: a quiet wait
        with pytest.raises(GpuUnusable, match="GPU 4 is lost"):
            nvml.wait_xid(4, sets[4], 1)
        with pytest.raises(NvmlQueryError, match="nvmlEventSetWait_v2: NVML_ERROR_UNKNOWN"):
            nvml.wait_xid(5, sets[5], 1)


def test_a_binding_that_raises_something_else_is_named(fake_nvml):
    fake_nvml.load_recording(_recording())
    fake_nvml.nvmlDeviceGetTemperature = lambda handle, sensor: 1 / 0
    with Nvml(fake_nvml) as nvml:
        health = nvml.health(0)
    assert "ZeroDivisionError" in health.unreadable["temperature_c"]


# -- CUDA devices by UUID ----------------------------------------------------------------------------
P5 = [Device("gpu", i, uuid=u) for i, u in enumerate(
    ["GPU-2f6a1c1e-8d0b-4e51-9a3c-6c1b0f7d2a01", "GPU-7b9e4d22-31f0-4c8a-b6d2-0e5a9c3f4b02",
     "GPU-c1d8a7e3-5b26-49f4-8e17-3a2f6d9b8c03"])]


def test_cuda_devices_map_by_uuid_not_by_index():
    cuda = ["c1d8a7e3-5b26-49f4-8e17-3a2f6d9b8c03", "2F6A1C1E-8D0B-4E51-9A3C-6C1B0F7D2A01",
            "7b9e4d22-31f0-4c8a-b6d2-0e5a9c3f4b02"]  # CUDA's fastest-first order, torch's spelling
    targets, unseen = cuda_devices.match_by_uuid(P5, cuda)
    assert [(d.index, name) for d, name in targets] == [(0, "cuda:1"), (1, "cuda:2"), (2, "cuda:0")] and unseen == []


def test_a_gpu_cuda_does_not_see_is_named():
    targets, unseen = cuda_devices.match_by_uuid([*P5, Device("gpu", 3, uuid=None)],
                                                 ["2f6a1c1e-8d0b-4e51-9a3c-6c1b0f7d2a01"])
    assert [d.index for d, _ in targets] == [0] and [d.index for d in unseen] == [1, 2, 3]
    message = cuda_devices.unseen_message(unseen, 1)
    assert "NVML lists 3 GPU(s) that CUDA does not see among its 1 device(s)" in message
    assert "GPU 1 (GPU-7b9e4d22" in message and "GPU 3" in message


# -- a maximum PCIe width of 0 lanes -----------------------------------------------------------------
def _inventory_suite():
    path = Path(__file__).parent.parent / "suites" / "stress" / "test_inventory.py"
    spec = importlib.util.spec_from_file_location("dhc_suite_inventory", path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # its @pytest.mark.check is registered by the dhc plugin, not loaded here
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        spec.loader.exec_module(module)
    return module


def test_a_max_pcie_width_of_zero_is_unreadable_never_divided_by(fake_nvml):
    fake_nvml.load_recording(_recording())
    fake_nvml.nvmlDeviceGetMaxPcieLinkWidth = lambda handle: 0
    with Nvml(fake_nvml) as nvml:
        health = nvml.health(4)
    assert health.pcie_width is None and health.temperature_c is not None  # the rest is still read
    assert health.unreadable == {"pcie_width_ratio": "nvmlDeviceGetMaxPcieLinkWidth: answered 0 lanes "
                                                     "(expected 1 to 32)"}
    names = [name for name, _, _ in _inventory_suite().health_measurements(health)]
    assert "pcie_width_ratio" not in names and "temperature_c" in names


def test_health_measurements_leave_out_a_zero_width_and_keep_a_partial_ratio():
    from dhc.probes.nvml import GpuHealth
    suite = _inventory_suite()
    assert suite.health_measurements(GpuHealth(index=0, pcie_width=(16, 0))) == []
    assert suite.health_measurements(GpuHealth(index=0, pcie_width=(8, 16))) == [("pcie_width_ratio", 0.5, "ratio")]
