"""Job auto-resume's pure parts on their own: the pod shapes a node fault leaves (dhc.resume.faults), free
capacity per pod template (dhc.resume.capacity), the bounded histogram, an unreadable wait start."""

from datetime import UTC, datetime

import pytest

from dhc.k8s.workloads import JOB, JOBSET, PYTORCHJOB
from dhc.resume import faults, state
from dhc.resume.capacity import Capacity
from dhc.resume.metrics import BUCKETS, Recoveries
from dhc.resume.state import Record, ResumeKeys, ResumeSettings

KEYS = ResumeKeys("sagemaker.amazonaws.com")
T = "2026-03-01T10:00:00Z"


def pod(phase="Running", restarts=0, last=None, **meta):
    status = {"name": "pytorch", "restartCount": restarts} | ({"lastState": {"terminated": last}} if last else {})
    return {"metadata": {"uid": "u1", "creationTimestamp": "2026-03-01T09:00:00Z"} | meta,
            "status": {"phase": phase, "containerStatuses": [status]}}


def test_a_container_restarted_in_place_is_a_sign_each_time_and_a_known_restart_is_not():
    ended = {"exitCode": 137, "reason": "Error", "finishedAt": T}
    [sign] = faults.signs(pod(), pod(restarts=1, last=ended), "MODIFIED")
    assert sign.key == "u1/pytorch/restart-1" and "restarted in place after Error (exit code 137)" in sign.reason
    assert sign.at == datetime(2026, 3, 1, 10, tzinfo=UTC) and not sign.deletion
    assert faults.signs(pod(restarts=1, last=ended), pod(restarts=1, last=ended), "MODIFIED") == []
    [listed] = faults.signs(None, pod(restarts=2, last=ended), "ADDED")  # first seen: dated by lastState
    assert listed.key == "u1/pytorch/restart-2"


@pytest.mark.parametrize("shape,reason", [
    ("deletion", "terminating"), ("disruption", "terminating (DisruptionTarget: DeletionByTaintManager)")])
def test_a_pod_terminating_or_marked_disruption_target_is_a_deletion_sign(shape, reason):
    seen = pod(deletionTimestamp=T)
    if shape == "disruption":
        seen["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                                         "lastTransitionTime": T}]
    [sign] = faults.signs(None, seen, "MODIFIED")
    assert sign.reason == reason and sign.deletion and sign.at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert not faults.live(seen)


def test_a_deleted_pod_is_dated_by_its_deletion_timestamp():
    [sign] = faults.signs(None, pod(deletionTimestamp=T), "DELETED")
    assert sign.reason == "deleted" and sign.at == datetime(2026, 3, 1, 10, tzinfo=UTC)


def node(name, gpus="8", **labels):
    return {"metadata": {"name": name, "labels": {KEYS.health: "Schedulable"} | labels},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "allocatable": {"nvidia.com/gpu": gpus}}}


