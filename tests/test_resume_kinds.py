"""Job auto-resume of the other kinds, batch/v1 Job and JobSet, and a cluster that serves no PyTorchJob."""

import json
import logging

from k8s_workloads import Workloads
from test_resume import GPUS, HEALTH, KEYS, Resuming, add_nodes, events, record, running, set_health, wait_for


def test_without_the_pytorchjob_api_jobs_are_still_resumed_and_it_is_said_once(emulator, caplog):
    add_nodes(emulator, ("n0",), unhealthy=("n1",))
    caplog.set_level(logging.WARNING, logger="dhc.resume")
    with Workloads(emulator, served=()) as work, Resuming(emulator) as run:
        work.add("jobs", {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "etl", "annotations": {
            KEYS.enabled: "true"}}, "spec": {"backoffLimit": 3, "parallelism": 1, "template": {"spec": {
                "restartPolicy": "Never", "nodeSelector": {HEALTH: "Schedulable"},
                "containers": [{"name": "c", "image": "x:1", "resources": GPUS}]}}}})
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


def jobset(selector=None):
    def replicated(name, replicas):
        pod = {"containers": [{"name": "c", "image": "x:1", "resources": GPUS}]} | ({"nodeSelector": dict(selector)} if selector else {})
        return {"name": name, "replicas": replicas, "template": {"spec": {"parallelism": 1, "completions": 1,
                                                                          "backoffLimit": 0, "template": {"spec": pod}}}}
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "js", "annotations": {
        KEYS.enabled: "true", KEYS.add_selector: "true"}}, "spec": {"failurePolicy": {"maxRestarts": 3},
        "replicatedJobs": [replicated("leader", 1), replicated("workers", 2)]}}


def test_a_jobset_is_suspended_given_the_selector_by_index_and_resumed_on_healthy_nodes(emulator):
    add_nodes(emulator, ("n0", "n1", "n2"), unhealthy=("n3",))
    label = "jobset.sigs.k8s.io/jobset-name"
    with Workloads(emulator) as work, Resuming(emulator):
        work.add("jobsets", jobset())
        wait_for(lambda: running(work, "js", label, 3), what="the JobSet's three pods running")
        victim = next(p for p in work.pods_of("js", label) if p["metadata"]["name"] == "js-workers-1-0")
        set_health(emulator, victim["spec"]["nodeName"], "UnschedulablePendingReplacement")
        work.fail_pod(victim["metadata"]["name"], reason="Evicted")
        wait_for(lambda: record(work, "jobsets", "js").phase == "waiting", what="the JobSet waiting")
        patch = [r for r in emulator.requests if r[0] == "PATCH" and "/jobsets/js" in r[1]][0]
        assert patch[2] == "application/json-patch+json"  # by index: the list is never replaced whole
        spec = work.get("jobsets", "js")["spec"]
        assert spec["suspend"] is True and spec["failurePolicy"] == {"maxRestarts": 3}
        for rj in spec["replicatedJobs"]:
            pod = rj["template"]["spec"]["template"]["spec"]
            assert pod["nodeSelector"] == {HEALTH: "Schedulable"} and pod["containers"][0]["image"] == "x:1"
        wait_for(lambda: "waiting for Schedulable nodes for 3 pods (2 fit now)" in json.dumps(work.get("jobsets", "js")["metadata"]),
                 what="the wait said on the JobSet")
        set_health(emulator, "n3", "Schedulable")
        wait_for(lambda: record(work, "jobsets", "js").retries == 1 and running(work, "js", label, 3),
                 what="the JobSet resumed, its child Jobs' pods re-created")
        pods = running(work, "js", label, 3)
        assert victim["spec"]["nodeName"] not in {p["spec"]["nodeName"] for p in pods}
        assert all(p["spec"]["nodeSelector"] == {HEALTH: "Schedulable"} for p in pods)
        assert len(events(emulator, "JobResumed")) == 1 and not work.get("jobsets", "js")["spec"]["suspend"]


def test_the_jobset_webhook_allows_the_selector_only_with_the_suspend():
    from k8s_workloads import jobset_webhook, json_patch

    from dhc.k8s.workloads import JOBSET
    from dhc.resume import state

    old = jobset() | {"metadata": {"name": "js", "resourceVersion": "7", "annotations": {KEYS.enabled: "true"}}}
    ops = state.selector_ops(JOBSET, old, KEYS)
    assert [o["path"] for o in ops] == [f"/spec/replicatedJobs/{i}/template/spec/template/spec/nodeSelector"
                                        for i in (0, 1)]
    alone = json_patch(old, ops)
    assert "immutable" in jobset_webhook(old, alone)  # not suspended, not suspending: refused
    together = json_patch(old, state.as_ops(state.suspend_patch(JOBSET, True)) + ops)
    assert jobset_webhook(old, together) == ""
    labelled = jobset(selector={"team": "a"}) | {"metadata": old["metadata"]}
    [first, _] = state.selector_ops(JOBSET, labelled, KEYS)
    assert first["path"].endswith("/nodeSelector/sagemaker.amazonaws.com~1node-health-status")
    assert json_patch(labelled, [first])["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
        "nodeSelector"] == {"team": "a", HEALTH: "Schedulable"}


