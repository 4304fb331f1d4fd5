"""The controller with the real kubernetes client against the emulated API server, faults included.

Check pods hand their verdict over in their termination message; the controller, alone, writes the
node. Tests wait for a positive signal (a request made, a label written, a node looked at again),
never for time to pass.
"""

import threading
import time
from collections import Counter

import pytest

pytest.importorskip("kubernetes", reason="the controller needs the kubernetes client (dhc[kubernetes])")

from kubernetes import client  # noqa: E402
from test_report import report_with_verdict  # noqa: E402
from waiting import wait_for  # noqa: E402

from dhc import thresholds  # noqa: E402
from dhc.controller.jobs import JobSettings, job_name  # noqa: E402
from dhc.controller.loop import Controller, ControllerSettings  # noqa: E402
from dhc.k8s import message, scheme  # noqa: E402
from dhc.k8s.client import Kube  # noqa: E402

KEYS = scheme.Keys()
P5 = {"node.kubernetes.io/instance-type": "p5.48xlarge"}
P5_STATUS = {"capacity": {"nvidia.com/gpu": "8"},
             "allocatable": {"cpu": "191450m", "memory": "2097152000Ki", "nvidia.com/gpu": "8"}}


class Running:
    def __init__(self, emulator, **overrides):
        kube = Kube(client.ApiClient(client.Configuration(host=emulator.url)), timeout_s=5, backoff_s=0.01)
        jobs = overrides.pop("jobs", JobSettings(namespace="dhc", image="dhc-node:test"))
        settings = ControllerSettings(jobs=jobs, workers=2, resync_s=0.5, watch_timeout_s=3, **overrides)
        self.kube, self.stop = kube, threading.Event()
        self.controller = Controller(kube, thresholds.load(), settings)
        self.looked: Counter = Counter()  # (node, decision) -> how often the controller reconciled it so
        reconcile = self.controller.reconcile

        def counted(name):
            kind = reconcile(name)
            self.looked[name, kind] += 1
            return kind

        self.controller.reconcile = counted
        self.thread = threading.Thread(target=self.controller.run, args=(self.stop,), daemon=True)

    def settled(self, node, kind="nothing", times=2):
        """Wait until the controller has looked at ``node`` ``times`` more and decided ``kind`` each time."""
        start = self.looked[node, kind]
        wait_for(lambda: self.looked[node, kind] >= start + times, what=f"{node} looked at again ({kind})")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def labels(emulator, node):
    return emulator.nodes[node]["metadata"]["labels"]


def annotations(emulator, node):
    return emulator.nodes[node]["metadata"].get("annotations") or {}


def document(status, action="None", itype="p5.48xlarge", run_id="r"):
    return report_with_verdict(status, action, [] if status == "Passed" else [
        {"check": "stress.gemm", "status": status, "action": action, "message": "SDC on GPU 2",
         "device": {"kind": "gpu", "index": 2, "uuid": "GPU-2"}}], "i-1", itype, run_id)


def finish(emulator, job, node, status, action="None", stage="stress", itype="p5.48xlarge", exit_code=None, **pod):
    """What the check pod and the Job controller do: the pod ends with its verdict, then the Job ends."""
    text = message.encode(document(status, action, itype), stage)
    code = message.EXIT_CODES[status] if exit_code is None else exit_code
    emulator.run_pod(job, node, text, code, **pod)
    emulator.finish_job(job, succeeded=code == 0)


