"""GPU health through the NVML seam on recorded answers, XIDs from the kernel log and NVML events, and the
inventory check end to end with NVML failing as real NVML does (query errors, lost GPUs)."""

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
KMSG = DATA / "kmsg"
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
    assert events[0].text == "GPU has fallen off the bus." and "fallen off" in events[0].meaning


@pytest.mark.parametrize("style", ["raw_kmsg", "dmesg", "dmesg_T", "syslog", "journald_iso"])
def test_every_timestamp_style_parses_alike(style):
    events = xid.parse_kernel_log((KMSG / f"{style}.txt").read_text())
    assert [(e.xid, e.pci_bus_id, e.action, e.caused_by) for e in events] == [
        (79, "0000:53:00", Action.REPLACE, None), (48, "0000:b9:00", Action.REBOOT, None),
        (13, "0000:a8:00", Action.NONE, None)]
    assert events[0].text == "GPU has fallen off the bus."  # pid= and name= are dropped where present
    assert events[1].text.startswith("An uncorrectable double bit error")  # and none is needed


@pytest.mark.parametrize("style", ["dmesg", "journald"])
def test_fallen_off_the_bus_without_an_xid_number_counts_as_79(style):
    events = xid.parse_kernel_log((KMSG / f"fallen_off_multiline_{style}.txt").read_text())
    assert [(e.xid, e.pci_bus_id, e.action) for e in events] == [(79, "0000:b9:00.0", Action.REPLACE)]
    assert "printed no XID number" in events[0].text and "fallen off the bus" in events[0].describe()


def test_fallen_off_the_bus_beside_its_xid_79_counts_once_and_154_names_the_drivers_action():
    events = xid.parse_kernel_log((KMSG / "fallen_off_with_xid.txt").read_text())
    assert [(e.xid, e.action) for e in events] == [(79, Action.REPLACE), (154, Action.REBOOT)]
    assert events[1].meaning == "the driver asks for: node reboot"


def test_sxids_stay_out_of_xids_and_a_cause_names_the_earlier_xid():
    text = (KMSG / "sxid_and_causes.txt").read_text()
    events = xid.parse_kernel_log(text)
    assert [(e.xid, e.caused_by, e.action) for e in events] == [
        (149, None, Action.REBOOT), (154, None, Action.REBOOT), (45, 149, Action.NONE)]
    assert events[0].pci_bus_id == "0018:01:00" and events[1].meaning == "the driver asks for: drain and reset"
    assert events[2].describe() == "XID 45 (preemptive cleanup after an earlier error, caused by previous XID 149)"
    sxids = xid.parse_sxids(text)
    assert [(s.sxid, s.pci_bus_id) for s in sxids] == [(20034, "0000:c5:00.0")] * 2
    assert sxids[0].text == "Fatal, Link 46 LTSSM Fault Up"


def test_an_unknown_xid_is_reported_as_unknown_never_as_no_action():
    events = xid.parse_kernel_log((KMSG / "unknown_xid.txt").read_text())
    assert [(e.xid, e.pci_bus_id, e.known, e.action) for e in events] == [
        (201, "0000:64:00", False, Action.REBOOT), (154, None, True, Action.REBOOT)]
    assert "unknown, look it up" in events[0].meaning and "read 2025-10-29" in events[0].meaning
    assert events[1].meaning == "the driver asks for: a recovery action dhc cannot read"


def test_the_catalogue_carries_its_source_and_recent_xids():
    from dhc.probes import xid_catalogue
    assert "analyzing-xid-catalog" in xid_catalogue.SOURCE
    assert {x: xid_catalogue.lookup(x).action for x in (79, 119, 140, 145, 149, 64, 13, 94)} == {
        79: Action.REPLACE, 119: Action.REBOOT, 140: Action.REBOOT, 145: Action.REBOOT, 149: Action.REBOOT,
        64: Action.REPLACE, 13: Action.NONE, 94: Action.NONE}
    assert xid_catalogue.lookup(1) is None  # "Unused" on current GPUs: unknown if ever seen


def test_kmsg_escaped_newlines_split_into_messages():
    record = "3,1,1,-;NVRM: The NVIDIA GPU 0000:b9:00.0\\x0aNVRM: fallen off the bus and is not responding.\n"
    assert [(e.xid, e.pci_bus_id) for e in xid.parse_kernel_log(record)] == [(79, "0000:b9:00.0")]


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
        deadline = time.monotonic() + 10
        while not (watch.xids.events and 6 in watch.clocks.hardware_slowdowns()) and time.monotonic() < deadline:
            time.sleep(0.05)
    faults = {(f.gpu, f.action) for f in watch.faults()}
    assert faults == {(3, Action.REPLACE), (6, Action.REPLACE)}
    assert any("fallen off the bus" in f.message for f in watch.faults())
    assert watch.problems() == []


