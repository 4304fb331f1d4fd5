"""Job auto-resume's reading of pods: every shape a node fault leaves on a training pod, each dated.

What the kubelet and the control plane do to a pod whose node fails:
- restartPolicy Never (a Job's pods; the training operator's ExitCode): the pod ends phase ``Failed``;
  a container's ``state.terminated`` holds the exit code and ``finishedAt``; an eviction sets
  ``status.reason`` (``Evicted``) and a message;
- restartPolicy OnFailure/Always (the training operator's default for a PyTorchJob replica): the kubelet
  restarts the crashed container in place: the pod stays ``Running``, ``containerStatuses[].restartCount``
  rises and ``lastState.terminated`` keeps the run that ended (exitCode, reason, finishedAt);
- a node that stops answering (NotReady, Ready Unknown): the taint manager adds the pod condition
  ``DisruptionTarget`` (reason ``DeletionByTaintManager``) and deletes the pod, but no kubelet confirms, so
  it stays ``Running`` with ``metadata.deletionTimestamp`` (Terminating) until its Node is deleted and the
  pod garbage collector removes it;
- a deleted pod (the watch's DELETED) carries ``deletionTimestamp`` when it was deleted gracefully.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dhc.k8s.scheme import parse_time


@dataclass(frozen=True)
class Sign:
    key: str  # the pod's uid; a restart in place: uid/container/restart-N (each one its own interruption)
    reason: str
    at: datetime
    deletion: bool = False  # deleted or Terminating: on a healthy node that is someone's delete, not a failure


def signs(previous: dict[str, Any] | None, pod: dict[str, Any], event_type: str) -> list[Sign]:
    """What this event of ``pod`` says went wrong with it (``previous``: the pod as last seen, or None)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    uid, found = str(meta.get("uid", "")), []
    failed = pod_failure(pod)
    if failed:
        found.append(Sign(uid, failed, failed_at(pod) or created_at(meta)))
    elif event_type == "DELETED" and status.get("phase") != "Succeeded":
        found.append(Sign(uid, "deleted", parse_time(meta.get("deletionTimestamp")) or datetime.now(UTC), True))
    elif terminating(pod):
        found.append(Sign(uid, *terminating(pod), True))  # type: ignore[misc]
    return found + restarts(previous, pod)


def pod_failure(pod: dict[str, Any]) -> str:
    """"" for a pod that has not failed; else its reason (Evicted, DisruptionTarget, exit code, ...)."""
    status = pod.get("status") or {}
    if status.get("phase") != "Failed":
        return ""
    if status.get("reason"):
        return str(status["reason"])
    for container in status.get("containerStatuses") or []:
        ended = (container.get("state") or {}).get("terminated")
        if ended:
            return f"{ended.get('reason') or 'Error'} (exit code {ended.get('exitCode')})"
    return "Failed"


def restarts(previous: dict[str, Any] | None, pod: dict[str, Any]) -> list[Sign]:
    """Containers the kubelet restarted in place since ``previous`` (None: any it ever restarted)."""
    counts = {c.get("name"): _count(c) for c in _statuses(previous)} if previous is not None else {}
    uid, found = str((pod.get("metadata") or {}).get("uid", "")), []
    for container in _statuses(pod):
        count, ended = _count(container), (container.get("lastState") or {}).get("terminated")
        if not count or not isinstance(ended, dict) or count <= counts.get(container.get("name"), 0):
            continue
        name = container.get("name")
        found.append(Sign(f"{uid}/{name}/restart-{count}", f"container {name} restarted in place after "
                          f"{ended.get('reason') or 'Error'} (exit code {ended.get('exitCode')})",
                          parse_time(ended.get("finishedAt")) or datetime.now(UTC)))
    return found


def terminating(pod: dict[str, Any]) -> tuple[str, datetime] | None:
    """(why, since when) for a pod being deleted but still there (Terminating, or marked DisruptionTarget)."""
    meta = pod.get("metadata") or {}
    target = next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") ==
                   "DisruptionTarget" and c.get("status") == "True"), None)
    if not meta.get("deletionTimestamp") and target is None:
        return None
    why = "terminating" + (f" (DisruptionTarget: {target.get('reason') or 'no reason'})" if target else "")
    at = parse_time((target or {}).get("lastTransitionTime")) or parse_time(meta.get("deletionTimestamp"))
    return why, at or datetime.now(UTC)


def live(pod: dict[str, Any]) -> bool:
    """A pod that holds its node and works: Pending or Running, and not being deleted."""
    return (pod.get("status") or {}).get("phase") in ("Pending", "Running") and terminating(pod) is None


def failed_at(pod: dict[str, Any]) -> datetime | None:
    """When the pod's containers ended (the kubelet's finishedAt), else its latest condition change."""
    status = pod.get("status") or {}
    ends = [((c.get("state") or {}).get("terminated") or {}).get("finishedAt") for c in _statuses(pod)]
    ends += [c.get("lastTransitionTime") for c in status.get("conditions") or []]
    times = [t for t in (parse_time(e) for e in ends if e) if t is not None]
    return max(times) if times else None


def created_at(meta: dict[str, Any]) -> datetime:
    """A failure without a time: no later than the pod's creation can say (so a pod failed before the last
    restart, kept by its Job, never reads as a new interruption); now when even that is missing."""
    return parse_time(meta.get("creationTimestamp")) or datetime.now(UTC)


def _statuses(pod: dict[str, Any] | None) -> list[dict[str, Any]]:
    found = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return [c for c in found if isinstance(c, dict)]


def _count(container: dict[str, Any]) -> int:
    value = container.get("restartCount")
    return value if isinstance(value, int) and value >= 0 else 0