def test_a_joining_node_is_tainted_labelled_and_gets_a_least_privilege_job(emulator):
    emulator.add_node("gpu-a", dict(P5, team="llm"), [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
                      status=P5_STATUS)
    with Running(emulator):
        wait_for(lambda: emulator.jobs, what="a Job")
        name = job_name("gpu-a", 1, 1)
        wait_for(lambda: labels(emulator, "gpu-a").get(KEYS.check_status) == "InProgress", what="InProgress")
    node = emulator.nodes["gpu-a"]
    assert labels(emulator, "gpu-a")[KEYS.health] == "Unschedulable" and labels(emulator, "gpu-a")["team"] == "llm"
    assert {"key": KEYS.health, "value": "Unschedulable", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
    [job] = emulator.jobs.values()
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert job["metadata"]["name"] == name and (spec["backoffLimit"], spec["ttlSecondsAfterFinished"]) == (0, 3600)
    assert spec["activeDeadlineSeconds"] >= 600 + 900 + 900 + 600  # the quick profile's stress timeouts
    assert "nodeName" not in pod and pod["serviceAccountName"] == "dhc-node"  # the scheduler waits for the GPUs
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-a"]}]}]
    assert pod["automountServiceAccountToken"] is False  # no API access: the verdict leaves in the termination message
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"privileged": False, "allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"], "add": ["IPC_LOCK"]}}
    assert not any("hostPath" in v for v in pod["volumes"])
    resources = container["resources"]
    assert {k: resources["limits"][k] for k in ("nvidia.com/gpu", "vpc.amazonaws.com/efa")} == {
        "nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "32"}
    assert resources["requests"]["cpu"] == "4000m" and resources["limits"]["cpu"] == "191450m"
    assert resources["requests"]["memory"] == f"{(16 + 8) * 1024}Mi"  # 16 GiB plus /dev/shm's 8 GiB
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}  # 1 GiB per GPU
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    assert env["DHC_DCGM_HOSTENGINE"]["value"] == "$(HOST_IP):5555"
    assert [e["name"] for e in container["env"]].index("HOST_IP") < [e["name"] for e in container["env"]].index(
        "DHC_DCGM_HOSTENGINE")  # a $(VAR) reference resolves only to a variable defined before it
    assert (container["terminationMessagePath"], container["terminationMessagePolicy"]) == ("/dev/termination-log", "File")
    command = container["command"]
    assert command[command.index("--sink") + 1] == "termination" and "p5.48xlarge" in command
    assert command[command.index("--stage") + 1] == "stress"
    assert {t["key"] for t in pod["tolerations"]} == {KEYS.health, "nvidia.com/gpu", "vpc.amazonaws.com/efa"}
    writes = [(m, p) for m, p, _ in emulator.requests if m in ("PATCH", "POST") and "events" not in p]
    assert len(writes) == 2  # the join costs one node patch and one Job


GPU8 = {"capacity": {"nvidia.com/gpu": "8"}}


@pytest.mark.parametrize(("labels_", "status", "why"), [
    ({"node.kubernetes.io/instance-type": "ml.g6e.12xlarge"}, {"capacity": {"nvidia.com/gpu": "4"}},
     "is not in thresholds.yaml"),
    ({"node.kubernetes.io/instance-type": "p5.4xlarge", "dhc.dev/deep-health-check": "enabled"}, {},
     "is not in thresholds.yaml"),
    ({"dhc.dev/deep-health-check": "enabled"}, {}, "no node.kubernetes.io/instance-type label"),
    # a GPU node whose type promises no GPUs (or fewer than it has) would pass on a profile that ignores them
    ({"node.kubernetes.io/instance-type": "cpu"}, GPU8,
     "it has 8 GPUs (nvidia.com/gpu capacity) but instance type 'cpu' promises 0"),
    ({"node.kubernetes.io/instance-type": "ml.cpu", "dhc.dev/deep-health-check": "enabled"}, GPU8,
     "it has 8 GPUs (nvidia.com/gpu capacity) but instance type 'ml.cpu' promises 0"),
    ({"node.kubernetes.io/instance-type": "p5.48xlarge"}, {"capacity": {"nvidia.com/gpu": "16"}},
     "it has 16 GPUs (nvidia.com/gpu capacity) but instance type 'p5.48xlarge' promises 8"),
    ({"node.kubernetes.io/instance-type": "p5.48xlarge"}, {"capacity": {"nvidia.com/gpu": "8k"}},
     "its nvidia.com/gpu capacity '8k' is not a whole number"),
])
def test_a_node_dhc_cannot_judge_stays_out_of_service_never_checked_as_cpu(emulator, labels_, status, why):
    emulator.add_node("gpu-u", labels_, status=status)
    with Running(emulator) as running:
        wait_for(lambda: labels(emulator, "gpu-u").get(KEYS.check_status) == "Incomplete", what="Incomplete")
        running.settled("gpu-u", "unsupported")
    node = emulator.nodes["gpu-u"]
    assert labels(emulator, "gpu-u")[KEYS.health] == "Unschedulable"
    assert {"key": KEYS.health, "value": "Unschedulable", "effect": "NoSchedule"} in node["spec"]["taints"]
    reason = annotations(emulator, "gpu-u")[KEYS.reasons]
    assert "dhc cannot judge this node" in reason and "thresholds.yaml" in reason
    assert why in reason and f"{KEYS.request}=recheck" in reason
    assert [e["reason"] for e in emulator.events] == ["DeepHealthCheckUnsupported"]  # once, not on every resync
    assert emulator.jobs == {}  # above all, no Job with --instance-type cpu


