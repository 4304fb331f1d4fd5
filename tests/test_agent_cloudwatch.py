"""``dhc agent --sink cloudwatch``: each detection's log line in CloudWatch Logs, stream
``SagemakerHealthMonitoringAgent/<node group>/<instance id>``. Climbs: the batching and the shipper
with a stream that fails as the real one does, then the agent as a real process against moto in
server mode over real HTTP (and the Kubernetes API emulator for the node's labels). Every wait is for
a positive signal: an event in the stream, an error line, a detection line."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from dhc_process import dhc_env
from k8s_emulator import Emulator
from test_agent_process import XID79, fifo_writer, wait_for

pytest.importorskip("moto.server", reason="moto[server] comes with the test extra")
boto3 = pytest.importorskip("boto3", reason="boto3 comes with dhc[cloud]")

from dhc.aws import logs  # noqa: E402
from dhc.aws.logship import Shipper  # noqa: E402
from dhc.cli import build_parser  # noqa: E402
from dhc.cli.agent_cmd import sinks  # noqa: E402

FAKES = Path(__file__).parent / "fakes"
DATA = Path(__file__).parent / "data"
XID48 = ("3,12,7600000,-;NVRM: Xid (PCI:0000:b9:00): 48, An uncorrectable double bit error (DBE) has been detected "
         "on GPU in the framebuffer at partition 1, subpartition 0.")
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-2"}


# --- unit: batching and the shipper ------------------------------------------------------------------

def test_batches_are_sorted_by_time_and_never_span_more_than_a_day():
    day = logs.MAX_SPAN_MS
    found = list(logs.batches([(day + 5, "c"), (0, "a"), (10, "b"), (day + 20, "d")]))
    assert [[e["message"] for e in b] for b in found] == [["a", "b"], ["c", "d"]]


def test_events_the_service_rejects_as_too_old_or_too_new_are_not_counted_as_taken():
    assert logs._rejected({}, 5) == 0
    assert logs._rejected({"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 4}, 5) == 3
    assert logs._rejected({"expiredLogEventEndIndex": 9}, 5) == 5  # never more than the batch


class FlakyStream:
    """Stands in for LogStream: raises LogsError (as the real one does for an outage) while ``down``."""

    def __init__(self):
        self.down, self.took, self.calls = True, [], threading.Semaphore(0)

    def put(self, events):
        try:
            if self.down:
                raise logs.LogsError("CloudWatch Logs /g / s: Could not connect to the endpoint URL")
            self.took += [json.loads(m) for _, m in events]
            return len(events)
        finally:
            self.calls.release()


def test_a_failed_put_is_reported_kept_and_delivered_at_the_next_record():
    stream, errors = FlakyStream(), []
    shipper = Shipper(stream, errors.append, retry_s=3600)
    shipper.ship({"n": 1})
    assert stream.calls.acquire(timeout=10)
    assert wait_for(lambda: errors, what="the error report") == [
        "could not send 1 record(s) to CloudWatch Logs /g / s: Could not connect to the endpoint URL (kept, tried again)"]
    stream.down = False
    shipper.ship({"n": 2})
    wait_for(lambda: len(stream.took) == 2, what="both records")
    assert stream.took == [{"n": 1}, {"n": 2}] and not shipper.pending
    shipper.close()


def test_a_full_buffer_drops_the_oldest_and_says_so():
    stream, errors = FlakyStream(), []
    shipper = Shipper(stream, errors.append, retry_s=3600, max_pending=2)
    for n in range(3):
        shipper.ship({"n": n})
    wait_for(lambda: any("dropped" in e for e in errors), what="a report naming the drop")
    assert "1 older record(s) dropped, the buffer holds 2" in errors[-1]
    stream.down = False
    shipper.close()  # close tries once more
    assert stream.took == [{"n": 1}, {"n": 2}]


def test_sinks_add_up_and_a_wrong_one_is_a_usage_error(capsys):
    parse = build_parser().parse_args
    assert sinks(parse(["agent"])) == {"stdout"}
    assert sinks(parse(["agent", "--sink", "kubernetes", "--sink", "cloudwatch"])) == {"kubernetes", "cloudwatch"}
    assert sinks(parse(["agent", "--sink", "kubernetes,cloudwatch"])) == {"kubernetes", "cloudwatch"}
    with pytest.raises(SystemExit) as exit_:
        parse(["agent", "--sink", "cloudwatch,s3"])
    assert exit_.value.code == 2 and "'s3': expected one of stdout, kubernetes, cloudwatch" in capsys.readouterr().err


# --- the agent as a real process against moto over HTTP ----------------------------------------------

class Agent:
    """``dhc agent --sink cloudwatch`` in a subprocess, its stdout lines collected as JSON."""

    def __init__(self, tmp: Path, kernel_log: Path, endpoint: str, *more: str, **env: str):
        (tmp / "boot_id").write_text("boot-a\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dhc", "agent", "--kernel-log", str(kernel_log), "--state-file",
             str(tmp / "state.json"), "--boot-id-file", str(tmp / "boot_id"), "--poll-s", "0.1", "--metrics-port", "0",
             "--instance-type", "p5.48xlarge", "--sys-infiniband", str(tmp / "no-sysfs"), "--sink", "cloudwatch", *more],
            env=dhc_env(PYTHONPATH=str(FAKES), NODE_NAME="gpu-1", FAKE_NVML_FILE=str(DATA / "nvml_p5_h100.json"),
                        AWS_ENDPOINT_URL=endpoint, DHC_REGION="us-east-2", **CREDENTIALS, **env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def said(self, words: str) -> list[dict]:
        return [x for x in self.lines if words in x["msg"]]

    def metric(self, name: str) -> float:
        import urllib.request

        [note] = wait_for(lambda: self.said("metrics on port"), what="the metrics port")
        port = int(note["msg"].split("metrics on port ")[1].split()[0])
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        assert "Traceback" not in self.proc.stderr.read()
        return code


def events(endpoint, group, stream):
    client = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-2",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    try:
        found = client.get_log_events(logGroupName=group, logStreamName=stream)["events"]
    except client.exceptions.ResourceNotFoundException:
        return []
    return [json.loads(e["message"]) for e in found]


@pytest.mark.slow
def test_an_xid_79_fed_to_a_running_agent_appears_in_its_hyperpod_stream(tmp_path, moto):
    """Group from the cluster's name and id, node group from the HyperPod label, instance id from the providerID."""
    with Emulator() as api:
        api.add_node("gpu-1", labels={"sagemaker.amazonaws.com/instance-group-name": "workers"},
                     provider_id="aws:///us-east-2/sagemaker/cluster/i-0feedface01234567",
                     status={"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]})
        fifo = tmp_path / "kmsg"
        os.mkfifo(fifo)
        agent = Agent(tmp_path, fifo, moto, "--sink", "kubernetes", KUBECONFIG=str(api.kubeconfig(tmp_path)),
                      DHC_CLUSTER="train-a", DHC_CLUSTER_ID="abc123")
        writer = fifo_writer(fifo)
        os.write(writer, (XID79 + "\n").encode())
        group, stream = "/aws/sagemaker/Clusters/train-a/abc123", "SagemakerHealthMonitoringAgent/workers/i-0feedface01234567"
        [line] = wait_for(lambda: events(moto, group, stream), what="the detection in CloudWatch Logs")
        assert (line["msg"], line["HealthMonitoringAgentDetectionEvent"]) == ("NPD caught event: %v", "HealthEvent")
        assert (line["check"], line["action"], line["reason"], line["node"]) == ("agent.xid", "Replace", "XID79", "gpu-1")
        assert line == [x for x in agent.lines if x.get("check") == "agent.xid"][0]  # the very stdout line
        assert wait_for(lambda: api.nodes["gpu-1"]["metadata"]["labels"].get(
            "sagemaker.amazonaws.com/node-health-status"), what="the label") == "UnschedulablePendingReplacement"
        assert agent.said(f"detections also go to CloudWatch Logs {group} / {stream}")
        assert agent.metric("dhc_agent_cloudwatch_errors_total") == 0 and not agent.said("could not send")
        os.close(writer)
        assert agent.stop() == 0


@pytest.mark.slow
def test_the_flags_name_group_and_node_group_and_an_existing_stream_is_used(tmp_path, moto):
    client = boto3.client("logs", endpoint_url=moto, region_name="us-east-2", **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing"})
    client.create_log_group(logGroupName="/dhc/agent")
    client.create_log_stream(logGroupName="/dhc/agent", logStreamName="SagemakerHealthMonitoringAgent/gpu-a/i-0abc")
    log = tmp_path / "kern.log"
    log.write_text(XID79 + "\n")
    agent = Agent(tmp_path, log, moto, "--log-group", "/dhc/agent", "--node-group", "gpu-a", DHC_INSTANCE_ID="i-0abc")
    [line] = wait_for(lambda: events(moto, "/dhc/agent", "SagemakerHealthMonitoringAgent/gpu-a/i-0abc"),
                      what="the detection in the named group")
    assert (line["check"], line["instance_id"]) == ("agent.xid", "i-0abc")
    assert agent.stop() == 0


@pytest.mark.slow
def test_a_closed_port_is_reported_counted_and_never_stops_detection(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    fifo = tmp_path / "kmsg"
    os.mkfifo(fifo)
    agent = Agent(tmp_path, fifo, closed, "--node-group", "gpu-a", DHC_INSTANCE_ID="i-0abc")
    writer = fifo_writer(fifo)
    os.write(writer, (XID79 + "\n").encode())
    [error] = wait_for(lambda: agent.said("could not send"), timeout=90, what="the CloudWatch error line")
    assert error["level"] == "error" and "/aws/sagemaker/Clusters/unknown-cluster/unknown-cluster-id / " \
        "SagemakerHealthMonitoringAgent/gpu-a/i-0abc" in error["msg"] and "kept, tried again" in error["msg"]
    assert agent.metric("dhc_agent_cloudwatch_errors_total") >= 1
    os.write(writer, (XID48 + "\n").encode())  # the watch goes on: the next fault is still found
    [dbe] = wait_for(lambda: [x for x in agent.lines if x.get("reason") == "XID48"], what="the next detection")
    assert (dbe["check"], dbe["level"]) == ("agent.xid", "error")
    os.close(writer)
    assert agent.stop() == 0


def test_an_agent_with_no_region_anywhere_says_so_and_exits_2(tmp_path):
    from dhc_process import dhc

    env = {k: v for k, v in (dhc_env() | CREDENTIALS).items() if k not in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE")}
    proc = dhc("agent", "--sink", "cloudwatch", "--kernel-log", str(tmp_path / "kern.log"), "--state-file", "",
               env=env | {"AWS_CONFIG_FILE": str(tmp_path / "none")}, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "CloudWatch Logs /aws/sagemaker/Clusters/unknown-cluster/unknown-cluster-id / " \
           "SagemakerHealthMonitoringAgent/unknown-node-group/" in proc.stderr and "no AWS region" in proc.stderr
