"""Job auto-resume against the emulator over real HTTP (the real kubernetes client), with the training
operator, Job controller and scheduler stand-ins of k8s_workloads doing what the real ones do."""

import copy
import threading

from k8s_workloads import Workloads
from kubernetes import client
from waiting import wait_for

from dhc.k8s.client import Kube
from dhc.resume import state
from dhc.resume.loop import Resumer, ResumeSettings
from dhc.resume.state import ResumeKeys

PREFIX = "sagemaker.amazonaws.com"
KEYS = ResumeKeys(PREFIX)
HEALTH = f"{PREFIX}/node-health-status"
GPUS = {"limits": {"nvidia.com/gpu": "8"}}  # a training pod takes its node's GPUs
PTJ = "/apis/kubeflow.org/v1/namespaces/default/pytorchjobs/train"


def set_health(emulator, name, health):
    """What dhc's agent/controller write: the health label, and a NoSchedule taint unless Schedulable."""
    with emulator.lock:
        node = copy.deepcopy(emulator.nodes[name])
        node["metadata"]["labels"][HEALTH] = health
        node["spec"]["taints"] = [] if health == "Schedulable" else [
            {"key": HEALTH, "value": health, "effect": "NoSchedule"}]
        emulator._record("nodes", "MODIFIED", node)
        emulator.nodes[name] = node


def add_nodes(emulator, healthy, unhealthy=()):
    ready = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
             "allocatable": {"nvidia.com/gpu": "8"}}
    for name in healthy + tuple(unhealthy):
        emulator.add_node(name, {HEALTH: "Schedulable"}, status=copy.deepcopy(ready))
    for name in unhealthy:
        set_health(emulator, name, "Unschedulable")


def pytorchjob(max_retries="2", policy="OnFailure", add_selector="true", workers=1):
    template = {"spec": {"containers": [{"name": "pytorch", "image": "trainer:1", "resources": GPUS}]}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "train", "annotations": {
        KEYS.enabled: "true", KEYS.max_retries: max_retries, KEYS.add_selector: add_selector}},
        "spec": {"pytorchReplicaSpecs": {
            "Master": {"replicas": 1, "restartPolicy": policy, "template": copy.deepcopy(template)},
            "Worker": {"replicas": workers, "restartPolicy": policy, "template": copy.deepcopy(template)}}}}


class Resuming:
    def __init__(self, emulator, **overrides):
        kube = Kube(client.ApiClient(client.Configuration(host=emulator.url)), timeout_s=5, backoff_s=0.01)
        # window_s: a failure is seen through a watch that a loaded machine may deliver seconds late; the tests
        # about an expired window pass a short one
        settings = ResumeSettings(prefix=PREFIX, **({"poll_s": 0.1, "window_s": 30, "watch_timeout_s": 3} | overrides))
        self.resumer, self.stop = Resumer(kube, settings), threading.Event()
        self.thread = threading.Thread(target=self.resumer.run, args=(self.stop,), daemon=True)

    def passes(self, count=2):
        start = self.resumer.passes
        wait_for(lambda: self.resumer.passes >= start + count, what=f"{count} more passes")

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.resumer.passes and self.resumer.listed == {k.kind for k in self.resumer.kinds},
                 what="the resumer listing and watching")
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def record(workloads, plural="pytorchjobs", name="train"):
    return state.Record.of(workloads.get(plural, name), KEYS)


def events(emulator, reason):
    return [e for e in emulator.events if e.get("reason") == reason]


def running(workloads, name="train", label="training.kubeflow.org/job-name", count=2):
    pods = [p for p in workloads.pods_of(name, label) if p["status"].get("phase") == "Running"]
    return pods if len(pods) >= count else None


def pod_on(workloads, node, name="train"):
    return next(p for p in workloads.pods_of(name) if p["spec"].get("nodeName") == node)


