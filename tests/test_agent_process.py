"""dhc agent as a real process: a kernel log fed line by line through a FIFO or a file, the NVML
stand-in, the Kubernetes API emulator over real HTTP, /metrics scraped over real HTTP. Every wait is
for a positive signal (a label, a condition, a counter of lines judged), never a sleep."""

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import waiting
from dhc_process import dhc_env
from k8s_emulator import Emulator

FAKES = Path(__file__).parent / "fakes"
DATA = Path(__file__).parent / "data"
P = "sagemaker.amazonaws.com/"
XID13 = "4,10,7400000,-;NVRM: Xid (PCI:0000:a8:00): 13, pid=4242, name=python, Graphics SM Warp Exception"
XID79 = "3,11,7500000,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1914, name=python3, GPU has fallen off the bus."
SXID = "4,12,7600000,-;nvidia-nvswitch3: SXid (PCI:0000:c5:00.0): 20034, Fatal, Link 46 LTSSM Fault Up"


class Agent:
    """``dhc agent`` in a subprocess; its stdout lines collected as JSON."""

    def __init__(self, tmp: Path, kernel_log: Path, emulator: Emulator | None = None, node="gpu-1",
                 recording: Path | None = DATA / "nvml_p5_h100.json", *more: str):
        (tmp / "boot_id").write_text("boot-a\n")
        env = dhc_env(PYTHONPATH=str(FAKES), NODE_NAME=node, **({"FAKE_NVML_FILE": str(recording)} if recording else {}))
        args = ["--kernel-log", str(kernel_log), "--state-file", str(tmp / "state.json"), "--boot-id-file",
                str(tmp / "boot_id"), "--poll-s", "0.1", "--metrics-port", "0", "--instance-type", "p5.48xlarge",
                "--sys-infiniband", str(tmp / "no-sysfs"), *more]
        if emulator is not None:
            env["KUBECONFIG"] = str(emulator.kubeconfig(tmp))
            args += ["--sink", "kubernetes"]
        self.proc = subprocess.Popen([sys.executable, "-m", "dhc", "agent", *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        note = wait_for(lambda: next((x for x in self.lines if "metrics on port" in x["msg"]), None), what="metrics port")
        self.port = int(note["msg"].split("metrics on port ")[1].split()[0])

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5).read().decode()
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]
        return sum(values)

    def detections(self, check=None):
        return [x for x in self.lines if "check" in x and (check is None or x["check"] == check)]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.reader.join(timeout=20)  # every line it printed is in self.lines once stop returns
        assert "Traceback" not in self.proc.stderr.read()
        return code


def wait_for(condition, timeout=30.0, what="condition"):
    """A real agent process starts slower than the threads of the other tests: 30 s by default."""
    return waiting.wait_for(condition, timeout, what)


def fifo_writer(path: Path) -> int:
    """The write end of the FIFO, once the agent holds the read end."""
    return wait_for(lambda: _try_open(path), what="the agent to open the FIFO")


def _try_open(path: Path):
    try:
        return os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return None


