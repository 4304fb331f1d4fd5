"""Job auto-resume against the node-fault shapes the kubelet and the control plane really show (a container
restarted in place, a pod Terminating on a NotReady node), and against the gaps a review reproduced: one
incident restarting a job twice, an old failure counted after a controller restart, two jobs resumed on
capacity for one, a Failed job resumed, one kind's list error stopping the others, a second fault lost, a job
that had succeeded suspended, an old failure called healthy."""

import copy
import logging
from datetime import UTC, datetime

import pytest
from k8s_workloads import Workloads
from test_resume import (
    GPUS,
    HEALTH,
    KEYS,
    Resuming,
    add_nodes,
    events,
    pod_on,
    pytorchjob,
    record,
    running,
    set_health,
    wait_for,
)

from dhc.resume import faults as state

LABEL = "batch.kubernetes.io/job-name"


def batch_job(backoff=6):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "etl", "annotations": {KEYS.enabled: "true"}},
            "spec": {"backoffLimit": backoff, "parallelism": 1, "template": {"spec": {
                "restartPolicy": "Never", "nodeSelector": {HEALTH: "Schedulable"},
                "containers": [{"name": "c", "image": "x:1", "resources": GPUS}]}}}}


def cordon(emulator, name, value):
    with emulator.lock:
        node = copy.deepcopy(emulator.nodes[name])
        node["spec"]["unschedulable"] = value
        emulator._record("nodes", "MODIFIED", node)
        emulator.nodes[name] = node


def test_a_pod_terminating_on_a_notready_node_is_one_interruption_until_the_node_goes(emulator):
    add_nodes(emulator, ("n0", "n1", "n2"))
    with Workloads(emulator) as work, Resuming(emulator, window_s=30) as run:
        work.add("pytorchjobs", pytorchjob())
        wait_for(lambda: running(work), what="the job running")
        victim = pod_on(work, "n1")["metadata"]["name"]
        work.node_not_ready("n1")  # the pod stays Running, Terminating, DisruptionTarget
        wait_for(lambda: record(work).retries == 1, what="the job resumed on n0 and n2")
        [seen] = record(work).interruptions
        assert seen["pod"] == victim and "DisruptionTarget: DeletionByTaintManager" in seen["reason"]
        assert "NotReady (NodeStatusUnknown)" in seen["reason"]
        run.passes(3)  # the old pod still Terminating holds its name: not running again yet, not counted
        assert run.resumer.snapshot()["recoveries"]["count"] == 0 and record(work).phase == "running"
        work.remove_node("n1")  # replaced: the pod garbage collector removes the Terminating pod
        wait_for(lambda: running(work), what="every pod running again")
        wait_for(lambda: run.resumer.snapshot()["recoveries"]["count"] == 1, what="the time to running measured")
        run.passes(3)
        assert record(work).retries == 1 and len(record(work).interruptions) == 1
        assert len(events(emulator, "JobResumed")) == 1 and len(events(emulator, "JobInterruptedByNodeFault")) == 1


def test_a_late_deletion_of_a_pod_from_before_the_restart_is_no_second_incident(emulator):
    add_nodes(emulator, ("n0", "n1", "n2", "n3", "n4"))
    with Workloads(emulator) as work, Resuming(emulator, window_s=30) as run:
        work.add("pytorchjobs", pytorchjob(workers=2))
        wait_for(lambda: running(work, count=3), what="the job running")
        w0, w1 = (pod_on(work, p["spec"]["nodeName"]) for p in work.pods_of("train")
                  if p["metadata"]["name"] in ("train-worker-0", "train-worker-1"))
        with emulator.lock:  # w1's node stops answering but nobody has marked or tainted it yet
            node = copy.deepcopy(emulator.nodes[w1["spec"]["nodeName"]])
            node["status"]["conditions"][0] |= {"status": "Unknown"}
            emulator._record("nodes", "MODIFIED", node)
            emulator.nodes[node["metadata"]["name"]] = node
        set_health(emulator, w0["spec"]["nodeName"], "UnschedulablePendingReplacement")
        work.fail_pod(w0["metadata"]["name"], reason="Evicted")
        wait_for(lambda: record(work).retries == 1, what="the first restart")
        work.remove_node(w1["spec"]["nodeName"])  # later: the pod GC deletes w1, dated by its deletionTimestamp
        wait_for(lambda: running(work, count=3), what="every pod running again")
        run.passes(5)
        assert record(work).retries == 1 and record(work).phase == "running"
        assert len(events(emulator, "JobResumed")) == 1


