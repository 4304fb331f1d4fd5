"""dhc agent, unit level: the kernel-log and NVML detectors, dedupe and escalation, the agent's
section of thresholds.yaml, and the node writes it makes (held to the node-write policy)."""

import copy
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from dhc.agent.kernel import KernelDetectors, record
from dhc.agent.poll import Expected, Poller
from dhc.agent.state import State
from dhc.errors import ConfigError
from dhc.k8s import scheme
from dhc.k8s.conditions import condition, merged
from dhc.model import Action, Device
from dhc.probes.nvml import Nvml
from dhc.thresholds.agent import load_agent

ROOT = Path(__file__).resolve().parent.parent
KMSG = Path(__file__).parent / "data" / "kmsg"
LIMITS = load_agent(ROOT / "thresholds.yaml")

def _fake_nvml():
    """The pynvml stand-in as a module of its own (never the real pynvml another test may have imported)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("agent_fake_pynvml", Path(__file__).parent / "fakes" / "pynvml.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fake_nvml = _fake_nvml()


def feed(lines, limits=LIMITS, clock=None):
    kernel = KernelDetectors(limits, clock=clock)
    return [d for line in lines for d in kernel.feed(line)]


def fixture(name):
    return (KMSG / name).read_text().splitlines()


@pytest.mark.parametrize("name", ["raw_kmsg.txt", "dmesg.txt", "dmesg_T.txt", "syslog.txt", "journald_iso.txt"])
def test_xid_79_in_every_dress_asks_for_replace_and_xid_13_alone_for_nothing(name):
    found = feed(fixture(name))
    by_code = {d.key.split("|")[-1]: d for d in found}
    assert by_code["79"].action is Action.REPLACE and by_code["79"].reason == "XID79"
    assert "fallen off the bus" in by_code["79"].finding.message
    assert by_code["79"].finding.device.pci_bus_id == "0000:53:00"
    assert "13" not in by_code  # one XID 13 is the application's business


@pytest.mark.parametrize("name", ["fallen_off_multiline_dmesg.txt", "fallen_off_multiline_journald.txt"])
def test_a_gpu_fallen_off_the_bus_without_an_xid_number_is_xid_79(name):
    [found] = feed(fixture(name))
    assert (found.detector, found.action, found.key) == ("agent.xid", Action.REPLACE, "agent.xid|0000:b9:00|79")
    assert "printed no XID number" in found.finding.message


def test_an_sxid_is_reported_as_an_nvswitch_error_never_as_an_xid():
    found = feed(fixture("sxid_and_causes.txt"))
    sxids = [d for d in found if d.detector == "agent.sxid"]
    assert sxids and all(d.condition_type == "NvSwitchSXid" and "not a GPU XID" in d.finding.message for d in sxids)
    assert {d.key.split("|")[-1] for d in found if d.detector == "agent.xid"} == {"149", "154"}  # 20034 is no XID


def test_an_application_xid_that_keeps_repeating_on_one_gpu_asks_for_a_reboot():
    line = "NVRM: Xid (PCI:0000:a8:00): 13, pid=4242, name=python, Graphics SM Warp Exception"
    now = [0.0]
    kernel = KernelDetectors(LIMITS, clock=lambda: now[0])
    quiet = []
    for _ in range(4):
        quiet += kernel.feed(line)
        now[0] += 60
    [found] = kernel.feed(line)
    assert quiet == [] and found.action is Action.REBOOT and found.reason == "XID13Repeated"
    assert "5 times within 600 s" in found.finding.message
    now[0] += 10_000  # outside the window: counting starts over
    assert kernel.feed(line) == []


def test_a_hung_task_past_the_limit_is_a_kernel_deadlock_and_an_oom_kill_is_reported():
    found = feed(fixture("hung_task_and_oom_kmsg.txt"))
    assert [(d.detector, d.action, d.seq) for d in found] == [
        ("agent.kernel-deadlock", Action.REBOOT, 2002), ("agent.oom", Action.NONE, 2008)]
    assert "task python3:48211 blocked for more than 122 seconds (limit 120 s)" in found[0].finding.message
    assert "killed process 51234 (python3): memory cgroup out of memory" in found[1].finding.message
    # the 30-second one (seq 2009) is under the limit: nothing


def test_a_kmsg_record_names_its_sequence_number_and_other_dresses_none():
    assert record("3,1302,7200010,-;NVRM: Xid (PCI:0000:53:00): 79, x") == (1302, "NVRM: Xid (PCI:0000:53:00): 79, x")
    assert record("[ 1843.308145] NVRM: x") == (None, "[ 1843.308145] NVRM: x")


# -- state: dedupe and escalation ----------------------------------------------------------------------
XID79 = "3,1302,7200010,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1914, name=python3, GPU has fallen off the bus."
XID48 = "3,1303,7300000,-;NVRM: Xid (PCI:0000:b9:00): 48, An uncorrectable double bit error (DBE)"


def test_a_restarted_agent_raises_no_fault_twice_and_skips_records_it_acted_on(tmp_path):
    path = tmp_path / "state.json"
    first = State(path, "boot-a", 86400)
    assert first.admit(feed([XID79])[0]) is not None
    assert first.admit(feed([XID79])[0]) is None  # the same fault again in this run
    again = State(path, "boot-a", 86400)  # the agent restarted; the node did not
    assert again.seen(1302) and not again.seen(1303)
    assert again.admit(feed([XID79])[0]) is None


def test_the_same_reboot_class_fault_again_after_a_reboot_within_the_window_asks_for_replace(tmp_path):
    path, now = tmp_path / "state.json", [1000.0]
    State(path, "boot-a", 3600, clock=lambda: now[0]).admit(feed([XID48])[0])
    now[0] += 600
    after_reboot = State(path, "boot-b", 3600, clock=lambda: now[0])
    assert not after_reboot.seen(1303)  # a new boot numbers its records afresh
    raised = after_reboot.admit(feed([XID48])[0])
    assert raised.action is Action.REPLACE and "raised 600 s ago in an earlier boot" in raised.finding.message
    after_reboot.delivered(raised.key)  # on the node (one never delivered would still be owed in boot-c)
    now[0] += 7200  # one more reboot, now outside the window: a reboot again
    assert State(path, "boot-c", 3600, clock=lambda: now[0]).admit(feed([XID48])[0]).action is Action.REBOOT


def test_a_raised_fault_stays_pending_in_the_state_file_until_delivered_across_restarts_and_reboots(tmp_path):
    path = tmp_path / "state.json"
    first = State(path, "boot-a", 86400)
    xid79, xid48 = first.admit(feed([XID79])[0]), first.admit(feed([XID48])[0])
    again = State(path, "boot-a", 86400)  # restarted before the API took either write
    assert again.undelivered() == [xid79, xid48] and again.admit(feed([XID79])[0]) is None
    after_reboot = State(path, "boot-b", 86400)  # a reboot mends no fallen-off GPU: Replace is still owed
    assert after_reboot.undelivered() == [xid79] and after_reboot.admit(feed([XID79])[0]) is None
    after_reboot.delivered(xid79.key)
    assert State(path, "boot-b", 86400).undelivered() == [] and not json.loads(path.read_text())["pending"]


def test_a_pending_entry_that_cannot_be_rebuilt_makes_the_state_file_unreadable_never_half_trusted(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"boot_id": "boot-a", "raised": {}, "history": [], "kmsg_seq": 5,
                                "pending": {"agent.xid|0000:53:00|79": {"finding": {"check": "agent.xid"}}}}))
    state = State(path, "boot-a", 3600)
    assert "unreadable (ModelError: finding.status: missing)" in state.problem  # the key, named by the codec
    assert state.undelivered() == [] and state.kmsg_seq is None


def test_a_state_file_that_cannot_be_read_is_named_and_set_aside(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"boot_id": "boot-a", "raised": [')
    state = State(path, "boot-a", 3600)
    assert "state file" in state.problem and "unreadable" in state.problem
    assert state.admit(feed([XID79])[0]) is not None and json.loads(path.read_text())["raised"]


# -- NVML over time ------------------------------------------------------------------------------------
@pytest.fixture
def recording():
    data = json.loads((Path(__file__).parent / "data" / "nvml_p5_h100.json").read_text())
    fake_nvml.load_recording(data)
    yield data
    fake_nvml.load_recording(None)


P5 = Expected(8, None, 18)


def poller(limits=LIMITS, expected=P5, clock=None, **kw):
    return Poller(limits, expected, nvml=lambda: Nvml(fake_nvml), clock=clock or (lambda: 0.0), **kw)


def keys(found):
    return sorted((d.detector, d.key.split("|")[-1], d.action.value) for d in found)


def test_a_healthy_recording_raises_nothing_and_maps_pci_addresses_for_the_kernel_log(recording):
    watch = poller()
    assert watch.poll() == [] and watch.notes == []
    assert watch.gpus["0000:53:00"].index == 0


def test_nvml_changing_over_time_gpu_lost_ecc_rising_and_remap_pending(recording):
    watch = poller()
    assert watch.poll() == []
    recording["gpus"][1]["ecc_uncorrected_volatile"] = 2
    recording["gpus"][2]["remap_pending"] = 1
    recording["gpus"][3]["errors"] = {"nvmlDeviceGetPciInfo": "GPU_IS_LOST"}
    found = watch.poll()
    assert keys(found) == [("agent.ecc", "volatile", "Reboot"), ("agent.gpu-lost", "Replace", "Replace"),
                           ("agent.remap", "pending", "Reboot")]
    ecc = next(d for d in found if d.detector == "agent.ecc")
    assert (ecc.finding.device.index, ecc.finding.value) == (1, 2.0) and "2 uncorrectable ECC errors" in ecc.finding.message
    recording["gpus"][2]["remap_failure"] = 1
    assert ("agent.remap", "failed", "Replace") in keys(watch.poll())


def test_a_gpu_needing_a_reset_fewer_gpus_and_nvlinks_down(recording):
    recording["gpus"][5]["errors"] = {"nvmlDeviceGetUUID": "RESET_REQUIRED"}
    recording["gpus"][6]["nvlinks_up"] = 16
    recording["count"] = 7
    found = keys(poller().poll())
    assert ("agent.gpu-lost", "Reboot", "Reboot") in found  # a reset, not a replacement
    assert ("agent.gpu-count", "count", "Replace") in found and ("agent.nvlink", "down", "Reboot") in found


def test_a_clock_slowdown_is_a_warning_only_once_it_outlasts_its_window(recording):
    now = [0.0]
    watch = poller(clock=lambda: now[0])
    recording["gpus"][0]["clock_event_reasons"] = 0x8  # HW_SLOWDOWN
    assert watch.poll() == []
    now[0] = 299
    assert watch.poll() == []
    now[0] = 301
    [found] = watch.poll()
    assert (found.detector, found.action, found.finding.value) == ("agent.clocks", Action.NONE, 301)
    recording["gpus"][0]["clock_event_reasons"] = 0x4  # SW power cap: not a hardware slowdown
    assert watch.poll() == [] and watch.slow_since == {}


def test_an_unreadable_metric_is_a_note_never_a_finding_and_missing_nvml_is_named(recording, monkeypatch):
    recording["gpus"][0]["errors"] = {"nvmlDeviceGetTotalEccErrors": "UNKNOWN"}
    watch = poller()
    assert watch.poll() == [] and any("ecc_uncorrected_volatile unreadable" in n for n in watch.notes)
    fake_nvml.load_recording(None)
    monkeypatch.delenv("FAKE_NVML_FILE", raising=False)
    blind = poller()
    assert blind.poll() == [] and "NVML unavailable, the GPU detectors are not watching" in blind.notes[0]


def test_efa_devices_missing_from_sysfs_and_a_full_disk(tmp_path, recording):
    sysfs = tmp_path / "infiniband"
    sysfs.mkdir()
    for name in ("rdmap16s27", "rdmap32s27"):
        (sysfs / name).mkdir()
    full = replace(LIMITS, detectors=LIMITS.detectors | {"agent.disk": replace(
        LIMITS["agent.disk"], values={"max_used_percent": 1e-9})})
    found = poller(limits=full, expected=Expected(8, 4, 18), sys_infiniband=sysfs, disk=tmp_path).poll()
    efa = next(d for d in found if d.detector == "agent.efa")
    assert "2 EFA devices" in efa.finding.message and efa.action is Action.REBOOT
    disk = next(d for d in found if d.detector == "agent.disk")
    assert disk.reason == "FilesystemFull" and disk.action is Action.NONE
    gone = poller(expected=Expected(8, 4, 18), sys_infiniband=tmp_path / "absent")
    assert gone.poll() == [] and any("cannot be counted" in n for n in gone.notes)


# -- thresholds.yaml -----------------------------------------------------------------------------------
def broken(tmp_path, old, new):
    text = (ROOT / "thresholds.yaml").read_text()
    assert old in text
    path = tmp_path / "thresholds.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, key, words", [
    ("agent.oom: {action: None,", "agent.oom: {action: Restart,", "agent/detectors/agent.oom/action",
     "expected one of None, Reboot, Replace"),
    ("blocked_s: 120,", "blocked_s: -1,", "agent/detectors/agent.kernel-deadlock/blocked_s", "expected a value from 1"),
    ("app_repeat: 5,", "app_repeat: 2.5,", "agent/detectors/agent.xid/app_repeat", "expected a whole number"),
    ("  poll_s: 5 ", "  pol_s: 5 ", "agent/pol_s", "unknown key"),
])
def test_a_broken_agent_section_names_file_line_and_key(tmp_path, old, new, key, words):
    import dhc.thresholds

    path = broken(tmp_path, old, new)
    for load in (load_agent, dhc.thresholds.load):  # the agent, and `dhc thresholds validate` / `dhc run`
        with pytest.raises(ConfigError) as caught:
            load(path)
        assert caught.value.key == key and words in caught.value.problem and caught.value.line
        assert str(caught.value).startswith(f"{path}:{caught.value.line}: {key}")


def test_the_agent_section_is_optional_for_the_checks_but_required_by_the_agent(tmp_path):
    import dhc.thresholds

    text = (ROOT / "thresholds.yaml").read_text()
    path = tmp_path / "thresholds.yaml"
    path.write_text(text[:text.index("\nagent:")])
    dhc.thresholds.load(path)
    with pytest.raises(ConfigError, match="missing the agent: section"):
        load_agent(path)


# -- node writes -----------------------------------------------------------------------------------------
def node(labels=None, taints=None):
    return {"metadata": {"name": "gpu-1", "labels": labels or {}, "annotations": {}}, "spec": {"taints": taints or []}}


def apply(document, ops):
    sys.path.insert(0, str(Path(__file__).parent))
    from k8s_emulator import apply_json_patch

    return apply_json_patch(document, ops)


def test_the_agent_marks_pending_never_milder_than_the_node_is_and_never_schedulable():
    keys_ = scheme.Keys()
    replaced = apply(node(), scheme.pending_ops(node(), keys_, "UnschedulablePendingReplacement", {keys_.agent_reasons: "x"}))
    assert replaced["metadata"]["labels"] == {keys_.health: "UnschedulablePendingReplacement"}
    assert replaced["spec"]["taints"] == [{"key": keys_.health, "value": "UnschedulablePendingReplacement",
                                           "effect": "NoSchedule"}]
    assert scheme.pending_ops(replaced, keys_, "UnschedulablePendingReboot", {keys_.agent_reasons: "x"}) == []
    with pytest.raises(AssertionError):
        scheme.pending_ops(node(), keys_, "Schedulable", {})


def test_a_condition_keeps_the_time_it_turned_true_when_raised_again():
    first = condition("GpuXid", True, "XID79", "a")
    kubelet = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
    later = merged([kubelet, first | {"lastTransitionTime": "2026-01-01T00:00:00Z"}], [condition("GpuXid", True, "XID48", "b")])
    assert later[0] == kubelet and later[1]["reason"] == "XID48"
    assert later[1]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert merged([copy.deepcopy(first)], [condition("GpuXid", False, "Gone", "c")])[0]["lastTransitionTime"] != \
        "2026-01-01T00:00:00Z"


MOUNTINFO = """\
1 0 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 {root}
30 1 259:1 / /host/root ro,relatime - ext4 /dev/nvme0n1p1 {root}
31 1 259:2 / /host/root/scratch rw,relatime - xfs /dev/nvme1n1 rw,attr2
"""


@pytest.mark.parametrize("superblock, mounted, readonly", [
    ("rw,errors=remount-ro", "/host/root", False),  # the DaemonSet's read-only bind of a healthy root
    ("ro,errors=remount-ro", "/host/root", True),  # ext4 remounted the filesystem read-only after errors
    ("ro,errors=remount-ro", "/host/root/scratch", False),  # another filesystem mounted below it
])
def test_a_root_filesystem_gone_read_only_is_told_from_a_read_only_bind_mount(tmp_path, recording, superblock,
                                                                             mounted, readonly):
    from dhc.agent.poll import superblock_readonly

    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO.format(root=superblock))
    assert superblock_readonly(Path(mounted), info) is readonly
    found = poller(disk=tmp_path, mountinfo=tmp_path / "mountinfo").poll()
    root_gone = superblock.startswith("ro,")  # tmp_path lies under "/", whose superblock is the same
    assert [(d.reason, d.action) for d in found] == ([("FilesystemReadOnly", Action.REBOOT)] if root_gone else [])


def test_the_daemonset_validates_parses_with_dhcs_own_flags_and_mounts_the_host_read_only():
    import yaml

    kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate comes with the test extra")
    objects = {o["kind"]: o for o in yaml.safe_load_all((ROOT / "containers" / "k8s" / "agent.yaml").read_text())}
    for obj in objects.values():
        kubernetes_validate.validate(obj, "1.30", strict=True)
    from dhc.cli import build_parser

    pod = objects["DaemonSet"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.sink, args.events_namespace) == ("agent", "kubernetes", "dhc")
    assert {"name": "metrics", "containerPort": args.metrics_port, "protocol": "TCP"} in container["ports"]
    assert [m["name"] for m in container["volumeMounts"] if not m.get("readOnly")] == ["state"]
    assert objects["ClusterRole"]["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["nodes/status"], "verbs": ["patch"]}]
    assert objects["Role"]["metadata"]["namespace"] == "dhc" and objects["Role"]["rules"][0]["resources"] == ["events"]
    assert pod["serviceAccountName"] == "dhc-agent"  # node-bound for the policy: not the controller's account


def test_an_xid_on_a_gpu_nvml_does_not_list_is_named_by_its_pci_address():
    [found] = feed(["NVRM: Xid (PCI:0000:c1:00): 79, pid=1, name=x, GPU has fallen off the bus."])
    assert "on the GPU at PCI 0000:c1:00:" in found.finding.message
    gpus = {"0000:c1:00": Device("gpu", 4, uuid="GPU-x", pci_bus_id="00000000:C1:00.0")}
    [known] = KernelDetectors(LIMITS, lambda: gpus).feed("NVRM: Xid (PCI:0000:c1:00): 79, GPU has fallen off the bus.")
    assert known.finding.device.index == 4 and "on GPU 4 (GPU-x" in known.finding.message


def test_an_nvml_binding_that_breaks_at_start_is_named_not_a_crash():
    class Broken:
        def __enter__(self):
            raise FileNotFoundError("libnvidia-ml.so.1")

    watch = Poller(LIMITS, P5, nvml=Broken)
    assert watch.poll() == [] and "starting it raised FileNotFoundError: libnvidia-ml.so.1" in watch.notes[0]


def test_a_kmsg_record_whose_sequence_no_kernel_could_write_is_read_as_a_plain_line():
    """A 64-bit sequence fits in 20 digits; a longer one (Python refuses ints past 4,300) never kills the follower."""
    assert record("6,1234,5678901,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1, GPU has fallen off the bus.") == \
        (1234, "NVRM: Xid (PCI:0000:53:00): 79, pid=1, GPU has fallen off the bus.")
    line = f"6,{'9' * 5000},5678901,-;NVRM: hello"
    assert record(line) == (None, line)


def test_a_detection_is_kept_through_the_models_codec():
    """The state file holds a detection as the model's codec writes a Finding (strict JSON: a NaN value is null
    with non_finite), and reads it back through the codec, naming the key that does not fit."""
    import json as _json

    from dhc.agent.detection import Detection, detection
    from dhc.model import Action, Comparison, Device
    from dhc.model.codec import ModelError
    gpu = Device("gpu", 2, uuid="GPU-5f1e", pci_bus_id="00000000:53:00.0")
    found = detection("agent.clocks", "slow", "clocks at nan", Action.REBOOT, gpu, value=float("nan"), limit=1.0,
                      unit="MHz", comparison=Comparison.MIN)
    text = _json.dumps(found.to_dict(), allow_nan=False)
    back = Detection.from_dict(_json.loads(text))
    assert (back.key, back.finding.device, back.finding.comparison) == (found.key, gpu, Comparison.MIN)
    assert back.finding.value != back.finding.value  # NaN again
    broken = _json.loads(text)
    broken["finding"]["device"]["index"] = "two"
    with pytest.raises(ModelError, match=r"finding\.device\.index: expected int"):
        Detection.from_dict(broken)
