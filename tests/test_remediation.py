"""Remediation with the real kubernetes client against the emulated API server, and real AWS endpoints.

A node marked PendingReboot / PendingReplacement is cordoned, drained through the Eviction API (PDBs
honoured, DaemonSet pods left), acted on once through the actuator (a local SageMaker endpoint with
botocore's request validation, or moto's EC2 over HTTP), and goes back through the deep health check
before it is Schedulable. Tests wait for a positive signal, never for time to pass.
"""

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("kubernetes", reason="remediation needs the kubernetes client (dhc[kubernetes])")

from k8s_emulator import Emulator  # noqa: E402
from sagemaker_server import SageMaker  # noqa: E402
from test_controller import P5, P5_STATUS, Running, finish, wait_for  # noqa: E402

from dhc.aws.actuators import HyperPod  # noqa: E402
from dhc.controller import breaker, drain  # noqa: E402
from dhc.controller.jobs import JobSettings, job_name  # noqa: E402
from dhc.controller.remediation import RemediationKeys, RemediationSettings, Remediator, instance_id  # noqa: E402
from dhc.k8s import scheme  # noqa: E402

KEYS, RKEYS = scheme.Keys(), RemediationKeys(scheme.DEFAULT_PREFIX)
CLUSTER = "ml-cluster"
NO_BATCH = JobSettings(namespace="dhc", image="dhc-node:test", connectivity=False)


def iid(index: int) -> str:
    return f"i-{index:017x}"


def add_marked(emulator, name, index, health="UnschedulablePendingReboot", status="Failed"):
    """A node whose deep check (generation 1) failed: the controller marked it, as a person or the agent may."""
    emulator.add_node(name, dict(P5, **{KEYS.check_status: status, KEYS.health: health}),
                      provider_id=f"aws:///us-west-2a/{iid(index)}", status=dict(P5_STATUS),
                      annotations={KEYS.generation: "1", KEYS.attempts: "1"})
    emulator.reboot_node(name)  # up and Ready, with the boot ID the kubelet reports


def state(emulator, node):
    return json.loads(emulator.nodes[node]["metadata"]["annotations"].get(RKEYS.state) or "{}")


def events(emulator, reason):
    return [e for e in emulator.events if e["reason"] == reason]


@pytest.fixture
def sagemaker():
    with SageMaker(CLUSTER, {iid(i) for i in range(100)}) as endpoint:
        yield endpoint


@pytest.fixture(autouse=True)
def aws_credentials(fake_aws_credentials):
    """Every test here may reach the local SageMaker endpoint."""


class Remediating(Running):
    """The test controller, remediating through ``actuator`` (the CLI builds it from --remediation)."""

    def __init__(self, emulator, actuator, settings):
        super().__init__(emulator, jobs=NO_BATCH)
        self.controller.settings.remediation = settings
        self.controller.remediation = Remediator(self.controller, settings, actuator)


def hyperpod(emulator, sagemaker, **breaker_settings):
    settings = RemediationSettings("hyperpod", breaker.BreakerSettings(**breaker_settings), drain_timeout_s=600)
    return Remediating(emulator, HyperPod(CLUSTER, "us-west-2", sagemaker.url, attempts=4, timeout_s=5), settings)


# -- pure pieces -----------------------------------------------------------------------------------
def test_instance_ids_come_from_the_provider_id():
    assert instance_id("aws:///us-west-2a/i-0123456789abcdef0") == "i-0123456789abcdef0"
    # HyperPod's EKS nodes: aws:///<region>/sagemaker/cluster/<instance id> (kubernetes/autoscaler#8195)
    assert instance_id("aws:///us-west-2/sagemaker/cluster/i-0123456789abcdef0") == "i-0123456789abcdef0"
    assert instance_id("eks-hybrid:///us-west-2/my-cluster/node-1") is None
    assert instance_id("kind://docker/kind/kind-worker") is None
    assert instance_id(None) is None