def test_no_capacity_within_the_wait_gives_up_un_suspended_and_a_job_without_the_selector_is_told(emulator):
    add_nodes(emulator, ("n0",))
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "etl", "annotations": {KEYS.enabled: "true"}},
           "spec": {"backoffLimit": 3, "parallelism": 1, "template": {"spec": {
               "restartPolicy": "Never", "containers": [{"name": "c", "image": "x:1", "resources": GPUS}]}}}}
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
        assert "Schedulable nodes for only 0 of its 1 pods after" in gave_up["message"] and "Evicted" in gave_up["message"]
        assert "un-suspended and left to its own restartPolicy" in gave_up["message"]
        # never suspended forever: left to its own mechanics (its backoffLimit), as at the retry limit
        assert work.get("jobs", "etl")["spec"]["suspend"] is False and record(work, "jobs", "etl").retries == 0
        assert record(work, "jobs", "etl").phase == "given-up"
        assert "un-suspended" in work.get("jobs", "etl")["metadata"]["annotations"][KEYS.status]
        assert "nodeSelector" not in work.get("jobs", "etl")["spec"]["template"]["spec"]  # immutable: left alone


def test_an_api_that_cannot_answer_discovery_is_asked_again(emulator, caplog):
    add_nodes(emulator, ("n0",))
    caplog.set_level(logging.WARNING, logger="dhc.resume")
    emulator.fail_next("GET", "/apis/kubeflow.org/v1", 403, {"kind": "Status", "code": 403, "reason": "Forbidden"})
    with Workloads(emulator), Resuming(emulator) as run:  # it waits for every served kind to be watched
        assert [k.kind for k in run.resumer.kinds] == ["PyTorchJob", "Job", "JobSet"] and run.resumer.unserved == []
    said = [r.getMessage() for r in caplog.records if "cannot ask which kinds" in r.getMessage()]
    assert len(said) == 1 and "403" in said[0]


def test_an_api_that_drops_the_suspend_is_said_once_and_the_job_is_not_left_waiting(emulator, caplog):
    from test_resume import pod_on, pytorchjob

    add_nodes(emulator, ("n0", "n1", "n2"))
    caplog.set_level(logging.WARNING, logger="dhc.resume")
    # a training-operator before v1.7: its CRD's schema has no runPolicy.suspend, so the API server prunes it
    with Workloads(emulator, prunes={"pytorchjobs": ("spec", "runPolicy", "suspend")}) as work, Resuming(emulator) as run:
        work.add("pytorchjobs", pytorchjob())
        wait_for(lambda: running(work), what="the job running")
        set_health(emulator, "n1", "UnschedulablePendingReplacement")
        work.fail_pod(pod_on(work, "n1")["metadata"]["name"], reason="Evicted")
        wait_for(lambda: events(emulator, "JobAutoResumeUnsupported"), what="the unsupported suspend said")
        [said] = events(emulator, "JobAutoResumeUnsupported")
        assert "suspend unsupported by this PyTorchJob's API" in said["message"]
        run.passes(3)
        assert record(work).phase == "running" and record(work).retries == 0 and len(record(work).interruptions) == 1
        assert "suspend unsupported" in work.get("pytorchjobs", "train")["metadata"]["annotations"][KEYS.status]
        assert run.resumer.snapshot()["waiting"] == 0 and not events(emulator, "JobResumed")
    logged = [r for r in caplog.records if "suspend unsupported by this PyTorchJob's API" in r.getMessage()]
    assert len(logged) == 1


def test_a_waiting_job_whose_opt_in_is_removed_is_resumed_and_forgotten(emulator):
    add_nodes(emulator, ("n0",))
    label = "batch.kubernetes.io/job-name"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "etl", "annotations": {KEYS.enabled: "true"}},
           "spec": {"backoffLimit": 3, "parallelism": 1, "template": {"spec": {
               "restartPolicy": "Never", "containers": [{"name": "c", "image": "x:1", "resources": GPUS}]}}}}
    with Workloads(emulator) as work, Resuming(emulator) as run:
        work.add("jobs", job)
        wait_for(lambda: running(work, "etl", label, 1), what="the Job running")
        set_health(emulator, "n0", "UnschedulablePendingReboot")
        work.fail_pod(running(work, "etl", label, 1)[0]["metadata"]["name"], reason="Evicted")
        wait_for(lambda: record(work, "jobs", "etl").phase == "waiting", what="the Job waiting")
        with emulator.lock:
            del emulator.jobs["etl"]["metadata"]["annotations"][KEYS.enabled]  # kubectl annotate ...-
            emulator._record("jobs", "MODIFIED", emulator.jobs["etl"])
        wait_for(lambda: events(emulator, "JobAutoResumeOptedOut"), what="the opt-out said")
        notes = work.get("jobs", "etl")["metadata"]["annotations"]
        assert work.get("jobs", "etl")["spec"]["suspend"] is False and KEYS.state not in notes and KEYS.status not in notes
        run.passes(2)
        assert run.resumer.snapshot()["waiting"] == 0 and len(events(emulator, "JobAutoResumeOptedOut")) == 1


def test_a_job_queued_by_kueue_is_left_to_kueue_with_a_log_line(emulator, caplog):
    from test_resume import pod_on, pytorchjob

    add_nodes(emulator, ("n0", "n1", "n2"))
    caplog.set_level(logging.WARNING, logger="dhc.resume")
    queued = pytorchjob()
    queued["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "team-a"}
    with Workloads(emulator) as work, Resuming(emulator, window_s=0.3) as run:
        work.add("pytorchjobs", queued)
        wait_for(lambda: running(work), what="the job running")
        set_health(emulator, "n1", "UnschedulablePendingReplacement")
        work.fail_pod(pod_on(work, "n1")["metadata"]["name"], reason="Evicted")
        wait_for(lambda: any("queued by Kueue" in r.getMessage() for r in caplog.records), what="the log line")
        run.passes(3)
        assert KEYS.state not in work.get("pytorchjobs", "train")["metadata"]["annotations"] and not emulator.events
    assert len([r for r in caplog.records if "queued by Kueue" in r.getMessage()]) == 1