def test_a_verdict_handed_over_by_the_pod_is_written_by_the_controller(emulator):
    emulator.add_node("gpu-b", P5, provider_id="aws:///us-east-2a/i-0aaaabbbbccccdddd")
    with Running(emulator, batch_window_s=3600):
        wait_for(lambda: emulator.jobs, what="a Job")
        finish(emulator, job_name("gpu-b", 1, 1), "gpu-b", "Failed", "Replace")
        wait_for(lambda: labels(emulator, "gpu-b")[KEYS.check_status] == "Failed", what="Failed")
    assert labels(emulator, "gpu-b")[KEYS.health] == "UnschedulablePendingReplacement"
    reasons = annotations(emulator, "gpu-b")[KEYS.reasons]
    assert "SDC on GPU 2" in reasons and "i-0aaaabbbbccccdddd" in reasons  # the node's own instance ID
    record = annotations(emulator, "gpu-b")[KEYS.record]
    assert f'"job":"{job_name("gpu-b", 1, 1)}"' in record and '"digest":"sha256:' in record
    assert [e["reason"] for e in emulator.events
            if not e["reason"].startswith("Remediation")]  # the dry run's Event: test_remediation == ["DeepHealthCheckStressFailed"]
    assert "i-0aaaabbbbccccdddd" in emulator.events[0]["message"] and len(emulator.jobs) == 1
    pod_lists = [p for m, p, _ in emulator.requests if m == "GET" and "/pods" in p]
    assert pod_lists and "fieldSelector=spec.nodeName%3Dgpu-b" in pod_lists[0]


@pytest.mark.parametrize(("pod", "why"), [
    ({"message": None, "exit_code": 137, "reason": "OOMKilled"},
     "exited 137 (OOMKilled) without a verdict: the termination message is empty"),
    ({"message": "Traceback (most recent call last):\n  File x", "exit_code": 1},
     "without a verdict: expected a JSON dhc verdict, got 'Traceback"),
    ({"status": "Passed", "exit_code": 3}, "it says Passed, which exits 0; its verdict is not used"),
    ({"status": "Passed", "itype": "cpu"}, "it judged instance type 'cpu', the Job asked for 'p5.48xlarge'"),
    ({"status": "Passed", "stage": "final"}, "it is a 'final' verdict, the Job asked for 'stress'"),
    ({"status": "Passed", "owner_uid": "uid-someone-else"}, "is not owned by Job"),
    ({"status": "Incomplete"}, "came out Incomplete: SDC on GPU 2"),
])
def test_a_pod_without_a_trustworthy_verdict_is_a_named_incomplete_try(emulator, pod, why):
    emulator.add_node("gpu-c", P5)
    with Running(emulator, max_attempts=2):
        wait_for(lambda: job_name("gpu-c", 1, 1) in emulator.jobs, what="try 1")
        status = pod.pop("status", None)
        if status is None:
            emulator.run_pod(job_name("gpu-c", 1, 1), "gpu-c", pod.pop("message"), **pod)
            emulator.finish_job(job_name("gpu-c", 1, 1), succeeded=False)
        else:
            finish(emulator, job_name("gpu-c", 1, 1), "gpu-c", status, **pod)
        wait_for(lambda: job_name("gpu-c", 1, 2) in emulator.jobs, what="try 2")
    assert labels(emulator, "gpu-c")[KEYS.check_status] == "InProgress"
    assert emulator.events[0]["reason"] == "DeepHealthCheckRetry" and why in emulator.events[0]["message"]
    assert KEYS.record not in annotations(emulator, "gpu-c")


def test_a_job_without_a_verdict_is_retried_then_failed(emulator):
    emulator.add_node("gpu-c", P5)
    with Running(emulator, max_attempts=2):
        wait_for(lambda: job_name("gpu-c", 1, 1) in emulator.jobs, what="try 1")
        emulator.finish_job(job_name("gpu-c", 1, 1), succeeded=False, reason="DeadlineExceeded",
                            message="Job was active longer than specified deadline")
        wait_for(lambda: job_name("gpu-c", 1, 2) in emulator.jobs, what="try 2")
        emulator.finish_job(job_name("gpu-c", 1, 2), succeeded=True)  # ended, and no pod left a verdict
        wait_for(lambda: labels(emulator, "gpu-c").get(KEYS.check_status) == "Failed", what="Failed")
    node = emulator.nodes["gpu-c"]
    assert labels(emulator, "gpu-c")[KEYS.health] == "UnschedulablePendingReplacement"
    reasons = node["metadata"]["annotations"][KEYS.reasons]
    assert "no verdict after 2 tries" in reasons and f"no pod of Job {job_name('gpu-c', 1, 2)} ran on node gpu-c" in reasons
    assert [e["reason"] for e in emulator.events
            if not e["reason"].startswith("Remediation")]  # the dry run's Event: test_remediation == ["DeepHealthCheckRetry", "DeepHealthCheckFailed"]
    assert "DeadlineExceeded" in emulator.events[0]["message"] and len(emulator.jobs) == 2


