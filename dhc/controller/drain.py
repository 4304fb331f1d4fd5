"""Draining a node through the Eviction API, as ``kubectl drain`` does, one pass at a time.

What the API server does: an eviction (``POST .../pods/<name>/eviction``) answers 201 when the pod
is being deleted, 404 when it is gone already, and 429 TooManyRequests while a PodDisruptionBudget
allows no more disruptions ("Cannot evict pod as it would violate the pod's disruption budget.") or
the server sheds load; both mean "try later". A pass evicts what it can and reports what is left;
the caller comes back on its next resync until the node is empty or its bounded wait is over.
DaemonSet pods are left (their controller would put them straight back, and they tolerate the
cordon); so are mirror pods (the kubelet's static pods) and pods that already ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dhc.k8s.client import Kube

MIRROR = "kubernetes.io/config.mirror"


@dataclass
class Pass:
    evicted: list[str] = field(default_factory=list)  # namespace/name
    blocked: list[str] = field(default_factory=list)  # refused with 429 (a PodDisruptionBudget)
    left: list[str] = field(default_factory=list)  # still on the node after the pass (terminating or blocked)
    kept: list[str] = field(default_factory=list)  # DaemonSet and mirror pods: never evicted

    @property
    def done(self) -> bool:
        return not self.left


def evictable(pod: dict[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    if MIRROR in (meta.get("annotations") or {}):
        return False
    if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
        return False
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _name(pod: dict[str, Any]) -> str:
    return f"{pod['metadata'].get('namespace', '')}/{pod['metadata']['name']}"


def drain_pass(kube: Kube, node: str) -> Pass:
    """Evict every evictable pod on ``node`` once; then list again to see what is left."""
    result = Pass()
    for pod in kube.pods_on_node(node):
        if not evictable(pod):
            result.kept.append(_name(pod))
        elif (pod["metadata"].get("deletionTimestamp")) is None:
            if kube.evict(pod["metadata"]["namespace"], pod["metadata"]["name"]):
                result.evicted.append(_name(pod))
            else:
                result.blocked.append(_name(pod))
    result.left = [_name(p) for p in kube.pods_on_node(node) if evictable(p)]
    return result


def summary(result: Pass) -> str:
    parts = [f"{len(result.evicted)} evicted"]
    if result.blocked:
        parts.append(f"{len(result.blocked)} refused by a PodDisruptionBudget ({', '.join(result.blocked[:5])})")
    if result.left:
        parts.append(f"{len(result.left)} left ({', '.join(result.left[:5])})")
    if result.kept:
        parts.append(f"{len(result.kept)} DaemonSet or mirror pods kept")
    return ", ".join(parts)