def test_clock_sampler_reports_a_broken_nvml():
    sampler = ClockEventSampler([0], nvml=lambda: Nvml(object()))
    with sampler:
        pass  # leaving the block joins the watch thread, which has met the broken NVML by then
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
        pass  # leaving the block joins both watch threads
    assert watch.watching() == {"clock_events_watched": 0, "xid_events_watched": 0}
    assert len(watch.problems()) == 2 and StressWatch([]).watching() == {}


def test_the_xid_watch_names_a_gpu_lost_mid_stress_and_keeps_watching_the_others(fake_nvml):
    module = fake_nvml(recording(gpu3={"errors": {"nvmlEventSetWait_v2": ["ok", "GPU_IS_LOST"],
                                                  "nvmlDeviceGetCurrentClocksEventReasons": ["ok", "GPU_IS_LOST"]}},
                                 gpu6={"xid_events": [48]}))
    with StressWatch([0, 3, 6], nvml=lambda: Nvml(module)) as watch:
        deadline = time.monotonic() + 10
        while not (3 in watch.xids.lost and 3 in watch.clocks.lost and watch.xids.events) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
    faults = sorted((f.gpu, f.action, f.message) for f in watch.faults())
    assert [(gpu, action) for gpu, action, _ in faults] == [(3, Action.REPLACE), (6, Action.REBOOT)]
    assert "GPU 3 is lost to NVML" in faults[0][2] and "NVML_ERROR_GPU_IS_LOST" in faults[0][2]
    assert watch.problems() == [] and watch.watching() == {"clock_events_watched": 1, "xid_events_watched": 1}


def test_an_xid_wait_error_stops_the_watch_visibly_never_as_no_event(fake_nvml):
    module = fake_nvml(recording(gpu0={"errors": {"nvmlEventSetWait_v2": "UNKNOWN"}}))
    with StressWatch([0], nvml=lambda: Nvml(module)) as watch:
        deadline = time.monotonic() + 10
        while watch.xids.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert watch.watching()["xid_events_watched"] == 0
    assert "nvmlEventSetWait_v2: NVML_ERROR_UNKNOWN" in watch.problems()[0]


# -- the inventory end to end, NVML failing as real NVML does ---------------------------------------
def _reasons(report):
    return {(r["status"], r["metric"], r["device"]["index"] if r["device"] else None, r["action"])
            for r in report["verdict"]["reasons"]}


@pytest.mark.slow
def test_inventory_with_an_ecc_query_erroring_is_incomplete_naming_it(tmp_path):
    proc, report = run_inventory(tmp_path, recording(gpu4={"errors": {"nvmlDeviceGetTotalEccErrors": "UNKNOWN"}}))
    assert proc.returncode == 3, proc.stdout
    check = report["checks"][0]
    assert check["status"] == "Incomplete"
    assert check["reason"].startswith("NVML could not read 2 health item(s): ecc_uncorrected_volatile on GPU 4 "
                                      "(GPU-9a2c5e81")
    assert "PCI 00000000:97:00.0): nvmlDeviceGetTotalEccErrors: NVML_ERROR_UNKNOWN (Unknown Error)" in check["reason"]


@pytest.mark.slow
def test_inventory_with_a_gpu_lost_in_its_health_fails_replace_on_that_gpu(tmp_path, validate_report):
    proc, report = run_inventory(tmp_path, recording(gpu2={"errors": {"nvmlDeviceGetRemappedRows": "GPU_IS_LOST"}}))
    validate_report(report)
    assert proc.returncode == 1
    assert _reasons(report) == {("Failed", None, 2, "Replace")}
    message = report["verdict"]["reasons"][0]["message"]
    assert "GPU 2 (GPU-c1d8a7e3" in message and "serial 1654922012003" in message and "GPU_IS_LOST" in message
    assert report["verdict"]["action"] == "Replace"


@pytest.mark.slow
def test_inventory_with_a_gpu_lost_in_enumeration_fails_replace_naming_it(tmp_path, validate_report):
    proc, report = run_inventory(tmp_path, recording(gpu5={"errors": {"nvmlDeviceGetHandleByIndex": "GPU_IS_LOST"}}))
    validate_report(report)
    assert proc.returncode == 1
    assert _reasons(report) == {("Failed", None, 5, "Replace"), ("Failed", "gpu_count", None, "Replace")}
    lost = next(r for r in report["verdict"]["reasons"] if r["metric"] is None)
    assert lost["message"].startswith("GPU 5 is lost to NVML (fallen off the bus?): nvmlDeviceGetHandleByIndex: "
                                      "NVML_ERROR_GPU_IS_LOST")


