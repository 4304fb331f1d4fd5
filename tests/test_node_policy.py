"""The admission policy that holds dhc's writers to their place, evaluated: its CEL, against requests.

kubernetes-validate checks the policy's shape, not its CEL. Here each expression is compiled and
run (with a CEL library for Python) the way the API server runs a ValidatingAdmissionPolicy:
matchConditions first (a request none matches is not the policy's business), then the variables in
order, then every validation; an expression that errors denies (failurePolicy: Fail).
"""

import copy
from pathlib import Path

import pytest
import yaml

cel = pytest.importorskip("cel", reason="the CEL library comes with the test extra (common-expression-language)")

K8S = Path(__file__).resolve().parent.parent / "containers" / "k8s"
POLICY = next(o for o in yaml.safe_load_all((K8S / "node-write-policy.yaml").read_text())
              if o["kind"] == "ValidatingAdmissionPolicy")
AGENT = "system:serviceaccount:dhc:dhc-agent"  # a node-bound writer: the node agent to come
CONTROLLER = "system:serviceaccount:dhc:dhc-controller"
P = "sagemaker.amazonaws.com/"
NODE_CLAIM = "authentication.kubernetes.io/node-name"


def settings(prefix="sagemaker.amazonaws.com", **more):
    """The params ConfigMap as kustomization.yaml generates it, with the prefix (and any other key) overridden."""
    generator = yaml.safe_load((K8S / "kustomization.yaml").read_text())["configMapGenerator"][0]
    data = dict(literal.split("=", 1) for literal in generator["literals"])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]},
            "data": data | {"prefix": prefix} | more}


def evaluate(expression, bindings):
    context = cel.Context()
    for name, value in bindings.items():
        context.add_variable(name, value)
    return cel.evaluate(expression, context)


def admit(user, old, new, node_claim=None, params=None, operation="UPDATE"):
    """(allowed, message) as the API server would answer the request."""
    extra = {NODE_CLAIM: [node_claim]} if node_claim else {}
    bindings = {"object": new, "oldObject": old if operation == "UPDATE" else None,
                "request": {"operation": operation, "userInfo": {"username": user, "groups": [], "extra": extra}},
                "params": params or settings()}
    if not all(evaluate(c["expression"], bindings) is True for c in POLICY["spec"]["matchConditions"]):
        return True, "not matched"
    variables = {}
    for variable in POLICY["spec"]["variables"]:
        variables[variable["name"]] = evaluate(variable["expression"], bindings | {"variables": variables})
    for validation in POLICY["spec"]["validations"]:
        try:
            ok = evaluate(validation["expression"], bindings | {"variables": variables})
        except Exception as exc:  # an expression that fails to evaluate denies: failurePolicy Fail
            return False, f"error: {exc}"
        if ok is not True:
            return False, validation["message"]
    return True, "allowed"


def node(name="gpu-1", labels=None, annotations=None, taints=None, **extra):
    meta = {"name": name, "labels": {"team": "llm", **(labels or {})}, "annotations": dict(annotations or {})}
    meta |= {k: v for k, v in extra.items() if k in ("ownerReferences", "finalizers")}
    spec = {"taints": list(taints or [])} | {k: v for k, v in extra.items() if k == "unschedulable"}
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec}


HEALTH_TAINT = {"key": P + "node-health-status", "value": "Unschedulable", "effect": "NoSchedule"}
IN_PROGRESS = node(labels={P + "deep-health-check-status": "InProgress", P + "node-health-status": "Unschedulable"},
                   taints=[HEALTH_TAINT])


def changed(base=IN_PROGRESS, labels=None, annotations=None, taints=None, drop_label=None, **extra):
    new = copy.deepcopy(base)
    new["metadata"]["labels"].update(labels or {})
    new["metadata"]["annotations"].update(annotations or {})
    if drop_label:
        del new["metadata"]["labels"][drop_label]
    if taints is not None:
        new["spec"]["taints"] = taints
    for key in ("ownerReferences", "finalizers"):
        if key in extra:
            new["metadata"][key] = extra[key]
    if "unschedulable" in extra:
        new["spec"]["unschedulable"] = extra["unschedulable"]
    return new


