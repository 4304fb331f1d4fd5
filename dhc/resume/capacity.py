"""Job auto-resume's count of capacity: whether the free Schedulable nodes hold every pod of one waiting job.

A node is free for a job when it is Schedulable (labelled so, Ready, not cordoned: dhc.resume.state),
holds no live pod of another opted-in job, and was not promised to a job resumed earlier in the same
pass. The job's pods are packed as the scheduler would place them: each pod template's nodeSelector
on its own, and pods per node by GPU (a node's allocatable ``nvidia.com/gpu`` holds as many pods as
their requests fit; a pod that asks for no GPU fits any node its selector admits). The most
constrained templates are placed first (fewest nodes that admit them, then most GPUs per pod), so a
template that only some nodes admit is not crowded out by one that any node admits. A job resumes
only when every pod finds a place (all or nothing), so two waiting jobs that share capacity for one
resume one at a time.
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
        """(whether every pod of the job has a place now, how many pods found one); the nodes used are promised."""
        key = (kind.kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
        room = {name: _quantity(((node.get("status") or {}).get("allocatable") or {}).get(GPU))
                for name, node in sorted(self.nodes.items()) if name not in self.promised and self._free(name, key)}
        plan = []
        for _, spec, count in state.templates(kind, obj):
            wanted = gpus(spec)
            admits = [name for name in room if self._fits(self.nodes[name], spec) and room[name] >= wanted]
            plan.append((len(admits), -wanted, admits, wanted, count))
        placed, used = 0, set()
        for _, _, admits, wanted, count in sorted(plan, key=lambda p: p[:2]):
            for _ in range(count):
                node = next((name for name in admits if room[name] >= wanted), None)
                if node is None:
                    break
                room[node], placed = room[node] - wanted, placed + 1
                used.add(node)
        if placed < state.replicas(kind, obj):
            return False, placed
        self.promised.update(used)
        return True, placed

    def _free(self, name: str, job: Any) -> bool:
        return not (self.busy.get(name, set()) - {job})

    def _fits(self, node: dict[str, Any], spec: dict[str, Any]) -> bool:
        selector = {str(k): str(v) for k, v in (spec.get("nodeSelector") or {}).items()}
        return state.schedulable(node, self.keys, selector)


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