def test_an_old_failure_on_a_node_that_turned_faulty_later_is_not_counted_after_a_controller_restart(emulator, caplog):
    caplog.set_level(logging.INFO, logger="dhc.resume")
    add_nodes(emulator, ("n0", "n1"))
    with Workloads(emulator) as work:
        work.add("jobs", batch_job())
        wait_for(lambda: running(work, "etl", LABEL, 1), what="the Job running")
        first = running(work, "etl", LABEL, 1)[0]
        node, first_name = first["spec"]["nodeName"], first["metadata"]["name"]
        cordon(emulator, node, True)
        work.fail_pod(first["metadata"]["name"], exit_code=1)  # the trainer's own bug; the Job keeps the pod
        wait_for(lambda: (running(work, "etl", LABEL, 1) or [{"spec": {}}])[0]["spec"].get("nodeName") not in
                 (None, node), what="the Job's next pod running elsewhere")
        cordon(emulator, node, False)
        failed = state.failed_at(next(p for p in work.pods_of("etl", LABEL) if p["status"]["phase"] == "Failed"))
        wait_for(lambda: (datetime.now(UTC) - failed).total_seconds() > 1.0, what="the failure older than the window")
        set_health(emulator, node, "UnschedulablePendingReboot")  # much later, unrelated
        with Resuming(emulator, window_s=1.0) as run:  # a controller (re)started now lists the old Failed pod
            run.passes(4)
            assert run.resumer.tally["too-old"] == 1 and run.resumer.tally["left-alone"] == 0  # not "healthy"
        said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"pod default/{first_name}")]
        assert len(said) == 1 and "too old to be this fault" in said[0] and "healthy" not in said[0]
        assert "UnschedulablePendingReboot" in said[0]
        assert record(work, "jobs", "etl").phase == "running" and not record(work, "jobs", "etl").interruptions
        assert not work.get("jobs", "etl")["spec"].get("suspend") and not events(emulator, "JobInterruptedByNodeFault")


def test_two_waiting_jobs_sharing_capacity_for_one_resume_one_at_a_time(emulator):
    add_nodes(emulator, ("n0", "n1", "n2", "n3"))
    with Workloads(emulator) as work, Resuming(emulator) as run:
        for name in ("a", "b"):
            work.add("pytorchjobs", pytorchjob() | {"metadata": pytorchjob()["metadata"] | {"name": name}})
        wait_for(lambda: running(work, "a") and running(work, "b"), what="both jobs running")
        for job in ("a", "b"):
            victim = next(p for p in work.pods_of(job) if "worker" in p["metadata"]["name"])
            set_health(emulator, victim["spec"]["nodeName"], "UnschedulablePendingReplacement")
            work.fail_pod(victim["metadata"]["name"], reason="Evicted")
        wait_for(lambda: {record(work, "pytorchjobs", j).retries for j in "ab"} == {0, 1}, what="one resumed")
        waiting = next(j for j in "ab" if record(work, "pytorchjobs", j).retries == 0)
        wait_for(lambda: "(0 fit now)" in work.get("pytorchjobs", waiting)["metadata"]["annotations"][KEYS.status],
                 what="the other saying it waits")
        run.passes(3)
        assert record(work, "pytorchjobs", waiting).phase == "waiting" and len(events(emulator, "JobResumed")) == 1
        assert not [p for j in "ab" for p in work.pods_of(j) if p["status"]["phase"] == "Pending"]


def test_a_waiting_job_that_ended_failed_is_given_up_naming_its_condition(emulator):
    add_nodes(emulator, ("n0",))
    with Workloads(emulator) as work, Resuming(emulator):
        work.add("jobs", batch_job(backoff=1))
        wait_for(lambda: running(work, "etl", LABEL, 1), what="the Job running")
        set_health(emulator, "n0", "UnschedulablePendingReplacement")
        work.fail_pod(running(work, "etl", LABEL, 1)[0]["metadata"]["name"], reason="Evicted")
        wait_for(lambda: record(work, "jobs", "etl").phase == "waiting", what="the Job waiting")
        with emulator.lock:
            work._condition(emulator.jobs["etl"], "jobs", "Failed", "Job has reached the specified backoff limit")
        set_health(emulator, "n0", "Schedulable")
        wait_for(lambda: events(emulator, "JobAutoResumeGaveUp"), what="giving up")
        [gave_up] = events(emulator, "JobAutoResumeGaveUp")
        assert "ended Failed on its own while it waited" in gave_up["message"]
        assert "JobFailed: Job has reached the specified backoff limit" in gave_up["message"]
        assert not events(emulator, "JobResumed") and record(work, "jobs", "etl").phase == "given-up"