@pytest.mark.slow
def test_inventory_with_a_gpu_missing_at_boot_names_its_pci_from_the_kernel_log(tmp_path):
    data = recording()
    data["count"] = 7  # the driver's probe failed for the eighth GPU
    data["gpus"] = [g for g in data["gpus"] if g["bus_id"] != "00000000:B9:00.0"]
    proc, report = run_inventory(tmp_path, data, (KMSG / "fallen_off_multiline_journald.txt").read_text())
    assert proc.returncode == 1
    assert _reasons(report) == {("Failed", None, None, "Replace"), ("Failed", "gpu_count", None, "Replace")}
    xid79 = next(r for r in report["verdict"]["reasons"] if r["metric"] is None)["message"]
    assert xid79.startswith("XID 79 (GPU has fallen off the bus) in the kernel log since boot on PCI 0000:b9:00.0")


@pytest.mark.slow
def test_inventory_passes_with_a_metric_the_gpu_does_not_support_left_out(tmp_path):
    data = recording(gpu1={"ecc_mode": "not supported", "errors": {"nvmlDeviceGetTemperature": "FUNCTION_NOT_FOUND"}})
    proc, report = run_inventory(tmp_path, data, (KMSG / "sxid_and_causes.txt").read_text().split("NVRM")[0])
    assert proc.returncode == 0, proc.stdout
    measured = {(m["name"], m["device"]["index"] if m["device"] else None) for m in report["checks"][0]["measurements"]}
    assert ("ecc_enabled", 0) in measured and ("ecc_enabled", 1) not in measured and ("temperature_c", 1) not in measured
    assert ("sxid_in_kernel_log", None) in measured  # an NVSwitch error is reported, not judged as an XID


@pytest.mark.slow
def test_inventory_fails_on_an_unknown_xid_asking_to_look_it_up(tmp_path):
    proc, report = run_inventory(tmp_path, recording(), (KMSG / "unknown_xid.txt").read_text())
    assert proc.returncode == 1
    messages = [r["message"] for r in report["verdict"]["reasons"]]
    assert any(m.startswith("XID 201 (not in dhc's XID catalogue") and "look it up" in m for m in messages)
    assert {r["device"]["index"] for r in report["verdict"]["reasons"] if r["device"]} == {1}


@pytest.mark.slow
def test_an_nvml_error_listing_the_gpus_is_incomplete_naming_the_call(tmp_path):
    proc, report = run_inventory(tmp_path, recording(gpu1={"errors": {"nvmlDeviceGetPciInfo": "NO_PERMISSION"}}))
    assert proc.returncode == 3
    assert report["checks"][0]["status"] == "Incomplete"
    assert "GPU 1: nvmlDeviceGetPciInfo: NVML_ERROR_NO_PERMISSION (Insufficient Permissions)" in \
        report["checks"][0]["reason"]


@pytest.mark.slow
def test_a_lost_gpu_keeps_the_node_failed_replace_whatever_the_other_checks_say(tmp_path):
    (tmp_path / "nvml.json").write_text(json.dumps(recording(gpu5={"errors": {"nvmlDeviceGetHandleByIndex":
                                                                              "GPU_IS_LOST"}})))
    (tmp_path / "kmsg").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))}
    env.update(PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(tmp_path / "nvml.json"), DHC_IMDS="off",
               DHC_KERNEL_LOG=str(tmp_path / "kmsg"))
    checks = ["stress.inventory", "stress.gemm", "stress.memtest", "stress.dcgm", "connectivity.allreduce"]
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--instance-type", "p5.48xlarge",
                           *[a for c in checks for a in ("--check", c)], "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env, timeout=240)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert proc.returncode == 1
    # every GPU check names the lost GPU first, so it is Failed/Replace even where it then cannot run
    # (no CUDA torch, no dcgmi here); why it stopped is kept beside the fault
    assert {c["check"]: (c["status"], c["action"]) for c in report["checks"]} == dict.fromkeys(checks,
                                                                                          ("Failed", "Replace"))
    for check in report["checks"]:
        lost = [f for f in check["findings"] if f["status"] == "Failed" and f["device"]]  # inventory: gpu_count 7 too
        assert [(f["device"]["index"], f["action"]) for f in lost] == [(5, "Replace")], check["check"]
        assert "GPU 5" in lost[0]["message"] and "NVML_ERROR_GPU_IS_LOST" in lost[0]["message"]
    stopped = {c["check"]: c["findings"][-1]["message"] for c in report["checks"] if c["check"] != "stress.inventory"}
    assert "torch has no CUDA" in stopped["stress.gemm"] and "torch has no CUDA" in stopped["stress.memtest"]
    assert "not on PATH" in stopped["stress.dcgm"]
    assert all(m.startswith("the check then stopped before it finished: ") for m in stopped.values())
    assert (report["verdict"]["status"], report["verdict"]["action"]) == ("Failed", "Replace")