@pytest.fixture
def emulator():
    with Emulator() as api:
        api.add_node("gpu-1", labels={"node.kubernetes.io/instance-type": "ml.p5.48xlarge"},
                     status={"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]})
        yield api


def conditions(emulator, node="gpu-1"):
    return {c["type"]: c for c in emulator.nodes[node]["status"].get("conditions", [])}


def health(emulator, node="gpu-1"):
    return emulator.nodes[node]["metadata"]["labels"].get(P + "node-health-status")


def test_xid_13_is_nothing_xid_79_marks_the_node_for_replacement_and_an_sxid_is_no_xid(tmp_path, emulator):
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    before = json.loads(json.dumps(emulator.nodes["gpu-1"]))
    agent = Agent(tmp_path, fifo, emulator)
    writer = fifo_writer(fifo)
    os.write(writer, (XID13 + "\n").encode())
    wait_for(lambda: agent.metric("dhc_agent_kernel_lines_total") >= 1, what="the XID 13 line judged")
    assert agent.detections() == [] and set(conditions(emulator)) == {"Ready"} and emulator.events == []

    os.write(writer, (XID79 + "\n").encode())
    wait_for(lambda: health(emulator), what="the label")
    wait_for(lambda: emulator.events, what="the Event")
    node = emulator.nodes["gpu-1"]
    assert node["metadata"]["labels"][P + "node-health-status"] == "UnschedulablePendingReplacement"
    assert {"key": P + "node-health-status", "value": "UnschedulablePendingReplacement",
            "effect": "NoSchedule"} in node["spec"]["taints"]
    xid = conditions(emulator)["GpuXid"]
    assert (xid["status"], xid["reason"]) == ("True", "XID79") and "fallen off the bus" in xid["message"]
    assert json.loads(node["metadata"]["annotations"][P + "agent-health-reasons"])["action"] == "Replace"
    assert P + "deep-health-check-status" not in node["metadata"]["labels"]  # the deep check's own label: untouched
    [event] = emulator.events
    assert (event["reason"], event["type"], event["involvedObject"]["name"]) == ("XID79", "Warning", "gpu-1")
    [line] = wait_for(lambda: agent.detections("agent.xid"), what="the XID detection's log line")  # read by a thread
    assert (line["msg"], line["action"], line["HealthMonitoringAgentDetectionEvent"]) == (
        "NPD caught event: %v", "Replace", "HealthEvent")
    assert line["details: "]["message"].startswith("Node condition GpuXid is now: True, reason: XID79")
    assert line["device_pci_bus_id"] == "00000000:53:00.0" and line["device"].startswith("GPU 0")

    os.write(writer, (SXID + "\n").encode())
    wait_for(lambda: "NvSwitchSXid" in conditions(emulator), what="the SXid condition")
    assert conditions(emulator)["GpuXid"]["reason"] == "XID79" and len(agent.detections("agent.xid")) == 1
    assert wait_for(lambda: agent.detections("agent.sxid"), what="the SXid detection's log line")[0]["action"] == "None"
    assert agent.metric('dhc_agent_fault{detector="agent.xid",node="gpu-1"}') == 1
    assert agent.metric('dhc_agent_detections_total{action="Replace",detector="agent.xid"}') == 1
    os.close(writer)
    assert agent.stop() == 0

    from test_node_policy import AGENT, admit  # the agent's writes, judged by the node-write policy's CEL

    assert admit(AGENT, before, emulator.nodes["gpu-1"], node_claim="gpu-1")[0]
    assert not admit(AGENT, before, emulator.nodes["gpu-1"], node_claim="gpu-2")[0]

    # restarted: it re-reads the kernel log from the start (as /dev/kmsg does), and one more copy of
    # the XID 79 in another dress; nothing is raised again
    events, log = len(emulator.events), tmp_path / "replay.log"
    log.write_text("\n".join([XID13, XID79, SXID, "[ 75.000001] NVRM: Xid (PCI:0000:53:00): 79, GPU has fallen off "
                              "the bus."]) + "\n")
    again = Agent(tmp_path, log, emulator)
    wait_for(lambda: again.metric("dhc_agent_kernel_lines_total") >= 4, what="the replay judged")
    assert again.detections() == [] and len(emulator.events) == events
    assert again.metric("dhc_agent_duplicates_total") >= 1
    assert again.stop() == 0


def test_a_gpu_fallen_off_the_bus_without_an_xid_number_is_pending_replacement(tmp_path, emulator):
    log = tmp_path / "kern.log"
    log.write_text("")
    agent = Agent(tmp_path, log, emulator)
    with log.open("a") as handle:
        for line in (DATA / "kmsg" / "fallen_off_multiline_journald.txt").read_text().splitlines():
            handle.write(line + "\n")
            handle.flush()
    assert wait_for(lambda: health(emulator), what="the label") == "UnschedulablePendingReplacement"
    assert conditions(emulator)["GpuXid"]["reason"] == "XID79"
    assert agent.stop() == 0


def test_nvml_losing_a_gpu_mid_watch_is_agent_gpu_lost_replace(tmp_path):
    recording = json.loads((DATA / "nvml_p5_h100.json").read_text())
    recording["gpus"][3]["errors"] = {"nvmlDeviceGetPciInfo": ["ok", "ok", "GPU_IS_LOST"]}
    recording["gpus"][2]["ecc_uncorrected_volatile"] = 1
    (tmp_path / "nvml.json").write_text(json.dumps(recording))
    (tmp_path / "kern.log").write_text("")
    agent = Agent(tmp_path, tmp_path / "kern.log", None, "gpu-1", tmp_path / "nvml.json")
    lost = wait_for(lambda: agent.detections("agent.gpu-lost"), what="the lost GPU")
    assert lost[0]["action"] == "Replace" and "GPU 3" in lost[0]["message"] and "GPU_IS_LOST" in lost[0]["message"]
    [ecc] = wait_for(lambda: agent.detections("agent.ecc"), what="the ECC detection's log line")
    assert (ecc["action"], ecc["value"], ecc["device"].split()[:2]) == ("Reboot", 1.0, ["GPU", "2"])
    wait_for(lambda: agent.metric("dhc_agent_polls_total") >= 5, what="more polls")
    assert len(agent.detections("agent.gpu-lost")) == 1  # raised once, however often it is polled
    assert agent.stop() == 0


def test_a_kernel_log_that_cannot_be_read_is_named_and_counted_as_not_watching(tmp_path):
    agent = Agent(tmp_path, tmp_path / "absent", None)
    note = wait_for(lambda: [x for x in agent.lines if "cannot open the kernel log" in x["msg"]], what="the note")
    assert note[0]["level"] == "error" and "agent.xid" in note[0]["msg"]
    assert agent.metric('dhc_agent_watching{source="kernel"}') == 0
    wait_for(lambda: agent.metric('dhc_agent_watching{source="nvml"}') == 1, what="NVML watched")
    assert agent.stop() == 0


def test_a_broken_agent_section_or_a_bad_flag_is_one_line_and_exit_2(tmp_path):
    from dhc_process import dhc

    text = (Path(__file__).resolve().parent.parent / "thresholds.yaml").read_text()
    (tmp_path / "t.yaml").write_text(text.replace("blocked_s: 120,", "blocked_s: forever,", 1))
    proc = dhc("agent", "--thresholds", str(tmp_path / "t.yaml"), "--kernel-log", str(tmp_path / "k"),
               "--state-file", "", env=dhc_env(NODE_NAME="gpu-1"), timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "agent/detectors/agent.kernel-deadlock/blocked_s: expected a number" in proc.stderr
    proc = dhc("agent", "--metrics-port", "http", env=dhc_env(), timeout=60)
    assert proc.returncode == 2 and "expected a TCP port" in proc.stderr


def test_a_node_write_the_api_refuses_is_named_counted_and_retried_at_the_next_tick(tmp_path, emulator):
    emulator.fail_next("PATCH", "/api/v1/nodes/gpu-1/status", 403, {"kind": "Status", "code": 403,
                                                                     "reason": "Forbidden"})
    log = tmp_path / "kern.log"
    log.write_text(XID79 + "\n")
    agent = Agent(tmp_path, log, emulator)
    assert wait_for(lambda: health(emulator), what="the label, at the retry") == "UnschedulablePendingReplacement"
    assert conditions(emulator)["GpuXid"]["reason"] == "XID79"
    [refused] = wait_for(lambda: [x for x in agent.lines if "could not write agent.xid" in x["msg"]], what="the refusal")
    assert refused["level"] == "error" and "HTTP 403" in refused["msg"]
    assert agent.metric("dhc_agent_publish_errors_total") == 1
    assert agent.stop() == 0 and len(agent.detections("agent.xid")) == 1  # all its lines read once stopped


def test_a_fault_the_api_refused_before_a_restart_is_delivered_once_when_the_api_comes_back(tmp_path, emulator):
    for _ in range(30):  # the API answers 503 to every condition write until the faults are cleared
        emulator.fail_next("PATCH", "/api/v1/nodes/gpu-1/status", 503)
    log = tmp_path / "kern.log"
    log.write_text(XID79 + "\n")
    first = Agent(tmp_path, log, emulator)
    wait_for(lambda: [x for x in first.lines if "could not write agent.xid" in x["msg"]], what="the refused write")
    assert first.stop() == 0 and health(emulator) is None and not emulator.events
    emulator.faults.clear()  # the API is back; the agent restarts and re-reads the same kernel log
    second = Agent(tmp_path, log, emulator)
    assert wait_for(lambda: health(emulator), what="the label") == "UnschedulablePendingReplacement"
    assert conditions(emulator)["GpuXid"]["reason"] == "XID79"
    wait_for(lambda: second.metric("dhc_agent_polls_total") >= 3, what="more ticks")
    assert [e["reason"] for e in emulator.events] == ["XID79"]  # one Event: delivered once, raised once
    assert len(first.detections("agent.xid")) == 1 and second.detections("agent.xid") == []
    assert not json.loads((tmp_path / "state.json").read_text())["pending"]
    assert second.stop() == 0


def test_no_nvml_is_an_error_line_and_a_zero_gauge_never_silence(tmp_path):
    (tmp_path / "kern.log").write_text("")
    agent = Agent(tmp_path, tmp_path / "kern.log", None, "gpu-1", None)  # the stand-in without a driver
    [note] = wait_for(lambda: [x for x in agent.lines if "NVML unavailable" in x["msg"]], what="the NVML note")
    assert note["level"] == "error" and "not watching" in note["msg"]
    wait_for(lambda: agent.metric("dhc_agent_polls_total") >= 1, what="a poll")
    assert agent.metric('dhc_agent_watching{source="nvml"}') == 0
    assert agent.stop() == 0
