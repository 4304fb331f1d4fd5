"""The node scheme and the node-side sink, with the real kubernetes client against an emulated API server."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("kubernetes", reason="the Kubernetes layer needs the kubernetes client (dhc[kubernetes])")

from k8s_emulator import Emulator, apply_json_patch  # noqa: E402
from kubernetes import client  # noqa: E402
from test_report import report_with_verdict  # noqa: E402

from dhc.k8s import scheme  # noqa: E402
from dhc.k8s.client import K8sError, K8sNotFound, Kube  # noqa: E402
from dhc.model import Device  # noqa: E402
from dhc.sinks.node import write_verdict  # noqa: E402

PREFIX = "sagemaker.amazonaws.com"
KEYS = scheme.Keys(PREFIX)
OTHER_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def document(status="Passed", action="None", reasons=()):
    return report_with_verdict(status, action, reasons)  # a whole report: the scheme reads it typed


GPU3_FAULT = {"check": "stress.gemm", "status": "Failed", "action": "Replace", "metric": "tflops_bf16",
              "value": 612.0, "limit": 700, "unit": "TFLOP/s",
              "message": "stress.gemm tflops_bf16 on GPU 3: measured 612 TFLOP/s, expected minimum 700 TFLOP/s",
              "device": {"kind": "gpu", "index": 3, "uuid": "GPU-3", "serial": "S3", "pci_bus_id": "00000000:86:00.0"}}


@pytest.mark.parametrize(("value", "expected"), [
    ("UnschedulablePendingReplacement", "UnschedulablePendingReplacement"),
    ("a" * 80, "a" * 63), ("bad value/with:chars!", "bad-value-with-chars"), ("-edge-", "edge"),
])
def test_label_values_are_always_valid(value, expected):
    assert scheme.label_value(value) == expected


@pytest.mark.parametrize(("status", "action", "check", "health"), [
    ("Passed", "None", "Passed", "Schedulable"), ("Failed", "Replace", "Failed", "UnschedulablePendingReplacement"),
    ("Failed", "Reboot", "Failed", "UnschedulablePendingReboot"), ("Incomplete", "None", "InProgress", "Unschedulable"),
])
def test_verdicts_map_to_node_states(status, action, check, health):
    state = scheme.from_verdict(document(status, action))
    assert (state.check_status, state.health, state.tainted) == (check, health, health != "Schedulable")


def test_ops_touch_only_dhcs_keys():
    node = {"metadata": {"labels": {"team": "llm", KEYS.check_status: "InProgress"}, "resourceVersion": "7"},
            "spec": {"taints": [OTHER_TAINT, {"key": KEYS.health, "value": "Unschedulable", "effect": "NoSchedule"}]}}
    state = scheme.from_verdict(document("Failed", "Replace", [GPU3_FAULT]), "i-0abc")
    patched = apply_json_patch(node, scheme.node_ops(node, KEYS, state))
    assert patched["metadata"]["labels"] == {"team": "llm", KEYS.check_status: "Failed",
                                             KEYS.health: "UnschedulablePendingReplacement"}
    assert patched["spec"]["taints"] == [OTHER_TAINT, {"key": KEYS.health, "value": "UnschedulablePendingReplacement",
                                                       "effect": "NoSchedule"}]
    reasons = json.loads(patched["metadata"]["annotations"][KEYS.reasons])
    assert reasons["instance_id"] == "i-0abc" and reasons["reasons"][0]["gpu"]["uuid"] == "GPU-3"
    passed = apply_json_patch(patched, scheme.node_ops(patched, KEYS, scheme.from_verdict(document())))
    assert passed["spec"]["taints"] == [OTHER_TAINT]  # our taint gone, theirs kept


def test_reasons_annotation_is_bounded():
    many = [dict(GPU3_FAULT, message="x" * 2000) for _ in range(50)]
    text = scheme.reasons_text(document("Failed", "Replace", many))
    shown = json.loads(text)
    assert len(text) <= scheme.MAX_ANNOTATION_CHARS and shown["truncated"] == 50 - len(shown["reasons"]) > 0


@pytest.fixture
def api():
    with Emulator() as emulator:
        configuration = client.Configuration(host=emulator.url)
        yield emulator, Kube(client.ApiClient(configuration), timeout_s=5, backoff_s=0.01)


def test_passed_node_becomes_schedulable_and_gets_an_event(api):
    emulator, kube = api
    emulator.add_node("gpu-1", {"team": "llm"}, [OTHER_TAINT, scheme.taint(KEYS, scheme.joining())],
                      "aws:///us-east-2b/i-0123456789abcdef0")
    state = write_verdict(kube, "gpu-1", Report.from_dict(document()))
    node = emulator.nodes["gpu-1"]
    assert state.health == "Schedulable" and node["spec"]["taints"] == [OTHER_TAINT]
    assert node["metadata"]["labels"][KEYS.check_status] == "Passed" and node["metadata"]["labels"]["team"] == "llm"
    [event] = emulator.events
    assert (event["reason"], event["type"], event["involvedObject"]["name"]) == ("DeepHealthCheckPassed", "Normal", "gpu-1")
    assert "i-0123456789abcdef0" in event["message"]  # the instance ID from spec.providerID
    assert any("json-patch" in ctype for method, _, ctype in emulator.requests if method == "PATCH")


def test_failed_node_pending_replacement_with_annotation_and_warning(api):
    emulator, kube = api
    emulator.add_node("gpu-2", provider_id="aws:///us-east-2b/i-0fedcba987654321")
    write_verdict(kube, "gpu-2", Report.from_dict(document("Failed", "Replace", [GPU3_FAULT])))
    node = emulator.nodes["gpu-2"]
    assert node["metadata"]["labels"][KEYS.health] == "UnschedulablePendingReplacement"
    assert node["spec"]["taints"] == [{"key": KEYS.health, "value": "UnschedulablePendingReplacement", "effect": "NoSchedule"}]
    assert "GPU 3" in json.loads(node["metadata"]["annotations"][KEYS.reasons])["reasons"][0]["message"]
    assert emulator.events[0]["type"] == "Warning" and "612 TFLOP/s" in emulator.events[0]["message"]


def test_a_concurrent_change_is_kept_and_the_patch_reapplied(api):
    emulator, kube = api
    emulator.add_node("gpu-3", {"team": "llm"})

    def someone_else_labels_the_node():
        node = emulator.nodes["gpu-3"]
        node["metadata"]["labels"]["owner"] = "alice"
        node["metadata"]["resourceVersion"] = "999"

    emulator.before_patch.append(someone_else_labels_the_node)
    write_verdict(kube, "gpu-3", Report.from_dict(document()))
    labels = emulator.nodes["gpu-3"]["metadata"]["labels"]
    assert labels["owner"] == "alice" and labels[KEYS.check_status] == "Passed"
    assert [m for m, p, _ in emulator.requests if p == "/api/v1/nodes/gpu-3"].count("PATCH") == 2


@pytest.mark.parametrize(("status", "headers"), [(500, {}), (503, {}), (429, {"Retry-After": "0"}), (409, {})])
def test_transient_faults_are_retried(api, status, headers):
    emulator, kube = api
    emulator.add_node("gpu-4")
    emulator.fail_next("PATCH", "/api/v1/nodes/gpu-4", status, headers=headers)
    emulator.fail_next("POST", "/api/v1/namespaces/default/events", 500)
    write_verdict(kube, "gpu-4", Report.from_dict(document()))
    assert emulator.nodes["gpu-4"]["metadata"]["labels"][KEYS.check_status] == "Passed" and len(emulator.events) == 1


def test_errors_become_dhcs_own(api):
    emulator, kube = api
    with pytest.raises(K8sNotFound, match="read node ghost: not found"):
        kube.node("ghost")
    emulator.add_node("gpu-5")
    for _ in range(10):
        emulator.fail_next("GET", "/api/v1/nodes/gpu-5", 500)
    with pytest.raises(K8sError, match="HTTP 500"):
        kube.node("gpu-5")


def test_unreachable_api_server():
    kube = Kube(client.ApiClient(client.Configuration(host="http://127.0.0.1:9")), timeout_s=1, attempts=2,
                backoff_s=0.01)
    with pytest.raises(K8sError, match="unreachable"):
        kube.node("any")


@pytest.mark.slow
def test_dhc_run_marks_its_own_node(tmp_path):
    with Emulator() as emulator:
        emulator.add_node("cpu-node", {"team": "llm"}, [scheme.taint(KEYS, scheme.joining())],
                          "aws:///us-east-2a/i-0aaaabbbbccccdddd")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "KUBE"))}
        env.update(DHC_IMDS="off", NODE_NAME="cpu-node", KUBECONFIG=str(emulator.kubeconfig(tmp_path)))
        proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--check", "stress.inventory", "--sink", "kubernetes",
                               "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "node cpu-node marked Passed / Schedulable" in proc.stderr
        node = emulator.nodes["cpu-node"]
        assert node["spec"]["taints"] == [] and node["metadata"]["labels"]["team"] == "llm"
        assert emulator.events[0]["reason"] == "DeepHealthCheckPassed"
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--check", "stress.inventory", "--sink", "kubernetes",
                           "--out", str(tmp_path / "r2")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "sink kubernetes failed, the local report is intact" in proc.stderr


def self_signed(folder):
    """A CA-less self-signed certificate for 127.0.0.1, as the in-cluster CA bundle for the test."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    (folder / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return folder / "ca.crt", folder / "tls.key"