# -- a watch NVML stopped early cannot let the stress pass -------------------------------------------
def _recorder(check="stress.gemm"):
    from dhc import thresholds
    from dhc.plugin.recorder import CheckRecorder
    return CheckRecorder(check, thresholds.load().resolve("p5.48xlarge"))


def _outcome(recorder, raised):
    from dhc.plugin import outcomes
    return outcomes.result_from_call(recorder.check, "stress", pytest.ExceptionInfo.from_exception(raised),
                                     recorder, None, "2026-01-01T00:00:00Z", 1.0, "suites/stress/test_x.py::t")


def _watch_until(module, indices, ready):
    with StressWatch(indices, nvml=lambda: Nvml(module)) as watch:
        deadline = time.monotonic() + 10
        while not ready(watch) and time.monotonic() < deadline:
            time.sleep(0.05)
    return watch


def test_a_watch_stopped_by_an_nvml_error_makes_the_stress_incomplete_naming_it(fake_nvml):
    from dhc.errors import CheckIncomplete
    from dhc.model import Device, Status
    module = fake_nvml(recording(gpu0={"errors": {"nvmlEventSetWait_v2": "UNKNOWN"}}))
    watch = _watch_until(module, [0], lambda w: w.xids.error is not None)
    recorder = _recorder()
    recorder.record("tflops_bf16", 900.0, "TFLOP/s", Device("gpu", 0))  # the burn itself went well
    with pytest.raises(CheckIncomplete) as stopped:
        watch.conclude(recorder, {0: Device("gpu", 0)})
    assert "XID event watch stopped: GPU 0: nvmlEventSetWait_v2: NVML_ERROR_UNKNOWN (Unknown Error)" in str(stopped.value)
    assert "may have gone unseen" in str(stopped.value)
    assert {m.name: m.value for m in recorder.measurements if m.name.endswith("_watched")} == {
        "clock_events_watched": 1.0, "xid_events_watched": 0.0}
    result = _outcome(recorder, stopped.value)
    assert result.status is Status.INCOMPLETE and "nvmlEventSetWait_v2: NVML_ERROR_UNKNOWN" in result.reason


def test_a_fault_the_watch_saw_still_fails_the_stress_when_another_watch_stopped(fake_nvml):
    from dhc.errors import CheckIncomplete
    from dhc.model import Device, Status
    module = fake_nvml(recording(gpu0={"errors": {"nvmlEventSetWait_v2": "UNKNOWN"}},
                                 gpu6={"clock_event_reasons": 0x40}))  # HW slowdown on GPU 6
    watch = _watch_until(module, [0, 6], lambda w: w.xids.error is not None and 6 in w.clocks.hardware_slowdowns())
    recorder = _recorder()
    with pytest.raises(CheckIncomplete) as stopped:
        watch.conclude(recorder, {0: Device("gpu", 0), 6: Device("gpu", 6, uuid="GPU-66")})
    result = _outcome(recorder, stopped.value)
    assert (result.status, result.action) == (Status.FAILED, Action.REPLACE)
    failed = [f for f in result.findings if f.status is Status.FAILED]
    assert [(f.device.uuid, f.message.startswith("clocks held down")) for f in failed] == [("GPU-66", True)]
    assert "NVML_ERROR_UNKNOWN" in result.findings[-1].message and result.findings[-1].status is Status.INCOMPLETE


def test_watches_that_ran_to_the_end_let_the_stress_conclude(fake_nvml):
    from dhc.model import Device
    watch = _watch_until(fake_nvml(recording()), [0, 1], lambda w: w.clocks.samples > 0)
    recorder = _recorder()
    watch.conclude(recorder, {0: Device("gpu", 0), 1: Device("gpu", 1)})  # raises nothing
    assert recorder.faults == [] and [m.value for m in recorder.measurements] == [1.0, 1.0]