def test_the_breaker_allows_a_share_of_the_watched_nodes_and_trips_beyond_it():
    now, settings = datetime.now(UTC), breaker.BreakerSettings(max_share=0.1)
    assert breaker.capacity(settings, 50) == 5 and breaker.capacity(settings, 500) == 50
    assert breaker.capacity(settings, 3) == 1  # one at a time at least
    assert breaker.admit(settings, "", 4, 50, [], now).admitted
    refused = breaker.admit(settings, "", 5, 50, [], now)
    assert not refused.admitted and refused.trips and "10% of 50 nodes = 5" in refused.reason
    held = breaker.admit(settings, "tripped earlier", 0, 50, [], now)
    assert not held.admitted and "a person must reset it" in held.reason


def test_the_breaker_limits_actions_per_node_within_a_window():
    now, settings = datetime.now(UTC), breaker.BreakerSettings(max_actions_per_node=2, window_s=3600)
    twice = [now - timedelta(minutes=50), now - timedelta(minutes=10)]
    refused = breaker.admit(settings, "", 0, 50, twice, now)
    assert not refused.admitted and not refused.trips and "2 remediation actions on this node" in refused.reason
    assert breaker.admit(settings, "", 0, 50, [now - timedelta(hours=2), now - timedelta(minutes=10)], now).admitted


def test_bad_breaker_settings_name_what_was_expected():
    with pytest.raises(ValueError, match="expected a fraction"):
        breaker.BreakerSettings(max_share=1.5)
    with pytest.raises(ValueError, match="needs its AWS client"):
        Running(Emulator(), remediation=RemediationSettings("hyperpod"))


def test_daemonset_mirror_and_ended_pods_are_not_evicted():
    pod = {"metadata": {"name": "p", "ownerReferences": [{"kind": "DaemonSet"}]}, "status": {"phase": "Running"}}
    mirror = {"metadata": {"name": "m", "annotations": {drain.MIRROR: "x"}}, "status": {"phase": "Running"}}
    ended = {"metadata": {"name": "e"}, "status": {"phase": "Succeeded"}}
    workload = {"metadata": {"name": "w", "ownerReferences": [{"kind": "ReplicaSet"}]}, "status": {"phase": "Running"}}
    assert [drain.evictable(p) for p in (pod, mirror, ended, workload)] == [False, False, False, True]


# -- the default: label-only, a dry run ------------------------------------------------------------
def test_label_only_is_the_default_and_only_records_what_it_would_do(emulator):
    add_marked(emulator, "gpu-a", 1)
    emulator.add_pod("train-0", "gpu-a", labels={"app": "train"}, owner_kind="ReplicaSet")
    with Running(emulator):
        wait_for(lambda: events(emulator, "RemediationDryRun"), what="the dry run's Event")
    message = events(emulator, "RemediationDryRun")[0]["message"]
    assert f"would cordon, drain 1 pods through the Eviction API and Reboot instance {iid(1)}" in message
    assert state(emulator, "gpu-a")["phase"] == "dry-run"
    assert not emulator.nodes["gpu-a"]["spec"].get("unschedulable") and not emulator.evictions
    assert "train-0" in emulator.pods


def test_a_dry_run_is_recorded_even_when_the_pods_cannot_be_listed(emulator):
    add_marked(emulator, "gpu-g", 7, health="UnschedulablePendingReplacement")
    for _ in range(8):  # an install whose RBAC predates remediation: pods list is forbidden
        emulator.fail_next("GET", "/api/v1/pods", 403)
    with Running(emulator):
        wait_for(lambda: events(emulator, "RemediationDryRun"), what="the dry run's Event")
    message = events(emulator, "RemediationDryRun")[0]["message"]
    assert "would cordon, drain its pods (cannot list them: list pods on node gpu-g: HTTP 403" in message
    assert f"Replace instance {iid(7)}" in message and state(emulator, "gpu-g")["phase"] == "dry-run"


