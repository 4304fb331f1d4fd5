"""Job auto-resume's count of capacity: the free Schedulable nodes one waiting job may take, in one pass.

A node is free for a job when it is Schedulable (labelled so, Ready, not cordoned: dhc.resume.state),
holds no live pod of another opted-in job, and was not promised to a job resumed earlier in the same
pass. Every pod template of the job is matched on its own: its nodeSelector, and its GPU request
against the node's allocatable ``nvidia.com/gpu`` (what the scheduler checks too); one training pod per
node. A job resumes only when every template finds its nodes (all or nothing), so two waiting jobs that
share capacity for one resume one at a time.
"""

from __future__ import annotations

from typing import Any

from dhc.k8s.workloads import Kind
from dhc.resume import state
from dhc.resume.state import ResumeKeys

GPU = "nvidia.com/gpu"


class Capacity:
    def __init__(self, nodes: dict[str, dict[str, Any]], keys: ResumeKeys, busy: dict[str, set[Any]]):
        """``busy``: node name -> the jobs (kind, namespace, name) with a live pod on it."""
        self.nodes, self.keys, self.busy = nodes, keys, busy
        self.promised: set[str] = set()

    def claim(self, kind: Kind, obj: dict[str, Any]) -> tuple[bool, int]:
        """(whether every pod of the job has a free node now, how many it found); found nodes are promised."""
        key = (kind.kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
        chosen: list[str] = []
        for _, spec, count in state.templates(kind, obj):
            fits = [name for name in sorted(self.nodes) if name not in self.promised and name not in chosen
                    and self._free(name, key) and self._fits(self.nodes[name], spec)]
            chosen += fits[:count]
        if len(chosen) < state.replicas(kind, obj):
            return False, len(chosen)
        self.promised.update(chosen)
        return True, len(chosen)

    def _free(self, name: str, job: Any) -> bool:
        return not (self.busy.get(name, set()) - {job})

    def _fits(self, node: dict[str, Any], spec: dict[str, Any]) -> bool:
        selector = {str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()}
        if not state.schedulable(node, self.keys, selector):
            return False
        wanted = gpus(spec)
        return wanted == 0 or _quantity(((node.get("status") or {}).get("allocatable") or {}).get(GPU)) >= wanted


def gpus(spec: dict[str, Any]) -> int:
    """GPUs a pod of this spec asks for (limits, else requests, summed over its containers)."""
    total = 0
    for container in spec.get("containers") or []:
        resources = (container or {}).get("resources") or {}
        total += _quantity(((resources.get("limits") or {}).get(GPU)) or (resources.get("requests") or {}).get(GPU))
    return total


def _quantity(value: Any) -> int:
    text = str(value or "0").strip()
    return int(text) if text.isdigit() else 0
