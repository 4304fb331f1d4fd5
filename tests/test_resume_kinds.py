"""Job auto-resume of the other kinds, batch/v1 Job and JobSet, and a cluster that serves no PyTorchJob."""

import json
import logging

from k8s_workloads import Workloads
from test_resume import HEALTH, KEYS, Resuming, add_nodes, emulator, events, record, running, set_health, wait_for

__all__ = ["emulator"]  # the fixture


def test_without_the_pytorchjob_api_jobs_are_still_resumed_and_it_is_said_once(emulator, caplog):
    add_nodes(emulator, ("n0",), unhealthy=("n1",))
    caplog.set_level(logging.WARNING, logger="dhc.resume")
    with Workloads(emulator, served=()) as work, Resuming(emulator) as run:
        work.add("jobs", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "etl", "annotations": {
            KEYS.enabled: "true"}}, "spec": {"backoffLimit": 3, "parallelism": 1, "template": {"spec": {
                "restartPolicy": "Never", "nodeSelector": {HEALTH: "Schedulable"},
                "containers": [{"name": "c", "image": "x:1"}]}}}})
        label = "batch.kubernetes.io/job-name"
        wait_for(lambda: running(work, "etl", label, 1), what="the Job's pod running")
        set_health(emulator, "n0", "UnschedulablePendingReplacement")
        work.fail_pod(running(work, "etl", label, 1)[0]["metadata"]["name"], reason="Evicted")
        wait_for(lambda: record(work, "jobs", "etl").phase == "waiting", what="the Job waiting")
        assert work.get("jobs", "etl")["spec"]["suspend"] is True
        set_health(emulator, "n1", "Schedulable")
        wait_for(lambda: running(work, "etl", label, 1), what="the Job's new pod running")
        assert running(work, "etl", label, 1)[0]["spec"]["nodeName"] == "n1" and record(work, "jobs", "etl").retries == 1
        run.passes(3)
        assert run.resumer.unserved == ["PyTorchJob", "JobSet"]
        said = [r for r in caplog.records if "does not serve pytorchjobs" in r.getMessage()]
        assert len(said) == 1
        assert [r[1] for r in emulator.requests if r[1].startswith("/apis/kubeflow.org")] == ["/apis/kubeflow.org/v1"]


def test_a_jobset_is_suspended_and_gets_the_health_selector(emulator):
    add_nodes(emulator, ("n0",))
    jobset = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "js", "annotations": {
        KEYS.enabled: "true", KEYS.add_selector: "true"}}, "spec": {"replicatedJobs": [{"name": "workers", "replicas": 2,
        "template": {"spec": {"parallelism": 1, "template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}}]}}
    with Workloads(emulator) as work, Resuming(emulator):
        work.add("jobsets", jobset)
        emulator.add_pod("js-workers-0-0", "n0", labels={"jobset.sigs.k8s.io/jobset-name": "js"})
        set_health(emulator, "n0", "UnschedulablePendingReplacement")
        work.fail_pod("js-workers-0-0", reason="Evicted")
        wait_for(lambda: record(work, "jobsets", "js").phase == "waiting", what="the JobSet waiting")
        spec = work.get("jobsets", "js")["spec"]
        assert spec["suspend"] is True
        pod = spec["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {HEALTH: "Schedulable"} and pod["containers"][0]["image"] == "x:1"
        assert "waiting for 2 Schedulable nodes" in json.dumps(work.get("jobsets", "js")["metadata"]["annotations"])


def test_no_capacity_within_the_wait_gives_up_and_a_job_without_the_selector_is_told(emulator):
    add_nodes(emulator, ("n0",))
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "etl", "annotations": {KEYS.enabled: "true"}},
           "spec": {"backoffLimit": 3, "parallelism": 1, "template": {"spec": {
               "restartPolicy": "Never", "containers": [{"name": "c", "image": "x:1"}]}}}}
    with Workloads(emulator) as work, Resuming(emulator, wait_timeout_s=0.5):
        work.add("jobs", job)
        label = "batch.kubernetes.io/job-name"
        wait_for(lambda: running(work, "etl", label, 1), what="the Job's pod running")
        set_health(emulator, "n0", "UnschedulablePendingReboot")
        work.fail_pod(running(work, "etl", label, 1)[0]["metadata"]["name"], reason="Evicted")
        wait_for(lambda: events(emulator, "JobAutoResumeGaveUp"), what="giving up on capacity")
        [interrupted] = events(emulator, "JobInterruptedByNodeFault")
        assert "add nodeSelector" in interrupted["message"] and "cannot change" in interrupted["message"]
        [gave_up] = events(emulator, "JobAutoResumeGaveUp")
        assert "fewer than 1 Schedulable nodes (0)" in gave_up["message"] and "Evicted" in gave_up["message"]
        assert work.get("jobs", "etl")["spec"]["suspend"] is True and record(work, "jobs", "etl").retries == 0
        assert "nodeSelector" not in work.get("jobs", "etl")["spec"]["template"]["spec"]  # immutable: left alone


def test_an_api_that_cannot_answer_discovery_is_asked_again(emulator, caplog):
    add_nodes(emulator, ("n0",))
    caplog.set_level(logging.WARNING, logger="dhc.resume")
    emulator.fail_next("GET", "/apis/kubeflow.org/v1", 403, {"kind": "Status", "code": 403, "reason": "Forbidden"})
    with Workloads(emulator), Resuming(emulator) as run:  # it waits for every served kind to be watched
        assert [k.kind for k in run.resumer.kinds] == ["PyTorchJob", "Job", "JobSet"] and run.resumer.unserved == []
    said = [r.getMessage() for r in caplog.records if "cannot ask which kinds" in r.getMessage()]
    assert len(said) == 1 and "403" in said[0]