def test_one_kinds_list_error_leaves_the_others_handled_and_is_said_once(emulator, caplog):
    add_nodes(emulator, ("n0", "n1", "n2"))
    caplog.set_level(logging.WARNING, logger="dhc.resume")
    with Workloads(emulator) as work, Resuming(emulator) as run:
        work.add("pytorchjobs", pytorchjob())
        wait_for(lambda: running(work), what="the job running")
        for _ in range(400):
            emulator.fail_next("GET", "/apis/jobset.x-k8s.io/v1alpha2/jobsets", 403,
                               {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "jobsets is forbidden"})
        set_health(emulator, "n1", "UnschedulablePendingReplacement")
        work.fail_pod(pod_on(work, "n1")["metadata"]["name"], reason="Evicted")
        wait_for(lambda: record(work).retries == 1 and running(work), what="the PyTorchJob resumed")
        run.passes(2)
    said = [r.getMessage() for r in caplog.records if "cannot list jobsets" in r.getMessage()]
    assert len(said) == 1 and "403" in said[0] and "the other kinds go on" in said[0]


def test_a_second_fault_while_waiting_is_recorded_without_a_second_retry(emulator):
    add_nodes(emulator, ("n0", "n1", "n2", "n3"), unhealthy=("n4",))
    with Workloads(emulator) as work, Resuming(emulator, poll_s=0.5):
        work.add("pytorchjobs", pytorchjob(workers=2))
        wait_for(lambda: running(work, count=3), what="the job running")
        workers = [p for p in work.pods_of("train") if "worker" in p["metadata"]["name"]]
        for pod in workers:
            set_health(emulator, pod["spec"]["nodeName"], "UnschedulablePendingReplacement")
            work.fail_pod(pod["metadata"]["name"], reason="Evicted")
        wait_for(lambda: len(record(work).interruptions) == 2, what="both interruptions recorded")
        assert {i["node"] for i in record(work).interruptions} == {p["spec"]["nodeName"] for p in workers}
        assert record(work).phase == "waiting" and record(work).retries == 0
        assert len(events(emulator, "JobInterruptedByNodeFault")) == 2


@pytest.mark.parametrize("plural,name,label,done", [
    ("pytorchjobs", "train", "training.kubeflow.org/job-name", "Succeeded"),
    ("jobs", "etl", LABEL, "Complete")])
def test_a_job_that_succeeded_is_never_touched_when_its_node_goes_notready(emulator, plural, name, label, done):
    add_nodes(emulator, ("n0", "n1", "n2"))
    with Workloads(emulator) as work, Resuming(emulator, window_s=30) as run:
        work.add(plural, pytorchjob() if plural == "pytorchjobs" else batch_job())
        wait_for(lambda: running(work, name, label, 2 if plural == "pytorchjobs" else 1), what="the job running")
        with emulator.lock:  # its operator marked it done; a pod still holds its node
            work._condition(emulator.jobs[name] if plural == "jobs" else work.objects[(plural, "default", name)],
                            plural, done, "the job finished")
        victim = work.pods_of(name, label)[-1]
        work.node_not_ready(victim["spec"]["nodeName"])  # Terminating, DisruptionTarget: DeletionByTaintManager
        wait_for(lambda: any(k.startswith(victim["metadata"]["uid"]) for k in run.resumer.judged), what="it judged")
        run.passes(2)
        job = work.get(plural, name)
        assert not job["spec"].get("suspend") and not (job["spec"].get("runPolicy") or {}).get("suspend")
        assert KEYS.state not in job["metadata"]["annotations"] and KEYS.status not in job["metadata"]["annotations"]
        assert not events(emulator, "JobInterruptedByNodeFault") and not events(emulator, "JobAutoResumeGaveUp")