def test_a_passed_label_nobody_earned_is_checked(emulator):
    emulator.add_node("gpu-p", dict(P5, **{KEYS.check_status: "Passed", KEYS.health: "Schedulable"}))
    with Running(emulator):
        wait_for(lambda: job_name("gpu-p", 1, 1) in emulator.jobs, what="a Job for the self-labelled node")
        wait_for(lambda: labels(emulator, "gpu-p")[KEYS.check_status] == "InProgress", what="InProgress")
    assert {"key": KEYS.health, "value": "Unschedulable", "effect": "NoSchedule"} in emulator.nodes["gpu-p"]["spec"]["taints"]
    assert emulator.events[0]["reason"] == "DeepHealthCheckUnearned"
    assert "without dhc's record" in emulator.events[0]["message"]


def test_a_stale_pass_from_an_earlier_generation_earns_nothing(emulator):
    """Passed in generation 1, re-checked and given up as Failed in generation 2, then relabelled Passed."""
    record = '{"status":"Passed","stage":"final","node":"gpu-s","job":"dhc-x","pod":"p","run_id":"r","generation":1}'
    emulator.add_node("gpu-s", dict(P5, **{KEYS.check_status: "Passed", KEYS.health: "Schedulable"}),
                      annotations={KEYS.record: record, KEYS.generation: "2", KEYS.attempts: "3"})
    with Running(emulator):
        wait_for(lambda: job_name("gpu-s", 3, 1) in emulator.jobs, what="a Job for the next generation")
        wait_for(lambda: labels(emulator, "gpu-s")[KEYS.check_status] == "InProgress", what="InProgress")
    assert {"key": KEYS.health, "value": "Unschedulable", "effect": "NoSchedule"} in emulator.nodes["gpu-s"]["spec"]["taints"]
    assert emulator.events[0]["reason"] == "DeepHealthCheckUnearned"
    assert "record is of check generation 1, the node's check is at generation '2': a stale pass" in \
        emulator.events[0]["message"]


def test_a_pass_the_controller_wrote_stands_on_its_own_record(emulator):
    """The record's generation is the node's: the controller's own pass is never taken for an unearned one."""
    emulator.add_node("gpu-q", P5)
    with Running(emulator, jobs=JobSettings(namespace="dhc", image="dhc-node:test", connectivity=False)) as running:
        wait_for(lambda: job_name("gpu-q", 1, 1) in emulator.jobs, what="a Job")
        finish(emulator, job_name("gpu-q", 1, 1), "gpu-q", "Passed", stage="final")
        wait_for(lambda: labels(emulator, "gpu-q")[KEYS.check_status] == "Passed", what="Passed")
        running.settled("gpu-q")
    assert '"generation":1' in annotations(emulator, "gpu-q")[KEYS.record]
    assert [e["reason"] for e in emulator.events] == ["DeepHealthCheckPassed"] and len(emulator.jobs) == 1


@pytest.mark.parametrize("status", ["Failed", "Incomplete"])
def test_a_status_dhc_never_wrote_is_a_join(emulator, status):
    """Registered Failed or Incomplete but Schedulable (a launch template's --node-labels): checked like a new node."""
    emulator.add_node("gpu-r", dict(P5, **{KEYS.check_status: status, KEYS.health: "Schedulable"}))
    with Running(emulator):
        wait_for(lambda: job_name("gpu-r", 1, 1) in emulator.jobs, what="the join's Job")
        wait_for(lambda: labels(emulator, "gpu-r")[KEYS.health] == "Unschedulable", what="Unschedulable")
    assert labels(emulator, "gpu-r")[KEYS.check_status] == "InProgress"
    assert {"key": KEYS.health, "value": "Unschedulable", "effect": "NoSchedule"} in emulator.nodes["gpu-r"]["spec"]["taints"]
    assert annotations(emulator, "gpu-r")[KEYS.generation] == "1"


def test_api_faults_cost_no_duplicate_jobs_or_lost_transitions(emulator):
    emulator.fail_next("PATCH", "/api/v1/nodes/gpu-d", 409)
    emulator.fail_next("POST", "/apis/batch/v1/namespaces/dhc/jobs", 500)
    emulator.add_node("gpu-d", P5)
    with Running(emulator) as running:
        wait_for(lambda: job_name("gpu-d", 1, 1) in emulator.jobs, what="the Job despite faults")
        emulator.drop_watches()  # a dropped watch
        emulator.add_node("gpu-e", P5)
        wait_for(lambda: job_name("gpu-e", 1, 1) in emulator.jobs, what="a node seen after the drop")
        emulator.compact()  # 410 Gone for the resuming watch
        emulator.drop_watches()
        emulator.add_node("gpu-f", P5)
        wait_for(lambda: job_name("gpu-f", 1, 1) in emulator.jobs, what="a node seen after 410 Gone")
        for node in ("gpu-d", "gpu-e", "gpu-f"):
            running.settled(node)
    assert sorted(emulator.jobs) == sorted(job_name(n, 1, 1) for n in ("gpu-d", "gpu-e", "gpu-f"))
    creates = [p for m, p, _ in emulator.requests if m == "POST" and p.endswith("/jobs")]
    assert len(creates) >= 4  # the 500 was retried; repeats after that met 409 and created nothing


