"""The controller with the real kubernetes client against the emulated API server, faults included."""

import threading
import time

import pytest

pytest.importorskip("kubernetes", reason="the controller needs the kubernetes client (dhc[kubernetes])")

from k8s_emulator import Emulator  # noqa: E402
from kubernetes import client  # noqa: E402

from dhc import thresholds  # noqa: E402
from dhc.controller.jobs import JobSettings, job_name  # noqa: E402
from dhc.controller.loop import Controller, ControllerSettings  # noqa: E402
from dhc.k8s import scheme  # noqa: E402
from dhc.k8s.client import Kube  # noqa: E402
from dhc.sinks.node import write_verdict  # noqa: E402

KEYS = scheme.Keys()
P5 = {"node.kubernetes.io/instance-type": "p5.48xlarge"}


def wait_for(condition, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Running:
    def __init__(self, emulator, **overrides):
        kube = Kube(client.ApiClient(client.Configuration(host=emulator.url)), timeout_s=5, backoff_s=0.01)
        settings = ControllerSettings(jobs=JobSettings(namespace="dhc", image="dhc-node:test"), workers=2,
                                      resync_s=0.5, watch_timeout_s=3, **overrides)
        self.kube, self.stop = kube, threading.Event()
        self.controller = Controller(kube, thresholds.load(), settings)
        self.thread = threading.Thread(target=self.controller.run, args=(self.stop,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture
def emulator():
    with Emulator() as api:
        yield api


def labels(emulator, node):
    return emulator.nodes[node]["metadata"]["labels"]


def verdict(status, action="None"):
    return {"verdict": {"status": status, "action": action, "reasons": [] if status == "Passed" else [
        {"check": "stress.gemm", "status": "Failed", "action": action, "message": "SDC on GPU 2",
         "device": {"kind": "gpu", "index": 2, "uuid": "GPU-2"}}]},
        "instance": {"instance_id": {"value": "i-1"}, "instance_type": {"value": "p5.48xlarge"}}, "run": {"run_id": "r"}}


def test_a_joining_node_is_tainted_labelled_and_gets_its_job(emulator):
    emulator.add_node("gpu-a", dict(P5, team="llm"), [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])
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
    assert job["metadata"]["name"] == name and (spec["backoffLimit"], spec["ttlSecondsAfterFinished"]) == (0, 3600)
    assert spec["activeDeadlineSeconds"] >= 600 + 900 + 900 + 600  # the quick profile's stress timeouts
    assert pod["nodeName"] == "gpu-a" and pod["serviceAccountName"] == "dhc-node"
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8", "vpc.amazonaws.com/efa": "32"}
    assert {t["key"] for t in pod["tolerations"]} == {KEYS.health, "nvidia.com/gpu", "vpc.amazonaws.com/efa"}
    assert "--sink" in pod["containers"][0]["command"] and "p5.48xlarge" in pod["containers"][0]["command"]
    writes = [(m, p) for m, p, _ in emulator.requests if m in ("PATCH", "POST") and "events" not in p]
    assert len(writes) == 2  # the join costs one node patch and one Job


def test_a_verdict_written_by_the_job_stands(emulator):
    emulator.add_node("gpu-b", P5)
    with Running(emulator) as running:
        wait_for(lambda: emulator.jobs, what="a Job")
        write_verdict(running.kube, "gpu-b", verdict("Failed", "Replace"))  # what the Job's sink does
        emulator.finish_job(job_name("gpu-b", 1, 1), succeeded=True)
        time.sleep(1.5)
    assert labels(emulator, "gpu-b")[KEYS.check_status] == "Failed"
    assert labels(emulator, "gpu-b")[KEYS.health] == "UnschedulablePendingReplacement"
    assert len(emulator.jobs) == 1


def test_a_job_without_a_verdict_is_retried_then_failed(emulator):
    emulator.add_node("gpu-c", P5)
    with Running(emulator, max_attempts=2):
        wait_for(lambda: job_name("gpu-c", 1, 1) in emulator.jobs, what="try 1")
        emulator.finish_job(job_name("gpu-c", 1, 1), succeeded=False, reason="DeadlineExceeded",
                            message="Job was active longer than specified deadline")
        wait_for(lambda: job_name("gpu-c", 1, 2) in emulator.jobs, what="try 2")
        emulator.finish_job(job_name("gpu-c", 1, 2), succeeded=True)  # ended, but no verdict on the node
        wait_for(lambda: labels(emulator, "gpu-c").get(KEYS.check_status) == "Failed", what="Failed")
    node = emulator.nodes["gpu-c"]
    assert labels(emulator, "gpu-c")[KEYS.health] == "UnschedulablePendingReplacement"
    assert "no verdict after 2 tries" in node["metadata"]["annotations"][KEYS.reasons]
    reasons = [e["reason"] for e in emulator.events]
    assert reasons == ["DeepHealthCheckRetry", "DeepHealthCheckFailed"]
    assert "DeadlineExceeded" in emulator.events[0]["message"] and len(emulator.jobs) == 2


def test_api_faults_cost_no_duplicate_jobs_or_lost_transitions(emulator):
    emulator.fail_next("PATCH", "/api/v1/nodes/gpu-d", 409)
    emulator.fail_next("POST", "/apis/batch/v1/namespaces/dhc/jobs", 500)
    emulator.add_node("gpu-d", P5)
    with Running(emulator):
        wait_for(lambda: job_name("gpu-d", 1, 1) in emulator.jobs, what="the Job despite faults")
        emulator.drop_watches()  # a dropped watch
        emulator.add_node("gpu-e", P5)
        wait_for(lambda: job_name("gpu-e", 1, 1) in emulator.jobs, what="a node seen after the drop")
        emulator.compact()  # 410 Gone for the resuming watch
        emulator.drop_watches()
        emulator.add_node("gpu-f", P5)
        wait_for(lambda: job_name("gpu-f", 1, 1) in emulator.jobs, what="a node seen after 410 Gone")
        time.sleep(1.0)
    assert sorted(emulator.jobs) == sorted(job_name(n, 1, 1) for n in ("gpu-d", "gpu-e", "gpu-f"))
    creates = [p for m, p, _ in emulator.requests if m == "POST" and p.endswith("/jobs")]
    assert len(creates) >= 4  # the 500 was retried; repeats after that met 409 and created nothing


def test_a_restarted_controller_carries_on_without_duplicates(emulator):
    emulator.add_node("gpu-g", P5)
    with Running(emulator):
        wait_for(lambda: emulator.jobs, what="a Job")
    emulator.finish_job(job_name("gpu-g", 1, 1), succeeded=False, reason="Evicted")
    with Running(emulator, max_attempts=3):
        wait_for(lambda: job_name("gpu-g", 1, 2) in emulator.jobs, what="the retry by the new controller")
        time.sleep(1.0)
    assert sorted(emulator.jobs) == [job_name("gpu-g", 1, 1), job_name("gpu-g", 1, 2)]


def test_recheck_on_request_and_nodes_that_are_not_ours(emulator):
    emulator.add_node("gpu-h", dict(P5, **{KEYS.check_status: "Passed", KEYS.health: "Schedulable"}))
    emulator.add_node("cpu-1", {"node.kubernetes.io/instance-type": "m5.large"})
    emulator.add_node("opted", {"dhc.dev/deep-health-check": "enabled"})
    with Running(emulator):
        wait_for(lambda: job_name("opted", 1, 1) in emulator.jobs, what="the opted-in node's Job")
        time.sleep(0.5)
        assert not any("gpu-h" in j for j in emulator.jobs)  # already passed: left alone
        emulator.set_node_labels("gpu-h", {KEYS.request: "recheck"})
        wait_for(lambda: job_name("gpu-h", 2, 1) in emulator.jobs, what="the re-check Job")
        wait_for(lambda: KEYS.request not in labels(emulator, "gpu-h"), what="the request label removed")
    assert labels(emulator, "gpu-h")[KEYS.check_status] == "InProgress"
    assert not any("cpu-1" in j for j in emulator.jobs) and "cpu-1" not in str(emulator.requests)


def batches(emulator):
    return sorted(name for name in emulator.jobs if name.startswith("dhc-fabric-"))


def test_nodes_whose_stress_passed_test_their_fabric_together(emulator):
    for name in ("gpu-x", "gpu-y"):
        emulator.add_node(name, P5)
    with Running(emulator, batch_window_s=0.5) as running:
        wait_for(lambda: len(emulator.jobs) == 2, what="two stress Jobs")
        assert "--stage" in emulator.jobs[job_name("gpu-x", 1, 1)]["spec"]["template"]["spec"]["containers"][0]["command"]
        for name in ("gpu-x", "gpu-y"):
            write_verdict(running.kube, name, verdict("Passed"), final=False)  # the stress Job's sink
            emulator.finish_job(job_name(name, 1, 1), succeeded=True)
        wait_for(lambda: batches(emulator), what="the connectivity batch")
        [batch] = batches(emulator)
        assert labels(emulator, "gpu-x")[KEYS.health] == "Unschedulable"  # stress alone does not free the node
        job, pod = emulator.jobs[batch], emulator.jobs[batch]["spec"]["template"]["spec"]
        assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 2, 2)
        assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
            "matchFields"][0]["values"] == ["gpu-x", "gpu-y"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["DHC_NODES"] == "2" and env["DHC_RENDEZVOUS"] == f"{batch}-0.{batch}:29500"
        assert batch in emulator.services and emulator.services[batch]["spec"]["clusterIP"] == "None"
        wait_for(lambda: all((emulator.nodes[n]["metadata"].get("annotations") or {}).get(KEYS.batch) == batch
                             for n in ("gpu-x", "gpu-y")), what="the nodes marked with their batch")
        write_verdict(running.kube, "gpu-x", verdict("Passed"))  # the batch pods' sinks: y is the culprit
        write_verdict(running.kube, "gpu-y", verdict("Failed", "Replace"))
        emulator.finish_job(batch, succeeded=True)
        time.sleep(1.0)
    assert (labels(emulator, "gpu-x")[KEYS.check_status], labels(emulator, "gpu-x")[KEYS.health]) == ("Passed", "Schedulable")
    assert labels(emulator, "gpu-y")[KEYS.check_status] == "Failed" and batches(emulator) == [batch]


def test_a_batch_without_verdicts_is_tried_again_then_failed(emulator):
    emulator.add_node("gpu-z", P5)
    with Running(emulator, batch_window_s=0.2, max_attempts=2) as running:
        wait_for(lambda: emulator.jobs, what="the stress Job")
        write_verdict(running.kube, "gpu-z", verdict("Passed"), final=False)
        emulator.finish_job(job_name("gpu-z", 1, 1), succeeded=True)
        wait_for(lambda: len(batches(emulator)) == 1, what="the first batch")
        wait_for(lambda: (emulator.nodes["gpu-z"]["metadata"].get("annotations") or {}).get(KEYS.stage) == "connectivity",
                 what="the node in its batch")
        emulator.finish_job(batches(emulator)[0], succeeded=False, reason="DeadlineExceeded")
        wait_for(lambda: len(batches(emulator)) == 2, what="a second batch")
        wait_for(lambda: (emulator.nodes["gpu-z"]["metadata"].get("annotations") or {}).get(KEYS.batch)
                 == batches(emulator)[1], what="the node in its second batch")
        emulator.finish_job(batches(emulator)[1], succeeded=True)  # ended, no verdict
        wait_for(lambda: labels(emulator, "gpu-z").get(KEYS.check_status) == "Failed", what="Failed")
    assert "no connectivity verdict after 2 tries" in emulator.nodes["gpu-z"]["metadata"]["annotations"][KEYS.reasons]