FAILED = {P + "deep-health-check-status": "Failed", P + "node-health-status": "UnschedulablePendingReboot"}
REBOOT_TAINT = [dict(HEALTH_TAINT, value="UnschedulablePendingReboot")]


def test_every_expression_compiles():
    spec = POLICY["spec"]
    items = spec["matchConditions"] + spec["variables"] + spec["validations"]
    assert spec["matchConditions"] and spec["validations"]  # an empty policy would compile and govern nothing
    for item in items:
        cel.compile(item["expression"])


@pytest.mark.parametrize(("case", "user", "claim", "new", "allowed", "why"), [
    ("the agent marks its own node for a reboot", AGENT, "gpu-1",
     changed(labels=FAILED, annotations={P + "deep-health-check-reasons": "{}"}, taints=REBOOT_TAINT), True, "allowed"),
    ("the agent writes another node", AGENT, "gpu-2", changed(labels=FAILED), False, "only the node its pod runs on"),
    ("a token without a node claim", AGENT, None, changed(labels=FAILED), False, "only the node its pod runs on"),
    ("a foreign label", AGENT, "gpu-1", changed(labels={"team": "ours"}), False, "only labels under its own prefix"),
    ("a foreign label added", CONTROLLER, None, changed(labels={"owner": "dhc"}), False, "only labels under its own prefix"),
    ("a foreign label removed", CONTROLLER, None, changed(drop_label="team"), False, "only labels under its own prefix"),
    ("a foreign annotation", CONTROLLER, None, changed(annotations={"note": "x"}), False, "only annotations under"),
    ("a foreign taint", AGENT, "gpu-1", changed(taints=[HEALTH_TAINT, {"key": "x", "effect": "NoSchedule"}]), False,
     "only its own taint"),
    ("a NoExecute taint", AGENT, "gpu-1", changed(taints=[dict(HEALTH_TAINT, effect="NoExecute")]), False, "NoExecute"),
    ("a NoExecute taint by the controller", CONTROLLER, None, changed(taints=[dict(HEALTH_TAINT, effect="NoExecute")]),
     False, "NoExecute"),
    ("ownerReferences", AGENT, "gpu-1", changed(ownerReferences=[{"kind": "Pod", "name": "p", "uid": "u"}]), False,
     "ownerReferences"),
    ("finalizers", CONTROLLER, None, changed(finalizers=["dhc.dev/hold"]), False, "finalizers"),
    ("a cordon by the agent", AGENT, "gpu-1", changed(unschedulable=True), False, "only dhc's controller cordons"),
    ("the controller cordons a node to drain it", CONTROLLER, None, changed(unschedulable=True), True, "allowed"),
    ("the agent rewrites the remediation history", AGENT, "gpu-1",
     changed(annotations={P + "remediation-history": "[]"}), False, "controller's annotations"),
    ("the agent calls its node Passed", AGENT, "gpu-1",
     changed(labels={P + "deep-health-check-status": "Passed"}), False, "never healthy"),
    ("the agent calls its node Schedulable", AGENT, "gpu-1",
     changed(labels={P + "node-health-status": "Schedulable"}), False, "never healthy"),
    ("the agent lifts dhc's taint", AGENT, "gpu-1", changed(taints=[]), False, "never healthy"),
    ("the agent weakens dhc's taint to PreferNoSchedule", AGENT, "gpu-1",
     changed(taints=[dict(HEALTH_TAINT, effect="PreferNoSchedule")]), False, "keeps dhc's taint NoSchedule"),
    ("the agent values dhc's taint Schedulable", AGENT, "gpu-1", changed(taints=[dict(HEALTH_TAINT, value="Schedulable")]),
     False, "never values it Schedulable"),
    ("the agent adds a weaker second taint of dhc's key", AGENT, "gpu-1",
     changed(taints=[HEALTH_TAINT, dict(HEALTH_TAINT, effect="PreferNoSchedule")]), False, "keeps dhc's taint NoSchedule"),
    ("the agent taints a Passed node for a reboot", AGENT, "gpu-1", changed(
        node(labels={P + "deep-health-check-status": "Passed", P + "node-health-status": "Schedulable"}),
        labels=FAILED, taints=REBOOT_TAINT), True, "allowed"),
    ("the controller lifts dhc's taint", CONTROLLER, None, changed(taints=[]), True, "allowed"),
    ("the agent writes the record", AGENT, "gpu-1", changed(annotations={P + "deep-health-check-record": "{}"}), False,
     "only dhc's controller writes"),
    ("the agent writes the controller's stage", AGENT, "gpu-1",
     changed(annotations={P + "deep-health-check-stage": "stress-passed"}), False, "controller's annotations"),
    ("the controller passes a node, with its record", CONTROLLER, None,
     changed(labels={P + "deep-health-check-status": "Passed", P + "node-health-status": "Schedulable"}, taints=[],
             annotations={P + "deep-health-check-record": '{"status":"Passed"}'}), True, "allowed"),
    ("an administrator forges the record", "kubernetes-admin", None,
     changed(annotations={P + "deep-health-check-record": '{"status":"Passed"}'}), False, "only dhc's controller writes"),
    ("an administrator labels a node", "kubernetes-admin", None, changed(labels={"team": "infra"}), True, "not matched"),
])
def test_the_policy_allows_what_dhc_needs_and_nothing_else(case, user, claim, new, allowed, why):
    verdict, message = admit(user, IN_PROGRESS, new, claim)
    assert verdict is allowed and why in message, (case, message)