def test_a_restarted_controller_carries_on_without_duplicates(emulator):
    emulator.add_node("gpu-g", P5)
    with Running(emulator):
        wait_for(lambda: emulator.jobs, what="a Job")
    emulator.finish_job(job_name("gpu-g", 1, 1), succeeded=False, reason="Evicted")
    with Running(emulator, max_attempts=3) as running:
        wait_for(lambda: job_name("gpu-g", 1, 2) in emulator.jobs, what="the retry by the new controller")
        running.settled("gpu-g")
    assert sorted(emulator.jobs) == [job_name("gpu-g", 1, 1), job_name("gpu-g", 1, 2)]


def test_recheck_on_request_and_nodes_that_are_not_ours(emulator):
    record = '{"status":"Passed","stage":"final","node":"gpu-h","job":"dhc-x","pod":"p","run_id":"r","generation":1}'
    emulator.add_node("gpu-h", dict(P5, **{KEYS.check_status: "Passed", KEYS.health: "Schedulable"}),
                      annotations={KEYS.record: record, KEYS.generation: "1"})
    emulator.add_node("cpu-1", {"node.kubernetes.io/instance-type": "m5.large"})
    emulator.add_node("opted", {"dhc.dev/deep-health-check": "enabled", "node.kubernetes.io/instance-type": "g5.xlarge"})
    with Running(emulator) as running:
        wait_for(lambda: job_name("opted", 1, 1) in emulator.jobs, what="the opted-in node's Job")
        running.settled("gpu-h")
        assert not any("gpu-h" in j for j in emulator.jobs)  # passed, with dhc's record: left alone
        emulator.set_node_labels("gpu-h", {KEYS.request: "recheck"})
        wait_for(lambda: job_name("gpu-h", 2, 1) in emulator.jobs, what="the re-check Job")
        wait_for(lambda: KEYS.request not in labels(emulator, "gpu-h"), what="the request label removed")
    assert labels(emulator, "gpu-h")[KEYS.check_status] == "InProgress"
    assert not any("cpu-1" in j for j in emulator.jobs) and "cpu-1" not in str(emulator.requests)


def test_nodes_sharing_their_first_63_characters_are_never_judged_by_each_others_jobs(emulator):
    stem = "ip-10-1-2-3.us-east-2.compute.internal.a-very-long-cluster-suffix-"
    one, two = stem + "one", stem + "two"
    for name in (one, two):
        emulator.add_node(name, P5)
    with Running(emulator, jobs=JobSettings(namespace="dhc", image="dhc-node:test", connectivity=False)):
        wait_for(lambda: len(emulator.jobs) == 2, what="a Job for each node")
        job_one, job_two = job_name(one, 1, 1), job_name(two, 1, 1)
        assert job_one != job_two and set(emulator.jobs) == {job_one, job_two}
        label_one = emulator.jobs[job_one]["metadata"]["labels"]["dhc.dev/node"]
        assert label_one != emulator.jobs[job_two]["metadata"]["labels"]["dhc.dev/node"] and len(label_one) <= 63
        finish(emulator, job_one, two, "Passed", stage="final")  # one's Job, but its pod ran on two
        finish(emulator, job_two, two, "Failed", "Replace", stage="final")
        wait_for(lambda: labels(emulator, two)[KEYS.check_status] == "Failed", what="two Failed")
        wait_for(lambda: job_name(one, 1, 2) in emulator.jobs, what="one's next try")
    assert labels(emulator, one)[KEYS.check_status] == "InProgress"  # never Passed by a pod on another node
    assert f"no pod of Job {job_one} ran on node {one}" in next(
        e["message"] for e in emulator.events if e["involvedObject"]["name"] == one)


def batches(emulator):
    return sorted(name for name in emulator.jobs if name.startswith("dhc-fabric-"))