def test_in_cluster_configuration_uses_the_service_account(tmp_path):
    pytest.importorskip("cryptography", reason="a test certificate needs cryptography")
    from dhc.k8s.client import in_cluster_client
    cert, key = self_signed(tmp_path)
    (tmp_path / "token").write_text("sa-token-123")
    with Emulator(tls=(cert, key)) as emulator:
        emulator.add_node("in-pod")
        api = in_cluster_client(str(tmp_path / "token"), str(cert),
                                {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(emulator.port)})
        assert Kube(api, timeout_s=5).node("in-pod")["metadata"]["name"] == "in-pod"
        assert emulator.authorizations[-1].lower() == "bearer sa-token-123"  # the scheme is case-insensitive


# -- the check pod's termination message: what the controller reads instead of trusting the node ----------------
from dhc.k8s import message  # noqa: E402
from dhc.model.report import Report  # noqa: E402


def test_the_verdict_message_round_trips():
    text = message.encode(document("Failed", "Replace", [GPU3_FAULT]), "stress")
    verdict = message.decode(text)
    assert (verdict.status, verdict.action, verdict.stage, verdict.run_id, verdict.instance_type) == (
        "Failed", "Replace", "stress", "r1", "p5.48xlarge")
    assert verdict.reasons[0].device == Device("gpu", 3, uuid="GPU-3", serial="S3", pci_bus_id="00000000:86:00.0")
    assert verdict.reasons[0].value == 612.0 and verdict.truncated == 0


