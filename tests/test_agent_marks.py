"""dhc agent's marks against the controller's writes: a mark the agent makes while a check runs, or as a
node comes back from a remediation (the Reboot -> Replace escalation), survives the controller's
writes and a Passed verdict; a mark that a remediation action consumed does not block the re-check.

Pure rules first, then the real agent publisher and the real controller over HTTP with the emulator.
Tests wait for a positive signal, never for time to pass.
"""

import io
import json

import pytest

pytest.importorskip("kubernetes", reason="the controller needs the kubernetes client (dhc[kubernetes])")

from kubernetes import client  # noqa: E402
from sagemaker_server import SageMaker  # noqa: E402
from test_controller import P5, P5_STATUS, Running, finish, wait_for  # noqa: E402
from test_remediation import CLUSTER, NO_BATCH, add_marked, hyperpod, iid, state  # noqa: E402

from dhc.agent.kernel import KernelDetectors  # noqa: E402
from dhc.agent.publish import Publisher  # noqa: E402
from dhc.agent.tally import Tally  # noqa: E402
from dhc.controller.jobs import job_name  # noqa: E402
from dhc.controller.marks import RemediationKeys, now_text  # noqa: E402
from dhc.k8s import scheme  # noqa: E402
from dhc.k8s.client import Kube  # noqa: E402
from dhc.thresholds.agent import load_agent  # noqa: E402

KEYS, RKEYS = scheme.Keys(), RemediationKeys(scheme.DEFAULT_PREFIX)
XID79 = "3,1302,7200010,-;NVRM: Xid (PCI:0000:53:00): 79, pid=1914, name=python3, GPU has fallen off the bus."
XID48 = "3,1303,7300000,-;NVRM: Xid (PCI:0000:b9:00): 48, An uncorrectable double bit error (DBE) has been detected"
REPLACE, REBOOT = "UnschedulablePendingReplacement", "UnschedulablePendingReboot"


def node(health, agent=None, history=None):
    notes = {} if agent is None else {KEYS.agent_reasons: agent}
    if history is not None:
        notes[KEYS.remediation_history] = history
    return {"metadata": {"name": "n", "labels": {KEYS.health: health, KEYS.check_status: "InProgress"},
                         "annotations": notes}, "spec": {"taints": [{"key": KEYS.health, "value": health,
                                                                      "effect": "NoSchedule"}]}}


def mark(ts="2026-01-01T10:00:05Z"):
    return json.dumps({"detector": "agent.xid", "action": "Replace", "ts": ts})


def acted(*ats):
    return json.dumps([{"action": "Reboot", "at": at, "outcome": "acted"} for at in ats])


# -- the rule, pure -------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "stands", "why"), [
    (node(REPLACE, mark()), REPLACE, "no remediation has acted on it yet"),
    (node(REPLACE, mark(), acted("2026-01-01T10:00:01Z")), REPLACE, "made after the last action (the escalation)"),
    (node(REBOOT, mark(), acted("2026-01-01T10:00:09Z")), None, "made before the last action: consumed"),
    (node(REBOOT, mark(), acted("2026-01-01T10:00:05Z")), None, "in the action's own second: consumed"),
    (node(REPLACE, mark("yesterday")), REPLACE, "a ts that cannot be read stands (fail closed)"),
    (node(REPLACE, "not json", acted("2026-01-01T10:00:09Z")), REPLACE, "an unreadable mark stands"),
    (node(REPLACE, mark(), "[{\"at\": \"soon\"}, 7]"), REPLACE, "an unreadable history consumes nothing"),
    (node("Schedulable", mark()), None, "a person relabelled the node: lifted"),
    (node(REPLACE), None, "no agent annotation: a deep check's or a person's mark, not the agent's"),
])
def test_an_agent_mark_stands_until_a_remediation_action_after_it(n, stands, why):
    assert scheme.agent_mark(n, KEYS) == stands, why


def apply(n, ops):
    for op in ops:
        *parents, leaf = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].strip("/").split("/")]
        target = n
        for part in parents:
            target = target[part]
        target[leaf] = op["value"]
    return n


@pytest.mark.parametrize(("n", "verdict", "health"), [
    (node(REPLACE, mark()), scheme.NodeState("Passed", "Schedulable"), REPLACE),
    (node(REPLACE, mark()), scheme.joining(), REPLACE),
    (node(REPLACE, mark()), scheme.NodeState("Failed", REBOOT), REPLACE),  # the more severe of the two
    (node(REBOOT, mark()), scheme.NodeState("Failed", REPLACE), REPLACE),
    (node(REBOOT, mark(), acted("2026-01-01T10:00:09Z")), scheme.NodeState("Passed", "Schedulable"), "Schedulable"),
])
def test_the_controllers_write_keeps_the_more_severe_of_a_standing_mark_and_its_own(n, verdict, health):
    written = apply(n, scheme.node_ops(n, KEYS, verdict))
    assert written["metadata"]["labels"] == {KEYS.health: health, KEYS.check_status: verdict.check_status}
    taints = [] if health == "Schedulable" else [{"key": KEYS.health, "value": health, "effect": "NoSchedule"}]
    assert written["spec"]["taints"] == taints


def test_the_history_key_read_here_is_the_one_remediation_writes():
    assert KEYS.remediation_history == RKEYS.history


# -- over HTTP: the real agent publisher, the real controller -----------------------------------------

