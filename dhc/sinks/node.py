"""The node-side sink (``dhc run --sink kubernetes``): a run writes its own node's verdict onto the node.

Labels and taint from the scheme, the reasons in an annotation and a Node Event. Runs after the
report is safely on disk; the instance ID comes from the node's ``spec.providerID``. For a person's
own kubeconfig and for the node agent to come; the controller's check pods do not use it (they have
no API access and hand their verdict over with ``dhc.sinks.termination``). The controller does not
count a Passed written here: it carries no controller record, and under the admission policy a
node-bound ServiceAccount may only mark its own node unhealthy.
"""

from __future__ import annotations

from typing import Any

from dhc.instance import parse_provider_id
from dhc.k8s import scheme
from dhc.k8s.client import K8sError, Kube
from dhc.model import Status
from dhc.model.report import Report


def write_verdict(kube: Kube, node_name: str, typed: Report, prefix: str = scheme.DEFAULT_PREFIX,
                  final: bool = True) -> scheme.NodeState:
    """``final=False``: the stress stage of a two-stage check; a pass then only marks the stage."""
    keys, verdict = scheme.Keys(prefix), typed.verdict
    node = kube.node(node_name)
    instance_id = _instance_id(node) or typed.instance.instance_id.value
    state = scheme.from_verdict(typed, instance_id, final)
    stage = {} if final or verdict.status is not Status.PASSED else {keys.stage: "stress-passed"}
    patched = kube.patch_node(node_name, lambda current: scheme.node_ops(current, keys, state, stage))
    summary = f"deep health check {verdict.status} on {instance_id}"
    if verdict.reasons:
        summary += ": " + "; ".join(r.message for r in verdict.reasons[:3])
    reason = f"DeepHealthCheck{verdict.status}" if final else f"DeepHealthCheckStress{verdict.status}"
    kube.node_event(patched, reason, summary, warning=verdict.status is not Status.PASSED)
    return state


def _instance_id(node: dict[str, Any]) -> str | None:
    provider_id = (node.get("spec") or {}).get("providerID")
    if not provider_id:
        return None
    try:
        return parse_provider_id(provider_id)[0]
    except ValueError:
        return None


__all__ = ["K8sError", "Kube", "write_verdict"]