def test_a_node_fault_suspends_waits_for_capacity_then_resumes_on_healthy_nodes(emulator):
    add_nodes(emulator, ("n0", "n1"), unhealthy=("n2",))
    with Workloads(emulator) as work, Resuming(emulator) as run:
        work.add("pytorchjobs", pytorchjob())
        wait_for(lambda: running(work), what="the job's two pods running")
        victim = pod_on(work, "n1")
        set_health(emulator, "n1", "UnschedulablePendingReplacement")  # the agent's mark
        work.fail_pod(victim["metadata"]["name"], exit_code=137)
        wait_for(lambda: events(emulator, "JobInterruptedByNodeFault"), what="the job interrupted")
        job = work.get("pytorchjobs", "train")
        assert job["spec"]["runPolicy"]["suspend"] is True
        wait_for(lambda: "(1 fit now)" in work.get("pytorchjobs", "train")["metadata"]["annotations"][KEYS.status],
                 what="the wait said on the job")
        assert "waiting for Schedulable nodes for 2 pods" in work.get("pytorchjobs", "train")["metadata"]["annotations"][KEYS.status]
        [interrupted] = events(emulator, "JobInterruptedByNodeFault")
        assert interrupted["type"] == "Warning" and interrupted["involvedObject"]["kind"] == "PyTorchJob"
        assert "n1" in interrupted["message"] and "UnschedulablePendingReplacement" in interrupted["message"]
        [seen] = record(work).interruptions  # OnFailure: the kubelet restarted the container in place
        assert seen["node"] == "n1" and seen["pod"] == victim["metadata"]["name"] and "137" in seen["reason"]
        assert "restarted in place" in seen["reason"]
        wait_for(lambda: run.resumer.snapshot()["waiting"] == 1, what="the wait counted")
        assert not events(emulator, "JobResumed")
        set_health(emulator, "n2", "Schedulable")  # the replacement passed its deep check
        wait_for(lambda: record(work).phase == "running" and running(work), what="the job resumed")
        pods = running(work)
        assert {p["spec"]["nodeName"] for p in pods} == {"n0", "n2"}
        assert all(p["spec"]["nodeSelector"] == {HEALTH: "Schedulable"} for p in pods)
        wait_for(lambda: events(emulator, "JobResumed"), what="the Event of the restart")
        wait_for(lambda: run.resumer.snapshot()["recoveries"], what="the time to running again measured")
        assert record(work).retries == 1 and len(events(emulator, "JobResumed")) == 1
        assert run.resumer.snapshot()["tally"]["resumed"] == 1


def test_a_failure_on_a_healthy_node_is_left_to_the_job(emulator):
    add_nodes(emulator, ("n0", "n1", "n2"))
    with Workloads(emulator) as work, Resuming(emulator, window_s=0.3) as run:
        work.add("pytorchjobs", pytorchjob())
        wait_for(lambda: running(work), what="the job running")
        work.fail_pod(pod_on(work, "n1")["metadata"]["name"], exit_code=1)  # the trainer's own bug
        wait_for(lambda: run.resumer.tally["left-alone"] == 1, what="the failure judged the job's own")
        run.passes(3)  # its deletion by the operator, seen after, is no second failure
        assert run.resumer.tally["left-alone"] == 1
        job = work.get("pytorchjobs", "train")
        assert KEYS.state not in job["metadata"]["annotations"] and "runPolicy" not in job["spec"]
        assert not emulator.events and not [r for r in emulator.requests if r[0] == "PATCH"]


def test_a_node_that_turns_faulty_within_the_window_counts(emulator):
    add_nodes(emulator, ("n0", "n1", "n2"))
    with Workloads(emulator) as work, Resuming(emulator, window_s=30) as run:
        work.add("pytorchjobs", pytorchjob())
        wait_for(lambda: running(work), what="the job running")
        work.fail_pod(pod_on(work, "n1")["metadata"]["name"], exit_code=139)
        run.passes()
        assert record(work).phase == "running"  # the node looks healthy yet: held, not judged
        set_health(emulator, "n1", "UnschedulablePendingReboot")  # the deep check marks it moments later
        wait_for(lambda: record(work).retries == 1, what="the job resumed")
        assert "UnschedulablePendingReboot" in record(work).interruptions[0]["reason"]


def test_max_retries_stops_and_names_every_interruption(emulator):
    add_nodes(emulator, ("n0", "n1", "n2", "n3"))
    with Workloads(emulator) as work, Resuming(emulator):
        work.add("pytorchjobs", pytorchjob(max_retries="1"))
        wait_for(lambda: running(work), what="the job running")
        first = pod_on(work, "n1")["metadata"]["name"]
        set_health(emulator, "n1", "UnschedulablePendingReplacement")
        work.fail_pod(first)
        wait_for(lambda: record(work).retries == 1 and running(work), what="the first restart")
        worker = next(p for p in running(work) if "worker" in p["metadata"]["name"])
        node = worker["spec"]["nodeName"]
        set_health(emulator, node, "UnschedulablePendingReboot")
        work.fail_pod(worker["metadata"]["name"])
        wait_for(lambda: events(emulator, "JobAutoResumeGaveUp"), what="giving up")
        [gave_up] = events(emulator, "JobAutoResumeGaveUp")
        assert "n1" in gave_up["message"] and node in gave_up["message"] and "1 of 1 restarts used" in gave_up["message"]
        assert "left to its own restartPolicy" in gave_up["message"]
        assert record(work).retries == 1 and len(events(emulator, "JobResumed")) == 1
        assert work.get("pytorchjobs", "train")["spec"]["runPolicy"]["suspend"] is False  # not suspended: its own way
        assert node in work.get("pytorchjobs", "train")["metadata"]["annotations"][KEYS.status]
        assert running(work) and record(work).phase == "given-up"  # the operator's OnFailure kept it running


