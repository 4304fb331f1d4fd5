"""Probes: the NVML seam on recorded answers and on this machine's real (absent) NVML; host facts."""

import importlib.util
import json
from pathlib import Path

import pytest

from dhc.probes import environment, host
from dhc.probes.nvml import Nvml, NvmlUnavailable

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