@pytest.fixture(autouse=True)
def aws_credentials(fake_aws_credentials):
    """Every test here may reach the local SageMaker endpoint."""


@pytest.fixture
def sagemaker():
    with SageMaker(CLUSTER, {iid(i) for i in range(10)}) as endpoint:
        yield endpoint


def agent_sees(emulator, name, line):
    """What ``dhc agent --sink kubernetes`` does with one kernel-log line: its own detector and publisher."""
    kube = Kube(client.ApiClient(client.Configuration(host=emulator.url)), timeout_s=5, backoff_s=0.01)
    publisher = Publisher(name, Tally(name), {"instance_id": None, "instance_type": "p5.48xlarge"}, kube=kube,
                          stream=io.StringIO())
    found = KernelDetectors(load_agent()).feed(line)
    assert found, line
    for detection in found:
        publisher.publish(detection)
    assert publisher.tally.publish_errors == 0, publisher.stream.getvalue()


def labels(emulator, name):
    return emulator.nodes[name]["metadata"]["labels"]


def test_an_agent_mark_made_while_the_check_runs_survives_its_pass(emulator):
    emulator.add_node("gpu-m", P5, provider_id="aws:///us-west-2a/i-0aaaabbbbccccdddd", status=dict(P5_STATUS))
    with Running(emulator, jobs=NO_BATCH) as running:
        wait_for(lambda: job_name("gpu-m", 1, 1) in emulator.jobs, what="the deep check")
        agent_sees(emulator, "gpu-m", XID79)
        assert labels(emulator, "gpu-m")[KEYS.health] == REPLACE
        finish(emulator, job_name("gpu-m", 1, 1), "gpu-m", "Passed", stage="final")
        wait_for(lambda: labels(emulator, "gpu-m")[KEYS.check_status] == "Passed", what="the verdict written")
        running.settled("gpu-m")
    assert labels(emulator, "gpu-m")[KEYS.health] == REPLACE  # not Schedulable: the fault is not lost
    assert {"key": KEYS.health, "value": REPLACE, "effect": "NoSchedule"} in emulator.nodes["gpu-m"]["spec"]["taints"]
    [passed] = [e for e in emulator.events if e["reason"] == "DeepHealthCheckPassed"]
    assert f"stays {REPLACE}: dhc agent marked it during the check" in passed["message"]


def test_an_agent_mark_consumed_by_a_reboot_does_not_block_the_recheck(emulator, sagemaker):
    add_marked(emulator, "gpu-c", 1)
    agent_sees(emulator, "gpu-c", XID48)  # the agent's Reboot mark, before the action
    with hyperpod(emulator, sagemaker):
        wait_for(lambda: state(emulator, "gpu-c").get("phase") == "acted", what="the reboot")
        emulator.reboot_node("gpu-c")
        wait_for(lambda: job_name("gpu-c", 2, 1) in emulator.jobs, what="the re-check")
        assert labels(emulator, "gpu-c")[KEYS.health] == "Unschedulable"
        finish(emulator, job_name("gpu-c", 2, 1), "gpu-c", "Passed", stage="final")
        wait_for(lambda: labels(emulator, "gpu-c")[KEYS.health] == "Schedulable", what="Schedulable again")
    assert labels(emulator, "gpu-c")[KEYS.check_status] == "Passed" and sagemaker.actions == [("Reboot", iid(1))]


def test_the_agents_escalation_as_the_node_comes_back_survives_the_recheck_and_is_replaced(emulator, sagemaker):
    add_marked(emulator, "gpu-e", 2)
    agent_sees(emulator, "gpu-e", XID48)
    with hyperpod(emulator, sagemaker, max_actions_per_node=3):
        wait_for(lambda: state(emulator, "gpu-e").get("phase") == "acted", what="the reboot")
        at = json.loads(emulator.nodes["gpu-e"]["metadata"]["annotations"][RKEYS.history])[-1]["at"]
        emulator.reboot_node("gpu-e")
        wait_for(lambda: job_name("gpu-e", 2, 1) in emulator.jobs, what="the re-check")
        # training is back on the node, under a PDB: the next drain waits (until the verdict is in)
        emulator.add_pod("train-0", "gpu-e", labels={"app": "train"}, owner_kind="ReplicaSet")
        pdb = emulator.add_pdb("default", {"app": "train"}, disruptions_allowed=0)
        wait_for(lambda: now_text() > at, what="a second after the action (the annotations' resolution)")
        agent_sees(emulator, "gpu-e", XID79)  # the same fault again after the reboot: Replace
        finish(emulator, job_name("gpu-e", 2, 1), "gpu-e", "Passed", stage="final")
        wait_for(lambda: labels(emulator, "gpu-e")[KEYS.check_status] == "Passed", what="the re-check's verdict")
        assert labels(emulator, "gpu-e")[KEYS.health] == REPLACE  # the pass did not clear the escalation
        wait_for(lambda: any(r[1].endswith("/train-0/eviction") for r in emulator.requests), what="the new drain")
        assert labels(emulator, "gpu-e")[KEYS.health] == REPLACE and len(sagemaker.actions) == 1
        pdb["disruptionsAllowed"] = 1
        wait_for(lambda: ("Replace", iid(2)) in sagemaker.actions, what="the replacement")
    assert sagemaker.actions == [("Reboot", iid(2)), ("Replace", iid(2))]