def test_a_controller_restarted_mid_wait_restarts_the_job_once(emulator):
    add_nodes(emulator, ("n0", "n1"), unhealthy=("n2",))
    with Workloads(emulator) as work:
        with Resuming(emulator):
            work.add("pytorchjobs", pytorchjob())
            wait_for(lambda: running(work), what="the job running")
            set_health(emulator, "n1", "UnschedulablePendingReplacement")
            work.fail_pod(pod_on(work, "n1")["metadata"]["name"])
            wait_for(lambda: record(work).phase == "waiting", what="the job waiting")
        with Resuming(emulator) as second:
            second.passes()
            assert record(work).phase == "waiting" and len(record(work).interruptions) == 1
            set_health(emulator, "n2", "Schedulable")
            wait_for(lambda: record(work).phase == "running" and running(work), what="resumed by the second")
        with Resuming(emulator) as third:
            third.passes(3)
        assert record(work).retries == 1 and len(record(work).interruptions) == 1
        assert len(events(emulator, "JobResumed")) == 1 and len(events(emulator, "JobInterruptedByNodeFault")) == 1


def test_conflicts_on_the_job_are_retried(emulator):
    add_nodes(emulator, ("n0", "n1", "n2"))
    with Workloads(emulator) as work, Resuming(emulator):
        work.add("pytorchjobs", pytorchjob())
        wait_for(lambda: running(work), what="the job running")
        for _ in range(2):
            emulator.fail_next("PATCH", PTJ, 409, {"kind": "Status", "code": 409, "reason": "Conflict"})
        set_health(emulator, "n1", "UnschedulablePendingReplacement")
        work.fail_pod(pod_on(work, "n1")["metadata"]["name"])
        wait_for(lambda: record(work).retries == 1, what="the job resumed despite two conflicts")
        patches = [r for r in emulator.requests if r[0] == "PATCH" and r[1] == PTJ]
        rereads = [r for r in emulator.requests if r[0] == "GET" and r[1] == PTJ]
        assert len(patches) >= 4 and len(rereads) >= 2 and len(record(work).interruptions) == 1


def test_a_job_deleted_while_waiting_is_forgotten(emulator):
    add_nodes(emulator, ("n0", "n1"))
    with Workloads(emulator) as work, Resuming(emulator) as run:
        work.add("pytorchjobs", pytorchjob())
        wait_for(lambda: running(work), what="the job running")
        set_health(emulator, "n1", "UnschedulablePendingReplacement")
        work.fail_pod(pod_on(work, "n1")["metadata"]["name"])
        wait_for(lambda: run.resumer.snapshot()["waiting"] == 1, what="the job waiting")
        work.delete("pytorchjobs", "train")
        wait_for(lambda: run.resumer.snapshot()["waiting"] == 0, what="the deleted job forgotten")
        set_health(emulator, "n1", "Schedulable")
        run.passes(3)
        assert not events(emulator, "JobResumed") and not run.resumer.resuming and not run.resumer.candidates


def test_a_job_its_operator_ended_failed_is_given_up_with_the_reason(emulator):
    add_nodes(emulator, ("n0", "n1", "n2"))
    with Workloads(emulator) as work, Resuming(emulator, window_s=30):
        work.add("pytorchjobs", pytorchjob(policy="Never"))
        wait_for(lambda: running(work), what="the job running")
        work.fail_pod(pod_on(work, "n1")["metadata"]["name"])
        wait_for(lambda: state.finished(work.get("pytorchjobs", "train")) == "Failed", what="the operator's Failed")
        set_health(emulator, "n1", "UnschedulablePendingReplacement")  # within the window: a node fault
        wait_for(lambda: events(emulator, "JobAutoResumeGaveUp"), what="giving up")
        [gave_up] = events(emulator, "JobAutoResumeGaveUp")
        assert "ended Failed on its own" in gave_up["message"] and "n1" in gave_up["message"]
        assert "its Failed condition: JobFailed: Worker replica(s) failed" in gave_up["message"]
        assert "Never" in gave_up["message"] and "runPolicy" not in work.get("pytorchjobs", "train")["spec"]
        assert record(work).retries == 0 and not events(emulator, "JobResumed")

def test_a_node_deleted_under_a_job_is_a_node_fault(emulator):
    add_nodes(emulator, ("n0", "n1", "n2"))
    with Workloads(emulator) as work, Resuming(emulator):
        work.add("pytorchjobs", pytorchjob())
        wait_for(lambda: running(work), what="the job running")
        victim = pod_on(work, "n1")
        emulator.delete_node("n1")  # the instance is gone; the pod garbage collector deletes its pods
        with emulator.lock:
            work._drop(emulator.pods[victim["metadata"]["name"]])
        wait_for(lambda: record(work).retries == 1 and running(work), what="the job resumed")
        [seen] = record(work).interruptions
        assert seen["node"] == "n1" and seen["reason"] == "deleted; node deleted"
        assert "n1" not in {p["spec"]["nodeName"] for p in running(work)}