# -- hyperpod: the whole path ----------------------------------------------------------------------
def test_pending_reboot_cordons_drains_past_a_pdb_reboots_once_and_rejoins_through_the_deep_check(emulator, sagemaker):
    add_marked(emulator, "gpu-a", 1)
    emulator.add_pod("train-0", "gpu-a", labels={"app": "train"}, owner_kind="ReplicaSet")
    emulator.add_pod("logs-0", "gpu-a", owner_kind="DaemonSet")
    pdb = emulator.add_pdb("default", {"app": "train"}, disruptions_allowed=0)
    sagemaker.throttle(1)  # the first call is throttled: retried, never carried out twice
    with hyperpod(emulator, sagemaker) as running:
        wait_for(lambda: emulator.nodes["gpu-a"]["spec"].get("unschedulable"), what="the cordon")
        wait_for(lambda: sum(1 for r in emulator.requests if r[1].endswith("/train-0/eviction")) >= 2,
                 what="the eviction refused by the PDB, and tried again")
        assert state(emulator, "gpu-a")["phase"] == "draining" and not sagemaker.calls
        pdb["disruptionsAllowed"] = 1  # the workload's other replica is healthy now
        wait_for(lambda: state(emulator, "gpu-a").get("phase") == "acted", what="the reboot")
        assert sagemaker.actions == [("Reboot", iid(1))] and len(sagemaker.calls) == 2 and not sagemaker.rejected
        assert emulator.evictions == ["default/train-0"] and "logs-0" in emulator.pods
        emulator.reboot_node("gpu-a")
        wait_for(lambda: job_name("gpu-a", 2, 1) in emulator.jobs, what="the deep check of generation 2")
        assert not emulator.nodes["gpu-a"]["spec"].get("unschedulable")
        assert emulator.nodes["gpu-a"]["metadata"]["labels"][KEYS.health] == "Unschedulable"
        finish(emulator, job_name("gpu-a", 2, 1), "gpu-a", "Passed", stage="final")
        wait_for(lambda: RKEYS.state not in emulator.nodes["gpu-a"]["metadata"]["annotations"], what="recovered")
        assert emulator.nodes["gpu-a"]["metadata"]["labels"][KEYS.health] == "Schedulable"
        # the node is written first, then the Event, then the count: wait for the count itself
        wait_for(lambda: running.controller.snapshot().tally.get(("remediations", "Reboot/recovered")),
                 what="the recovery counted")
        snap = running.controller.snapshot()
    history = json.loads(emulator.nodes["gpu-a"]["metadata"]["annotations"][RKEYS.history])
    assert [(h["action"], h["outcome"], h["instance"]) for h in history] == [("Reboot", "acted", iid(1))]
    assert snap.tally[("remediations", "Reboot/acted")] == 1 and snap.tally[("remediations", "Reboot/recovered")] == 1
    assert len(snap.recoveries) == 1 and snap.recoveries[0] >= 0
    assert sagemaker.actions == [("Reboot", iid(1))]


def test_a_node_that_fails_its_check_again_after_a_reboot_starts_a_new_cycle_then_is_refused(emulator, sagemaker):
    add_marked(emulator, "gpu-h", 8)
    with hyperpod(emulator, sagemaker, max_actions_per_node=2) as running:
        for generation in (2, 3):
            wait_for(lambda g=generation: len(sagemaker.actions) == g - 1, what=f"reboot {generation - 1}")
            wait_for(lambda: state(emulator, "gpu-h").get("phase") == "acted", what="acted")
            emulator.reboot_node("gpu-h")
            wait_for(lambda g=generation: job_name("gpu-h", g, 1) in emulator.jobs, what=f"check generation {generation}")
            finish(emulator, job_name("gpu-h", generation, 1), "gpu-h", "Failed", "Reboot", stage="final")
        wait_for(lambda: events(emulator, "RemediationRefused"), what="the third action refused")
        running.settled("gpu-h")
    assert sagemaker.actions == [("Reboot", iid(8))] * 2 and len(events(emulator, "RemediationFailedAgain")) == 2
    assert "2 remediation actions on this node" in events(emulator, "RemediationRefused")[0]["message"]