def test_a_long_verdict_is_cut_to_fit_the_4096_bytes_kubernetes_keeps():
    many = [dict(GPU3_FAULT, message="é" * 500 + f" fault {i}") for i in range(60)]
    text = message.encode(document("Failed", "Replace", many), "final")
    verdict = message.decode(text)
    assert len(text.encode()) <= 4096 and verdict.status == "Failed"
    assert 0 < len(verdict.reasons) < 60 and verdict.truncated == 60 - len(verdict.reasons)
    assert verdict.reasons[0].message.endswith("...")


@pytest.mark.parametrize(("text", "why"), [
    ("", "the termination message is empty"),
    ("   \n", "the termination message is empty"),
    ("Traceback (most recent call last):", "expected a JSON dhc verdict, got 'Traceback"),
    ('{"status": "Passed"}', 'expected a dhc verdict ("dhc": 1)'),
    ('{"dhc": 2, "status": "Passed"}', 'expected a dhc verdict ("dhc": 1)'),
    ('{"dhc": 1, "status": "Fine", "action": "None", "stage": "final"}', "verdict status: expected one of Passed"),
    ('{"dhc": 1, "status": "Passed", "action": "None", "stage": "final", "run_id": "r", "instance_id": "i",'
     ' "instance_type": "p5.48xlarge", "reasons": "none"}', "verdict reasons: expected a list of objects"),
    ('{"dhc": 1, "status": "Passed", "action": "None", "stage": "final", "run_id": "", "instance_id": "i"}',
     "verdict run_id: expected a non-empty string"),
    ('{"dhc": 1, "status": "Failed", "action": "Replace", "stage": "final", "run_id": "r", "instance_id": "i",'
     ' "instance_type": "p5.48xlarge", "reasons": [{"check": "stress.gemm", "status": "Broken", "action": "Replace",'
     ' "message": "m"}]}', "verdict reasons[0].status: expected one of Passed, Failed, Incomplete, Skipped, got 'Broken'"),
])
def test_a_message_that_is_not_a_verdict_is_named_never_guessed(text, why):
    with pytest.raises(message.MessageError) as caught:
        message.decode(text)
    assert why in str(caught.value)


