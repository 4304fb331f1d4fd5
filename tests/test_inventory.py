"""GPU health through the NVML seam on recorded answers, XIDs from the kernel log and NVML events."""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dhc.model import Action
from dhc.probes import xid
from dhc.probes.clocks import ClockEventSampler
from dhc.probes.nvml import Nvml
from dhc.probes.watch import StressWatch

DATA = Path(__file__).parent / "data"
FAKES = Path(__file__).parent / "fakes"

KERNEL_LOG = """\
6,1234,5000000,-;NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.90.07
3,1301,7200000,-;NVRM: Xid (PCI:0000:53:00): 79, pid=0, GPU has fallen off the bus.
3,1302,7300000,-;NVRM: Xid (PCI:0000:b9:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 1, subpartition 0.
4,1303,7400000,-;NVRM: Xid (PCI:0000:a8:00): 13, pid=4242, name=python, Graphics Exception: ESR 0x514648=0x1000f
"""


def recording(**changes_by_gpu):
    data = json.loads((DATA / "nvml_p5_h100.json").read_text())
    for index, changes in changes_by_gpu.items():
        data["gpus"][int(index.removeprefix("gpu"))].update(changes)
    return data


@pytest.fixture
def fake_nvml():
    spec = importlib.util.spec_from_file_location("fake_pynvml_inv", FAKES / "pynvml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def load(data):
        module.load_recording(data)
        return module
    return load


def test_health_of_a_healthy_h100(fake_nvml):
    with Nvml(fake_nvml(recording())) as nvml:
        health = nvml.health(0)
    assert (health.ecc_enabled, health.ecc_uncorrected_volatile, health.remapped_rows_pending) == (True, 0, False)
    assert (health.nvlinks_up, health.pcie_width, health.pcie_gen, health.temperature_c) == (18, (16, 16), (1, 5), 34)
    assert health.retired_pages is None and health.retired_pages_pending is None  # Hopper remaps rows instead


def test_health_reports_faults_and_unsupported(fake_nvml):
    data = recording(gpu3={"remap_pending": 1, "nvlinks_up": 16, "pcie_width": 8, "ecc_mode": "not supported"})
    with Nvml(fake_nvml(data)) as nvml:
        health = nvml.health(3)
    assert (health.remapped_rows_pending, health.nvlinks_up, health.pcie_width) == (True, 16, (8, 16))
    assert health.ecc_enabled is None


def test_kernel_log_xids_and_their_actions():
    events = xid.parse_kernel_log(KERNEL_LOG)
    assert [(e.xid, e.pci_bus_id, e.action) for e in events] == [
        (79, "0000:53:00", Action.REPLACE), (48, "0000:b9:00", Action.REBOOT), (13, "0000:a8:00", Action.NONE)]
    assert events[0].text == "pid=0, GPU has fallen off the bus." and "fallen off" in events[0].meaning
    assert xid.XidEvent(999, None, None, "", "kernel log").action is Action.NONE


@pytest.mark.parametrize(("kernel", "nvml", "same"), [
    ("0000:53:00", "00000000:53:00.0", True), ("0000:b9:00", "00000000:B9:00.0", True),
    ("0000:53:00", "00000000:64:00.0", False), ("53:00", "00000000:53:00.0", True), ("zz", "00000000:53:00.0", False),
    (None, "00000000:53:00.0", False),
])
def test_pci_ids_match_across_kernel_and_nvml(kernel, nvml, same):
    assert xid.same_pci_device(kernel, nvml) is same


def test_kernel_log_unreadable_is_none(tmp_path):
    assert xid.read_kernel_log(tmp_path / "missing") is None
    log = tmp_path / "kmsg"
    log.write_text(KERNEL_LOG)
    assert xid.read_kernel_log(log) == KERNEL_LOG


def test_xid_events_and_clock_slowdowns_are_watched(fake_nvml):
    module = fake_nvml(recording(gpu3={"xid_events": [79]}, gpu6={"clock_event_reasons": 0x40 | 0x4}))
    with StressWatch([0, 3, 6], nvml=lambda: Nvml(module)) as watch:
        deadline = time.monotonic() + 5
        while not watch.xids.events and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.6)  # at least one clock sample
    faults = {(f.gpu, f.action) for f in watch.faults()}
    assert faults == {(3, Action.REPLACE), (6, Action.REPLACE)}
    assert any("fallen off the bus" in f.message for f in watch.faults())
    assert watch.problems() == []


def test_clock_sampler_reports_a_broken_nvml():
    sampler = ClockEventSampler([0], nvml=lambda: Nvml(object()))
    with sampler:
        time.sleep(0.1)
    assert sampler.error and sampler.hardware_slowdowns() == {}


# -- end to end -------------------------------------------------------------------------------------
def run_inventory(tmp_path, data, kernel_log=""):
    (tmp_path / "nvml.json").write_text(json.dumps(data))
    (tmp_path / "kmsg").write_text(kernel_log)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))}
    env.update(PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(tmp_path / "nvml.json"), DHC_IMDS="off",
               DHC_KERNEL_LOG=str(tmp_path / "kmsg"), DHC_INSTANCE_ID="i-0abc", DHC_REGION="us-east-2")
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--instance-type", "p5.48xlarge", "--check",
                           "stress.inventory", "--out", str(tmp_path / "r")], capture_output=True, text=True,
                          env=env, timeout=120)
    return proc, json.loads((tmp_path / "r" / "report.json").read_text())


@pytest.mark.slow
def test_inventory_names_each_sick_gpu_and_its_action(tmp_path, validate_report):
    data = recording(gpu2={"remap_pending": 1}, gpu5={"nvlinks_up": 16}, gpu7={"ecc_uncorrected_volatile": 3})
    proc, report = run_inventory(tmp_path, data, KERNEL_LOG)
    validate_report(report)
    assert proc.returncode == 1
    found = {(r["metric"] or r["message"][:6], r["device"]["index"] if r["device"] else None, r["action"])
             for r in report["verdict"]["reasons"]}
    assert found == {("remapped_rows_pending", 2, "Reboot"), ("nvlinks_up", 5, "Reboot"),
                     ("ecc_uncorrected_volatile", 7, "Reboot"), ("XID 79", 0, "Replace"), ("XID 48", 6, "Reboot")}
    assert report["verdict"]["action"] == "Replace"


@pytest.mark.slow
def test_healthy_inventory_passes_with_health_recorded(tmp_path):
    proc, report = run_inventory(tmp_path, recording())
    assert proc.returncode == 0, proc.stdout
    names = {m["name"] for m in report["checks"][0]["measurements"]}
    assert {"ecc_enabled", "nvlinks_up", "pcie_width_ratio", "temperature_c", "pcie_gen"} <= names


@pytest.mark.slow
def test_gpu_type_with_a_cpu_only_torch_is_incomplete_not_passed(tmp_path):
    (tmp_path / "nvml.json").write_text(json.dumps(recording()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))}
    env.update(PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(tmp_path / "nvml.json"), DHC_IMDS="off")
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--instance-type", "p5.48xlarge", "--check",
                           "stress.gemm", "--check", "stress.memtest", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 3
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [c["status"] for c in report["checks"]] == ["Incomplete", "Incomplete"]
    assert all("torch has no CUDA" in c["reason"] for c in report["checks"])


def test_a_watch_nvml_refuses_is_reported(fake_nvml):
    with StressWatch([0], nvml=lambda: Nvml(object())) as watch:
        time.sleep(0.1)
    assert watch.watching() == {"clock_events_watched": 0, "xid_events_watched": 0}
    assert len(watch.problems()) == 2 and StressWatch([]).watching() == {}