def test_pending_replacement_calls_batch_replace(emulator, sagemaker):
    add_marked(emulator, "gpu-b", 2, health="UnschedulablePendingReplacement")
    with hyperpod(emulator, sagemaker):
        wait_for(lambda: state(emulator, "gpu-b").get("phase") == "acted", what="the replacement")
    assert sagemaker.actions == [("Replace", iid(2))]
    assert [c[0] for c in sagemaker.calls] == ["BatchReplaceClusterNodes"]


def test_an_instance_the_service_refuses_is_failed_and_left_for_a_person(emulator, sagemaker):
    add_marked(emulator, "gpu-z", 500)  # not in the cluster: the service answers it in Failed
    with hyperpod(emulator, sagemaker) as running:
        wait_for(lambda: events(emulator, "RemediationFailed"), what="the failure's Event")
        running.settled("gpu-z")
    assert state(emulator, "gpu-z")["phase"] == "stuck" and "InstanceIdNotFound" in state(emulator, "gpu-z")["why"]
    assert len(sagemaker.calls) == 1 and not sagemaker.actions


@pytest.mark.parametrize("act_anyway", [False, True])
def test_a_drain_held_up_past_its_wait_acts_anyway_or_not_as_configured(emulator, sagemaker, act_anyway):
    add_marked(emulator, "gpu-e", 5)
    emulator.add_pod("train-2", "gpu-e", labels={"app": "train"}, owner_kind="ReplicaSet")
    emulator.add_pdb("default", {"app": "train"}, disruptions_allowed=0)  # never allows one
    settings = RemediationSettings("hyperpod", drain_timeout_s=0.5, act_after_drain_timeout=act_anyway)
    actuator = HyperPod(CLUSTER, "us-west-2", sagemaker.url, attempts=2, timeout_s=5)
    with Remediating(emulator, actuator, settings) as running:
        wait_for(lambda: state(emulator, "gpu-e").get("phase") in ("acted", "stuck"), what="the wait to end")
        running.settled("gpu-e")
    assert "drain not done after 0.5 s" in emulator.events[-1]["message"] and "default/train-2" in \
        emulator.events[-1]["message"]
    if act_anyway:
        assert state(emulator, "gpu-e")["phase"] == "acted" and sagemaker.actions == [("Reboot", iid(5))]
    else:
        assert state(emulator, "gpu-e")["phase"] == "stuck" and not sagemaker.calls
        assert emulator.events[-1]["reason"] == "RemediationStuck" and "left for a person" in \
            emulator.events[-1]["message"]
    assert "train-2" in emulator.pods  # the PDB was honoured throughout


def test_remediation_metrics_show_actions_outcomes_the_breaker_and_recovery_time():
    from prometheus_client import CollectorRegistry, generate_latest

    from dhc.controller.loop import Snapshot
    from dhc.controller.metrics import ControllerCollector

    tally = {("remediations", "Reboot/acted"): 5, ("remediations", "Reboot/held"): 1}
    snap = Snapshot(Counter(), Counter(), 0, tally, True, (400.0, 1000.0))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControllerCollector(lambda: snap))
    text = generate_latest(registry).decode()
    assert 'dhc_remediations_total{action="Reboot",outcome="acted"} 5.0' in text
    assert 'dhc_remediations_total{action="Reboot",outcome="held"} 1.0' in text
    assert "dhc_remediation_breaker_tripped 1.0" in text
    assert 'dhc_remediation_recovery_seconds_bucket{le="900"} 1.0' in text
    assert "dhc_remediation_recovery_seconds_count 2.0" in text and "dhc_remediation_recovery_seconds_sum 1400.0" in text