def test_nodes_whose_stress_passed_test_their_fabric_together(emulator):
    for name in ("gpu-x", "gpu-y"):
        emulator.add_node(name, P5, status=P5_STATUS)
    with Running(emulator, batch_window_s=0.5):
        wait_for(lambda: len(emulator.jobs) == 2, what="two stress Jobs")
        for name in ("gpu-x", "gpu-y"):
            finish(emulator, job_name(name, 1, 1), name, "Passed")  # the stress pods' verdicts
        wait_for(lambda: batches(emulator), what="the connectivity batch")
        [batch] = batches(emulator)
        assert labels(emulator, "gpu-x")[KEYS.health] == "Unschedulable"  # stress alone does not free the node
        assert [e["reason"] for e in emulator.events].count("DeepHealthCheckStressPassed") == 2
        job, pod = emulator.jobs[batch], emulator.jobs[batch]["spec"]["template"]["spec"]
        assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 2, 2)
        assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
            "matchFields"][0]["values"] == ["gpu-x", "gpu-y"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["DHC_NODES"] == "2" and env["DHC_RENDEZVOUS"] == f"{batch}-0.{batch}:29500"
        assert pod["automountServiceAccountToken"] is False and "--sink" in pod["containers"][0]["command"]
        assert batch in emulator.services and emulator.services[batch]["spec"]["clusterIP"] == "None"
        wait_for(lambda: all(annotations(emulator, n).get(KEYS.batch) == batch for n in ("gpu-x", "gpu-y")),
                 what="the nodes marked with their batch")
        # index 0 ran on gpu-y and index 1 on gpu-x: the node is the pod's spec.nodeName, not its index
        emulator.run_pod(batch, "gpu-y", message.encode(document("Failed", "Replace"), "final"), 1, index=0)
        emulator.run_pod(batch, "gpu-x", message.encode(document("Passed"), "final"), 0, index=1)
        emulator.finish_job(batch, succeeded=False)
        wait_for(lambda: labels(emulator, "gpu-x")[KEYS.check_status] == "Passed", what="gpu-x Passed")
        wait_for(lambda: labels(emulator, "gpu-y")[KEYS.check_status] == "Failed", what="gpu-y Failed")
    assert labels(emulator, "gpu-x")[KEYS.health] == "Schedulable" and batches(emulator) == [batch]
    assert f'"job":"{batch}"' in annotations(emulator, "gpu-x")[KEYS.record]


def test_a_batch_without_verdicts_is_tried_again_then_failed(emulator):
    emulator.add_node("gpu-z", P5)
    with Running(emulator, batch_window_s=0.2, max_attempts=2):
        wait_for(lambda: emulator.jobs, what="the stress Job")
        finish(emulator, job_name("gpu-z", 1, 1), "gpu-z", "Passed")
        wait_for(lambda: len(batches(emulator)) == 1, what="the first batch")
        wait_for(lambda: annotations(emulator, "gpu-z").get(KEYS.stage) == "connectivity", what="the node in its batch")
        emulator.finish_job(batches(emulator)[0], succeeded=False, reason="DeadlineExceeded")
        wait_for(lambda: len(batches(emulator)) == 2, what="a second batch")
        wait_for(lambda: annotations(emulator, "gpu-z").get(KEYS.batch) == batches(emulator)[1],
                 what="the node in its second batch")
        emulator.finish_job(batches(emulator)[1], succeeded=True)  # ended, no verdict
        wait_for(lambda: labels(emulator, "gpu-z").get(KEYS.check_status) == "Failed", what="Failed")
    assert "no connectivity verdict after 2 tries" in annotations(emulator, "gpu-z")[KEYS.reasons]


# -- the error model: permanent errors reported once, temporary ones backed off, one worker per node ----
FORBIDDEN = ('nodes "gpu-a" is forbidden: User "system:serviceaccount:dhc:dhc-controller" cannot patch resource '
             '"nodes" in API group "" at the cluster scope')


@pytest.mark.parametrize(("status", "permanent"), [(403, True), (401, True), (400, True), (422, True), (404, True),
                                                   (500, False), (503, False), (429, False), (409, False)])
def test_api_errors_say_whether_trying_again_unchanged_can_help(emulator, status, permanent):
    from kubernetes.client.rest import ApiException

    from dhc.k8s.client import K8sError

    emulator.add_node("gpu-a", P5)
    emulator.inject("PATCH", "/api/v1/nodes/gpu-a", status, message=FORBIDDEN if status == 403 else "")
    kube = Kube(client.ApiClient(client.Configuration(host=emulator.url)), timeout_s=5, attempts=2, backoff_s=0.01)
    with pytest.raises(K8sError) as raised:
        kube.patch_node("gpu-a", lambda n: [{"op": "add", "path": "/metadata/labels/x", "value": "y"}])
    assert raised.value.permanent is permanent and raised.value.what == "patch node gpu-a"
    assert isinstance(raised.value.__cause__, ApiException)  # chained, not swallowed
    if status == 403:
        assert raised.value.detail == FORBIDDEN and FORBIDDEN in str(raised.value)


def test_a_dropped_connection_is_retried_by_the_client_and_costs_no_duplicate_job(emulator):
    emulator.add_node("gpu-a", P5, status=P5_STATUS)
    dropped = emulator.inject("POST", "/apis/batch/v1/namespaces/dhc/jobs", None, times=2)
    with Running(emulator):
        wait_for(lambda: labels(emulator, "gpu-a").get(KEYS.check_status) == "InProgress" and emulator.jobs,
                 what="InProgress with its Job")
    assert dropped["hits"] == 2 and list(emulator.jobs) == [job_name("gpu-a", 1, 1)]


def test_a_forbidden_node_patch_is_reported_once_and_not_retried_until_the_node_changes(emulator, caplog):
    emulator.add_node("gpu-a", P5, status=P5_STATUS)
    emulator.add_node("gpu-b", P5, status=P5_STATUS)  # a witness: resyncs keep looking at it
    forbidden = emulator.inject("PATCH", "/api/v1/nodes/gpu-a", 403, message=FORBIDDEN)
    refused = lambda: [e for e in emulator.events if e["reason"] == "DeepHealthCheckApiRefused"]  # noqa: E731
    with Running(emulator) as run:
        wait_for(refused, what="the Warning Event")
        run.settled("gpu-b", "nothing", times=6)  # three seconds of resyncs every 0.5 s
        assert forbidden["hits"] == 1 and len(refused()) == 1
        [event] = refused()
        assert event["type"] == "Warning" and event["involvedObject"]["name"] == "gpu-a"
        assert "patch node gpu-a refused (HTTP 403)" in event["message"] and FORBIDDEN in event["message"]
        assert "not retried until the node changes" in event["message"]
        logged = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert any("node gpu-a" in m and "patch node gpu-a" in m and FORBIDDEN in m for m in logged)
        assert run.controller.snapshot().tally[("errors", "permanent")] == 1
        from dhc.controller.metrics import ControllerCollector

        [family] = [f for f in ControllerCollector(run.controller.snapshot).collect() if f.name == "dhc_controller_errors"]
        assert {s.labels["kind"]: s.value for s in family.samples if s.name.endswith("_total")} == \
            {"permanent": 1, "temporary": 0}
        emulator.heal(forbidden)  # RBAC fixed; then the node changes
        emulator.set_node_labels("gpu-a", {"team": "llm"})
        wait_for(lambda: labels(emulator, "gpu-a").get(KEYS.check_status) == "InProgress", what="InProgress")
    assert len(refused()) == 1 and job_name("gpu-a", 1, 1) in emulator.jobs


def test_a_server_error_is_retried_with_growing_delays_then_succeeds(emulator):
    from dhc.controller.workqueue import Backoff

    class Recorded(Backoff):
        delays: list[float] = []

        def next(self, name):
            delay = super().next(name)
            self.delays.append(delay)
            return delay

    emulator.add_node("gpu-a", P5, status=P5_STATUS)
    failing = emulator.inject("PATCH", "/api/v1/nodes/gpu-a", 500, times=12)  # the client tries 6 times per call
    run = Running(emulator)
    run.controller.backoff = backoff = Recorded(0.05, 5.0, jitter=lambda: 1.0)
    with run:
        wait_for(lambda: labels(emulator, "gpu-a").get(KEYS.check_status) == "InProgress", what="InProgress")
        wait_for(lambda: backoff.failures("gpu-a") == 0, what="the backoff reset by the success")
    assert failing["hits"] == 12 and backoff.delays == [0.05, 0.1]
    assert run.controller.snapshot().tally[("errors", "temporary")] == 2
    assert not any(e["reason"] == "DeepHealthCheckApiRefused" for e in emulator.events)


def test_a_node_queued_100_times_while_reconciled_is_reconciled_once_more(emulator):
    emulator.add_node("cpu-1", {"node.kubernetes.io/instance-type": "m5.large"})  # not ours: no writes, no events
    run = Running(emulator)
    run.controller.workers, run.controller.resync_s = 1, 3600.0
    inside, release, seen = threading.Event(), threading.Event(), []
    reconcile = run.controller.reconcile

    def blocking(name):
        seen.append(name)
        if len(seen) == 1:
            inside.set()
            release.wait(10)
        return reconcile(name)

    run.controller.reconcile = blocking
    with run:
        assert inside.wait(10)
        for _ in range(100):
            run.controller.enqueue("cpu-1")
        run.controller.enqueue("marker-1")
        release.set()
        wait_for(lambda: seen.count("cpu-1") >= 2 and "marker-1" in seen, what="the second look")
        run.controller.enqueue("marker-2")  # queued behind any third look, were there one
        wait_for(lambda: "marker-2" in seen, what="the marker")
    assert seen.count("cpu-1") == 2


def test_no_two_workers_reconcile_one_node_at_once(emulator):
    for index in range(3):
        emulator.add_node(f"gpu-{index}", P5, status=P5_STATUS)
    run = Running(emulator)
    run.controller.workers = 4
    active, overlaps, lock = Counter(), [], threading.Lock()
    reconcile = run.controller.reconcile

    def recorded(name):
        with lock:
            active[name] += 1
            if active[name] > 1:
                overlaps.append(name)
        try:
            time.sleep(0.005)  # widen the window a second worker would need
            return reconcile(name)
        finally:
            with lock:
                active[name] -= 1

    run.controller.reconcile = recorded
    with run:
        for _ in range(200):
            for index in range(3):
                run.controller.enqueue(f"gpu-{index}")
        for index in range(3):
            run.settled(f"gpu-{index}", "nothing", times=3)
    assert overlaps == []


def test_a_patch_from_a_stale_cached_node_reads_the_node_and_clobbers_nothing(emulator):
    emulator.add_node("gpu-a", dict(P5))
    kube = Kube(client.ApiClient(client.Configuration(host=emulator.url)), timeout_s=5, backoff_s=0.01)
    stale = kube.node("gpu-a")
    emulator.set_node_labels("gpu-a", {"team": "llm"})  # someone else wrote since the cache saw it

    def label_x(node):
        return [] if node["metadata"]["labels"].get("x") == "y" else \
            [{"op": "add", "path": "/metadata/labels/x", "value": "y"}]

    patched = kube.patch_node("gpu-a", label_x, current=stale)
    assert patched["metadata"]["labels"] == dict(P5, team="llm", x="y")
    emulator.set_node_labels("gpu-a", {"x": "z"})
    again = kube.patch_node("gpu-a", label_x, current=patched)  # the cache says nothing to do: not trusted
    assert again["metadata"]["labels"]["x"] == "y" and emulator.nodes["gpu-a"]["metadata"]["labels"]["x"] == "y"


def test_a_missing_namespace_for_the_jobs_is_reported_on_the_node_not_taken_for_a_deleted_node(emulator):
    emulator.add_node("gpu-a", P5, status=P5_STATUS)
    emulator.inject("POST", "/apis/batch/v1/namespaces/dhc/jobs", 404, message='namespaces "dhc" not found')
    with Running(emulator) as run:
        wait_for(lambda: any(e["reason"] == "DeepHealthCheckApiRefused" for e in emulator.events), what="the Event")
        [event] = [e for e in emulator.events if e["reason"] == "DeepHealthCheckApiRefused"]
        assert "create job dhc-gpu-a-" in event["message"] and 'namespaces "dhc" not found' in event["message"]
        # its own patch's watch event may land mid-reconcile: one more look, the same error, not said again
        assert run.controller.snapshot().tally[("errors", "permanent")] in (1, 2)


FORBIDDEN_LIST = ('nodes is forbidden: User "system:serviceaccount:dhc:dhc-controller" cannot list resource "nodes" '
                  'in API group "" at the cluster scope')


def test_a_forbidden_node_list_is_tried_again_with_growing_delays_and_logged_once(emulator, caplog):
    from test_connectivity_groups import RecordedBackoff

    emulator.add_node("gpu-a", P5, status=P5_STATUS)
    refused = emulator.inject("GET", "/api/v1/nodes", 403, message=FORBIDDEN_LIST)
    run = Running(emulator)
    run.controller.list_backoff = backoff = RecordedBackoff(0.05, 10.0)
    with run:
        wait_for(lambda: len(backoff.delays) >= 5, what="five tries of the list")
        emulator.heal(refused)  # RBAC fixed: the list goes through at the next try
        wait_for(lambda: labels(emulator, "gpu-a").get(KEYS.check_status) == "InProgress", what="InProgress")
        wait_for(lambda: backoff.failures("list nodes") == 0, what="the backoff reset by the success")
    assert backoff.delays[:5] == [0.05, 0.1, 0.2, 0.4, 0.8] and refused["hits"] >= 5
    logged = [r.getMessage() for r in caplog.records if "list nodes" in r.getMessage()]
    assert len(logged) == 1 and FORBIDDEN_LIST in logged[0] and "HTTP 403" in logged[0]
    assert [r.levelname for r in caplog.records if "list nodes" in r.getMessage()] == ["ERROR"]
    assert run.controller.snapshot().tally[("errors", "permanent")] >= 5


def test_a_background_thread_that_raises_is_logged_and_started_again(emulator, caplog):
    from dhc.controller.workqueue import Backoff

    run = Running(emulator)
    run.controller.thread_backoff = Backoff(0.01, 0.1)
    calls, again = [], threading.Event()

    def flaky(stop):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in a background thread")
        again.set()
        stop.wait()

    background = run.controller.background
    run.controller.background = lambda: background() + [("flaky", flaky)]
    with run:
        wait_for(again.is_set, what="the thread started again")
    [record] = [r for r in caplog.records if "thread flaky failed unexpectedly" in r.getMessage()]
    assert record.levelname == "ERROR" and record.exc_info is not None and len(calls) == 2