def test_metadata_written_through_the_status_subresource_is_governed_too():
    """Labels and annotations can be changed by a PATCH to nodes/status: the policy matches both."""
    [rule] = POLICY["spec"]["matchConstraints"]["resourceRules"]
    assert set(rule["resources"]) == {"nodes", "nodes/status"} and set(rule["operations"]) == {"CREATE", "UPDATE"}


def test_dhcs_service_accounts_are_those_of_the_namespace_in_the_params():
    """matchConditions read params (as validations do): no namespace hard-coded anywhere in the policy."""
    moved = settings(namespace="health")
    assert admit("system:serviceaccount:health:dhc-agent", IN_PROGRESS, changed(labels=FAILED), "gpu-2", moved) == (
        False, "a node-bound dhc ServiceAccount writes only the node its pod runs on (its token's node-name claim)")
    assert admit(AGENT, IN_PROGRESS, changed(labels=FAILED), "gpu-2", moved) == (True, "not matched")  # not dhc's now
    spec = POLICY["spec"]
    assert not any("serviceaccount:dhc:" in item["expression"]
                   for item in spec["matchConditions"] + spec["variables"] + spec["validations"])


def test_the_kubelets_own_updates_are_not_the_policys_business():
    passed = node(labels={P + "deep-health-check-status": "Passed"}, annotations={P + "deep-health-check-record": "{}"})
    assert admit("system:node:gpu-1", passed, changed(passed, labels={"topology.kubernetes.io/zone": "a"})) == (
        True, "not matched")
    forged = node(labels={P + "deep-health-check-status": "Passed"}, annotations={P + "deep-health-check-record": "{}"})
    assert admit("system:node:gpu-1", None, forged, operation="CREATE") == (False, "only dhc's controller writes dhc's "
                                                                                    "record of a check run")


def test_the_prefix_is_configured_in_one_place():
    custom = settings("health.example.com")
    mine = {"health.example.com/deep-health-check-status": "Failed",
            "health.example.com/node-health-status": "UnschedulablePendingReboot"}
    assert admit(AGENT, IN_PROGRESS, changed(labels=mine), "gpu-1", custom) == (True, "allowed")
    assert admit(AGENT, IN_PROGRESS, changed(labels=FAILED), "gpu-1", custom)[1] == \
        "dhc changes only labels under its own prefix"  # the default prefix is foreign now
    controller = yaml.safe_load((K8S / "controller.yaml").read_text())
    env = controller["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "DHC_K8S_PREFIX", "valueFrom": {"configMapKeyRef": {"name": "dhc-settings", "key": "prefix"}}} in env
    binding = next(o for o in yaml.safe_load_all((K8S / "node-write-policy.yaml").read_text())
                   if o["kind"] == "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["paramRef"] == {"name": "dhc-settings", "namespace": "dhc", "parameterNotFoundAction": "Deny"}