@pytest.mark.slow
def test_dhc_run_hands_its_verdict_over_in_the_termination_message(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "KUBE"))}
    env.update(DHC_IMDS="off", NODE_NAME="cpu-node", DHC_TERMINATION_LOG=str(tmp_path / "termination-log"))
    argv = [sys.executable, "-m", "dhc", "run", "--check", "stress.inventory", "--sink", "termination", "--stage", "stress"]
    proc = subprocess.run([*argv, "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=120)
    verdict = message.decode((tmp_path / "termination-log").read_text())
    assert proc.returncode == message.EXIT_CODES[verdict.status], proc.stderr  # what the controller cross-checks
    assert verdict.stage == "stress" and verdict.run_id and "handed to the controller" in proc.stderr
    report = json.loads(next((tmp_path / "r").glob("**/report.json")).read_text())
    assert (verdict.status, verdict.run_id) == (report["verdict"]["status"], report["run"]["run_id"])
    env["DHC_TERMINATION_LOG"] = str(tmp_path / "missing" / "termination-log")
    proc = subprocess.run([*argv, "--out", str(tmp_path / "r2")], capture_output=True, text=True, env=env, timeout=120)
    assert "sink termination failed, the local report is intact: cannot write" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.returncode == message.EXIT_CODES[verdict.status]


@pytest.mark.parametrize(("image", "ok"), [
    ("dhc-node:0.1.0", True), ("registry.example.com:5000/dhc/dhc-node:2024.08.1", True),
    ("dhc-node@sha256:" + "a" * 64, True), ("dhc-node:latest", False), ("dhc-node", False),
    ("registry.example.com:5000/dhc-node", False), ("dhc-node@sha256:abc", False),
])
def test_the_controller_runs_only_a_pinned_image(image, ok):
    from dhc.controller.jobs import pinned_image
    if ok:
        assert pinned_image(image) == image
    else:
        with pytest.raises(ValueError, match="pinned build|digest must be"):
            pinned_image(image)


@pytest.mark.parametrize("args", [[], ["--image", "dhc-node:latest"]])
def test_dhc_controller_without_a_pinned_image_exits_2(args):
    proc = subprocess.run([sys.executable, "-m", "dhc", "controller", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--image" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("message", "conflict"), [
    ("the server rejected our request due to an error in our request", True),  # a failed test op, as sent
    ("testing value /metadata/resourceVersion failed: test failed", True),  # json-patch's own words
    ('JobSet.jobset.x-k8s.io "latest" is invalid: spec.replicatedJobs: Invalid value: "array": field is immutable',
     False),
    ('Job.batch "test-run" is invalid: spec.template: Invalid value: "object": field is immutable', False)])
def test_only_a_json_patch_that_did_not_apply_is_a_conflict_never_a_422_naming_test(message, conflict):
    from kubernetes.client.rest import ApiException

    from dhc.k8s.apierrors import K8sConflict, translate

    exc = ApiException(status=422, reason="Unprocessable Entity")
    exc.body = json.dumps({"kind": "Status", "code": 422, "reason": "Invalid", "message": message})
    error = translate("patch jobsets default/latest", exc)
    assert isinstance(error, K8sConflict) is conflict and error.permanent is not conflict
    assert error.detail == message