def test_a_node_acted_on_too_often_within_the_window_is_refused_and_left_for_a_person(emulator, sagemaker):
    add_marked(emulator, "gpu-f", 6)
    recent = [{"action": "Reboot", "at": (datetime.now(UTC) - timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ"),
               "outcome": "acted", "instance": iid(6)} for m in (30, 5)]
    emulator.nodes["gpu-f"]["metadata"]["annotations"][RKEYS.history] = json.dumps(recent)
    with hyperpod(emulator, sagemaker) as running:
        wait_for(lambda: events(emulator, "RemediationRefused"), what="the refusal")
        running.settled("gpu-f")
    assert "2 remediation actions on this node within 86400 s (limit 2)" in events(emulator, "RemediationRefused")[0][
        "message"]
    assert state(emulator, "gpu-f")["phase"] == "refused" and not sagemaker.calls
    assert not emulator.nodes["gpu-f"]["spec"].get("unschedulable") and len(events(emulator, "RemediationRefused")) == 1


# -- the circuit breaker ---------------------------------------------------------------------------
def test_fifty_nodes_marked_at_once_with_the_breaker_at_10_percent_act_on_five(emulator, sagemaker):
    for index in range(50):
        emulator.add_node(f"gpu-{index:02d}", dict(P5, **{KEYS.check_status: "Failed", KEYS.health: "Unschedulable"}),
                          provider_id=f"aws:///us-west-2a/{iid(index)}", status=dict(P5_STATUS),
                          annotations={KEYS.generation: "1"})
    with hyperpod(emulator, sagemaker, max_share=0.1) as running:
        running.settled("gpu-49")  # it has seen them all, at rest
        for index in range(50):  # a bad driver rollout marks the whole fleet
            emulator.set_node_labels(f"gpu-{index:02d}", {KEYS.health: "UnschedulablePendingReboot"})
        wait_for(lambda: events(emulator, "RemediationBreakerTripped"), what="the breaker tripping")
        wait_for(lambda: len(sagemaker.actions) == 5, what="five reboots")
        for index in range(50):
            running.settled(f"gpu-{index:02d}", times=1)
        assert len(sagemaker.actions) == 5 and running.controller.snapshot().breaker_tripped
        held = [n for n, o in emulator.nodes.items() if RKEYS.held in o["metadata"]["annotations"]]
        assert len(held) == 50  # every node refused, and the five in flight: no one node's deletion resets it
        assert all("circuit breaker tripped" in emulator.nodes[n]["metadata"]["annotations"][RKEYS.held] for n in held)
        assert len(events(emulator, "RemediationBreakerTripped")) == 1  # said once, not per node held
        # a person resets it (kubectl annotate nodes --all ... remediation-held-): the five in flight still
        # hold their slots until they are Schedulable again, so it trips again and acts on no more
        key = RKEYS.held.replace("/", "~1")
        for name in held:
            running.kube.patch_node(name, lambda n: [{"op": "remove", "path": f"/metadata/annotations/{key}"}])
        wait_for(lambda: len(events(emulator, "RemediationBreakerTripped")) == 2, what="the breaker tripping again")
    assert len(sagemaker.actions) == 5


def test_a_tripped_breaker_stays_tripped_when_the_node_it_tripped_on_is_deleted(emulator, sagemaker):
    for index, name in enumerate(("gpu-j", "gpu-k", "gpu-l")):
        emulator.add_node(name, dict(P5, **{KEYS.check_status: "Failed", KEYS.health: "Unschedulable"}),
                          provider_id=f"aws:///us-west-2a/{iid(20 + index)}", status=dict(P5_STATUS),
                          annotations={KEYS.generation: "1"})
        emulator.reboot_node(name)
    with hyperpod(emulator, sagemaker, max_nodes=1) as running:
        running.settled("gpu-l")
        for name in ("gpu-j", "gpu-k"):
            emulator.set_node_labels(name, {KEYS.health: "UnschedulablePendingReboot"})
        wait_for(lambda: events(emulator, "RemediationBreakerTripped"), what="the breaker tripping")
        wait_for(lambda: len(sagemaker.actions) == 1, what="one reboot")
        refused = next(e["involvedObject"]["name"] for e in events(emulator, "RemediationBreakerTripped"))
        acted = ({"gpu-j", "gpu-k"} - {refused}).pop()
        wait_for(lambda: RKEYS.held in emulator.nodes[acted]["metadata"]["annotations"], what="the mark in flight")
        emulator.delete_node(refused)  # the node it tripped on goes away
        emulator.reboot_node(acted)  # the node in flight recovers: its slot is free again
        wait_for(lambda: job_name(acted, 2, 1) in emulator.jobs, what="the re-check")
        finish(emulator, job_name(acted, 2, 1), acted, "Passed", stage="final")
        wait_for(lambda: RKEYS.state not in emulator.nodes[acted]["metadata"]["annotations"], what="recovered")
        emulator.set_node_labels("gpu-l", {KEYS.health: "UnschedulablePendingReboot"})
        wait_for(lambda: RKEYS.held in emulator.nodes["gpu-l"]["metadata"]["annotations"], what="gpu-l held")
        running.settled("gpu-l")
        assert running.controller.snapshot().breaker_tripped
    assert len(sagemaker.actions) == 1 and not emulator.nodes["gpu-l"]["spec"].get("unschedulable")
    assert len(events(emulator, "RemediationBreakerTripped")) == 1


# -- restarts and API faults -----------------------------------------------------------------------
def test_a_controller_restarted_mid_drain_resumes_without_acting_twice(emulator, sagemaker):
    add_marked(emulator, "gpu-c", 3)
    emulator.add_pod("train-1", "gpu-c", labels={"app": "train"}, owner_kind="StatefulSet")
    pdb = emulator.add_pdb("default", {"app": "train"}, disruptions_allowed=0)
    with hyperpod(emulator, sagemaker):
        wait_for(lambda: state(emulator, "gpu-c").get("phase") == "draining", what="draining")
    pdb["disruptionsAllowed"] = 1
    emulator.fail_next("POST", "/api/v1/namespaces/default/pods/train-1/eviction", 500)  # retried
    emulator.fail_next("PATCH", "/api/v1/nodes/gpu-c", 429, headers={"Retry-After": "0"})  # retried
    with hyperpod(emulator, sagemaker) as second:
        wait_for(lambda: state(emulator, "gpu-c").get("phase") == "acted", what="the reboot after the restart")
        second.settled("gpu-c")
    assert sagemaker.actions == [("Reboot", iid(3))] and emulator.evictions == ["default/train-1"]
    assert len(events(emulator, "RemediationStarted")) == 1


def test_a_node_noted_in_the_dry_run_is_remediated_once_an_actuator_is_turned_on(emulator, sagemaker):
    add_marked(emulator, "gpu-m", 12)
    with Running(emulator):
        wait_for(lambda: events(emulator, "RemediationDryRun"), what="the dry run")
    assert state(emulator, "gpu-m")["phase"] == "dry-run"
    with hyperpod(emulator, sagemaker):  # the operator switches label-only to hyperpod
        wait_for(lambda: state(emulator, "gpu-m").get("phase") == "acted", what="the reboot")
    assert sagemaker.actions == [("Reboot", iid(12))] and len(events(emulator, "RemediationStarted")) == 1


def test_a_500_from_the_action_call_is_never_retried_and_is_recorded_unconfirmed(emulator, sagemaker):
    add_marked(emulator, "gpu-n", 13)
    sagemaker.fail_after_acting(1)  # the service rebooted it, then answered 500: a retry would reboot it twice
    with hyperpod(emulator, sagemaker) as running:
        wait_for(lambda: state(emulator, "gpu-n").get("phase") == "acted", what="acted, unconfirmed")
        running.settled("gpu-n")
    assert len(sagemaker.calls) == 1 and sagemaker.actions == [("Reboot", iid(13))]
    history = json.loads(emulator.nodes["gpu-n"]["metadata"]["annotations"][RKEYS.history])
    assert [h["outcome"] for h in history] == ["unconfirmed"]
    message = events(emulator, "RemediationActed")[0]["message"]
    assert "InternalFailure" in message and "not called again" in message


def test_only_throttling_is_retried_by_the_actuator(sagemaker):
    from dhc.aws.actuators import ActuatorError

    actuator = HyperPod(CLUSTER, "us-west-2", sagemaker.url, attempts=4, timeout_s=5)
    sagemaker.throttle(2)
    assert actuator.act("Reboot", [iid(1)]) == {iid(1): ""} and len(sagemaker.calls) == 3
    sagemaker.fail_after_acting(1)
    with pytest.raises(ActuatorError, match="InternalFailure") as raised:
        actuator.act("Replace", [iid(2)])
    assert raised.value.unconfirmed and len(sagemaker.calls) == 4
    with pytest.raises(ActuatorError, match="ValidationException") as refused:  # a 4xx: refused, not done
        HyperPod("other-cluster", "us-west-2", sagemaker.url, attempts=4, timeout_s=5).act("Reboot", [iid(3)])
    assert not refused.value.unconfirmed and len(sagemaker.calls) == 5
    sagemaker.rejected.clear()


@pytest.mark.parametrize(("phase", "waiting"), [("acted", "not Ready again after the action"),
                                                 ("rechecking", "no new deep check verdict")])
def test_a_node_that_never_comes_back_is_stuck_with_an_event_and_keeps_its_slot(emulator, sagemaker, phase, waiting):
    add_marked(emulator, "gpu-o", 14)
    long_ago = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    boot = emulator.nodes["gpu-o"]["status"]["nodeInfo"]["bootID"]
    emulator.nodes["gpu-o"]["status"]["conditions"] = [
        dict(c, lastTransitionTime=long_ago) if c.get("type") == "Ready" else c
        for c in emulator.nodes["gpu-o"]["status"].get("conditions") or []]
    emulator.nodes["gpu-o"]["metadata"]["annotations"][RKEYS.state] = json.dumps(
        {"phase": phase, "action": "Reboot", "instance": iid(14), "boot": boot, "generation": 1,
         "detected": long_ago, "acted": long_ago, "since": long_ago})
    with hyperpod(emulator, sagemaker) as running:
        wait_for(lambda: state(emulator, "gpu-o").get("phase") == "stuck", what="stuck")
        running.settled("gpu-o")
        assert running.controller.remediation.in_flight() == {"gpu-o"}  # it keeps its slot
    stuck = events(emulator, "RemediationStuck")
    assert len(stuck) == 1 and waiting in stuck[0]["message"] and "3600 s" in stuck[0]["message"]
    assert waiting in state(emulator, "gpu-o")["why"] and not sagemaker.calls


def test_a_controller_that_stopped_while_calling_never_calls_again(emulator, sagemaker):
    add_marked(emulator, "gpu-d", 4)
    acting = {"phase": "acting", "action": "Reboot", "instance": iid(4), "detected": "2026-01-01T00:00:00Z"}
    emulator.nodes["gpu-d"]["metadata"]["annotations"][RKEYS.state] = json.dumps(acting)
    with hyperpod(emulator, sagemaker) as running:
        wait_for(lambda: state(emulator, "gpu-d").get("phase") == "acted", what="acted, unconfirmed")
        running.settled("gpu-d")
    assert not sagemaker.calls
    assert "not called again" in events(emulator, "RemediationActed")[0]["message"]
    history = json.loads(emulator.nodes["gpu-d"]["metadata"]["annotations"][RKEYS.history])
    assert history[0]["outcome"] == "unconfirmed"


@pytest.mark.parametrize("text", ["not json", '{"phase": "draining"}', '{"phase": "acting", "action": "Nuke"}'])
def test_a_remediation_annotation_dhc_did_not_write_holds_the_node_and_does_nothing(emulator, sagemaker, text):
    add_marked(emulator, "gpu-i", 9)
    emulator.nodes["gpu-i"]["metadata"]["annotations"][RKEYS.state] = text
    with hyperpod(emulator, sagemaker) as running:
        running.settled("gpu-i")
        assert running.controller.remediation.state(emulator.nodes["gpu-i"])["why"].startswith(
            f"unreadable {RKEYS.state} annotation")
        assert running.controller.remediation.in_flight() == {"gpu-i"}  # it holds its slot
    assert not sagemaker.calls and not emulator.nodes["gpu-i"]["spec"].get("unschedulable")


def test_times_without_a_zone_are_read_as_utc():
    from dhc.k8s.scheme import parse_time

    assert parse_time("2026-01-01T00:00:00") == parse_time("2026-01-01T00:00:00Z") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time("yesterday") is None


# -- the SageMaker endpoint refuses what the service would ------------------------------------------
def test_the_local_sagemaker_endpoint_rejects_a_malformed_call(sagemaker):
    import boto3
    from botocore.config import Config

    raw = boto3.session.Session().client("sagemaker", region_name="us-west-2", endpoint_url=sagemaker.url,
                                         config=Config(parameter_validation=False, retries={"max_attempts": 1}))
    with pytest.raises(raw.exceptions.ClientError, match="ValidationException"):
        raw.batch_reboot_cluster_nodes(ClusterName=CLUSTER, NodeIds=[iid(i) for i in range(26)])
    with pytest.raises(raw.exceptions.ClientError, match="ValidationException"):
        raw.batch_reboot_cluster_nodes(ClusterName=CLUSTER, NodeIds=["node-1"])
    assert not sagemaker.actions


def test_the_hyperpod_actuator_sends_at_most_25_ids_a_call(sagemaker):
    actuator = HyperPod(CLUSTER, "us-west-2", sagemaker.url, attempts=2, timeout_s=5)
    results = actuator.act("Reboot", [iid(i) for i in range(60)])
    assert [len(ids) for _, ids in sagemaker.calls] == [25, 25, 10] and not sagemaker.rejected
    assert set(results.values()) == {""} and len(sagemaker.actions) == 60


def test_the_controller_imports_no_boto3():
    import subprocess
    import sys

    code = "import sys, dhc.controller.loop, dhc.controller.remediation; print('boto3' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "False"


def test_the_cli_refuses_hyperpod_without_a_cluster_and_bad_breaker_values():
    import subprocess
    import sys

    base = [sys.executable, "-m", "dhc", "controller", "--image", "dhc-node:v1", "--metrics-port", "0"]
    run = subprocess.run(base + ["--remediation", "hyperpod"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "needs the cluster's name or ARN (--hyperpod-cluster)" in run.stderr
    run = subprocess.run(base + ["--remediation-max-share", "150%"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "expected a share of the nodes, 0.1 or 10%" in run.stderr


def test_the_cli_builds_the_breaker_from_its_options():
    import argparse

    from dhc.cli.controller_cmd import add_arguments, remediation_settings

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings, actuator = remediation_settings(parser.parse_args(["--image", "x:v1"]))
    assert (settings.actuator, settings.breaker.max_share, actuator) == ("label-only", 0.10, None)
    args = parser.parse_args(["--image", "x:v1", "--remediation-max-share", "5%", "--remediation-max-nodes", "3",
                              "--drain-timeout-action", "act"])
    settings, _ = remediation_settings(args)
    assert (settings.breaker.max_share, settings.breaker.max_nodes, settings.act_after_drain_timeout) == (0.05, 3, True)