def job(worker_selector, gpus=8):
    def replica(selector):
        container = {"name": "pytorch", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
        return {"replicas": 1, "template": {"spec": {"nodeSelector": selector, "containers": [container]}}}
    return {"metadata": {"name": "train", "namespace": "default"}, "spec": {"pytorchReplicaSpecs": {
        "Master": replica({KEYS.health: "Schedulable"}), "Worker": replica(worker_selector)}}}


def test_every_template_is_matched_on_its_own_selector_and_gpus_and_busy_nodes_are_not_free():
    nodes = {n["metadata"]["name"]: n for n in (node("a"), node("b", pool="big"), node("c", gpus="4", pool="big"),
                                                 node("d", pool="big"))}
    busy = {"d": {("PyTorchJob", "default", "other")}}
    assert Capacity(nodes, KEYS, busy).claim(PYTORCHJOB, job({"pool": "big"})) == (True, 2)  # a, then b
    assert Capacity(nodes, KEYS, busy).claim(PYTORCHJOB, job({"pool": "gpu-less"})) == (False, 1)
    one = Capacity(nodes, KEYS, {})
    assert one.claim(PYTORCHJOB, job({"pool": "big"}))[0] and one.promised == {"a", "b"}
    assert one.claim(PYTORCHJOB, job({"pool": "big"})) == (False, 1)  # d only: c has 4 GPUs, a and b promised


def test_pods_are_packed_per_node_by_gpu_and_a_pod_without_gpus_fits_any_admitting_node():
    nodes = {n["metadata"]["name"]: n for n in (node("a"), node("b"))}
    batch = {"metadata": {"name": "etl", "namespace": "default"}, "spec": {"parallelism": 8, "template": {"spec": {
        "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}}
    assert Capacity(nodes, KEYS, {}).claim(JOB, batch) == (True, 8)  # two idle 8-GPU nodes hold 8 one-GPU pods
    batch["spec"]["parallelism"] = 17
    assert Capacity(nodes, KEYS, {}).claim(JOB, batch) == (False, 16)  # 16 GPUs, not 17
    batch["spec"]["template"]["spec"]["containers"][0]["resources"] = {}
    assert Capacity({"a": node("a", gpus="0")}, KEYS, {}).claim(JOB, batch) == (True, 17)  # no GPUs asked


def test_the_most_constrained_template_is_placed_first():
    nodes = {n["metadata"]["name"]: n for n in (node("a", size="big"), node("b"))}
    master_anywhere = job({"size": "big"})
    master_anywhere["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["nodeSelector"] = {}
    one = Capacity(nodes, KEYS, {})
    assert one.claim(PYTORCHJOB, master_anywhere) == (True, 2) and one.promised == {"a", "b"}  # Worker on a


@pytest.mark.parametrize("spec,count", [
    ({"parallelism": 4, "completions": 2}, 2), ({"parallelism": 4}, 4), ({}, 1), ({"parallelism": 2, "completions": 9}, 2),
    ({"parallelism": 0}, 0)])
def test_a_jobs_pods_at_once_are_min_parallelism_completions(spec, count):
    batch = {"metadata": {"name": "etl", "namespace": "default"}, "spec": spec | {"template": {"spec": {
        "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}}}}
    assert state.replicas(JOB, batch) == count
    assert Capacity({"a": node("a")}, KEYS, {}).claim(JOB, batch) == (count <= 1, min(count, 1))


def test_zero_replicas_are_none_and_absent_replicas_are_one():
    zero = job({KEYS.health: "Schedulable"})
    zero["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 0
    assert state.replicas(PYTORCHJOB, zero) == 1
    assert Capacity({"a": node("a")}, KEYS, {}).claim(PYTORCHJOB, zero) == (True, 1)  # the Master alone
    del zero["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"]
    assert state.replicas(PYTORCHJOB, zero) == 2
    jobset = {"metadata": {"name": "js", "namespace": "default"}, "spec": {"replicatedJobs": [
        {"name": "w", "replicas": 2, "template": {"spec": {"parallelism": 3, "completions": 2, "template": {
            "spec": {"containers": [{"name": "c"}]}}}}}]}}
    assert state.replicas(JOBSET, jobset) == 4


def test_the_recovery_histogram_stays_bounded():
    seen = Recoveries()
    for seconds in range(10_000):
        seen.add(float(seconds))
    snap = seen.snapshot()
    assert snap["count"] == 10_000 and len(snap["buckets"]) == len(BUCKETS) and snap["buckets"][0] == 31


def test_an_unreadable_wait_start_is_expired_and_gives_up_with_why():
    from dhc.resume.loop import Resumer

    assert state.age_s("yesterday", datetime.now(UTC)) == float("inf")
    record = Record(phase="waiting", since="yesterday")
    obj = {"metadata": {"name": "js", "namespace": "default", "annotations": {KEYS.state: record.text()}},
           "spec": {"replicatedJobs": []}}
    change, _ = Resumer(None, ResumeSettings())._wait_or_restart(JOBSET, obj, Capacity({}, KEYS, {}))
    status = change["metadata"]["annotations"][KEYS.status]
    assert "wait start 'yesterday' is unreadable" in status and "given-up" in change["metadata"]["annotations"][KEYS.state]
