"""Job auto-resume's settings, record and pure decisions: opted in, node faults, replicas, suspension, patches.

The record lives on the job (annotation ``<prefix>/job-auto-resume-state``, JSON), so a restarted
controller carries on where the last one stopped: ``retries`` (restarts dhc made), ``interruptions``
(every node fault seen: time, pod, node, reason), ``phase`` (waiting | running | given-up) and
``since`` (when the current wait began). Every change of phase is one guarded merge patch of the
job: the record and the job's suspension change together or not at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dhc.k8s.scheme import PENDING, load_annotation
from dhc.k8s.workloads import JOB, PYTORCHJOB, Kind

UNHEALTHY = ("Unschedulable", *PENDING)
SUCCEEDED = ("Succeeded", "Complete", "Completed")  # PyTorchJob, batch Job, JobSet: done, never touched again


@dataclass(frozen=True)
class ResumeSettings:
    prefix: str = "sagemaker.amazonaws.com"
    poll_s: float = 5.0
    window_s: float = 120.0  # a pod failed on a node that turns faulty within this is a node fault
    wait_timeout_s: float = 3600.0  # longest wait for Schedulable nodes before giving up
    default_max_retries: int = 1  # when the job names no job-max-retry-count
    add_node_selector: bool = False  # add the health nodeSelector to every opted-in job, asked or not
    watch_timeout_s: int = 60


@dataclass
class Candidate:
    kind: Kind
    namespace: str
    job: str
    pod: str
    uid: str
    node: str
    reason: str
    at: datetime
    created: datetime | None = None  # the pod's creation: one made before the job's last restart is no news
    deletion: bool = False  # deleted or Terminating, not failed: on a healthy node it is no one's failure
    seen: datetime | None = None  # when this controller saw it (a watch: at once; a list at start: maybe long after)


class ResumeKeys:
    def __init__(self, prefix: str):
        self.enabled = f"{prefix}/enable-job-auto-resume"
        self.max_retries = f"{prefix}/job-max-retry-count"
        self.add_selector = f"{prefix}/job-auto-resume-add-node-selector"
        self.state = f"{prefix}/job-auto-resume-state"
        self.status = f"{prefix}/job-auto-resume-status"  # one readable line: what dhc does with the job now
        self.health = f"{prefix}/node-health-status"
        self.check_status = f"{prefix}/deep-health-check-status"


@dataclass
class Record:
    retries: int = 0
    interruptions: list[dict[str, str]] = field(default_factory=list)
    phase: str = "running"
    since: str = ""
    restarted: str = ""  # when dhc last restarted the job: a failure or pod older than that is no news

    @classmethod
    def of(cls, obj: dict[str, Any], keys: ResumeKeys) -> Record:
        """The job's record; a missing or unreadable one is a fresh record (nothing restarted yet)."""
        data = load_annotation(_annotations(obj).get(keys.state), {})
        retries = data.get("retries")
        return cls(retries if isinstance(retries, int) and retries >= 0 else 0,
                   [i for i in data.get("interruptions") or [] if isinstance(i, dict)],
                   str(data.get("phase") or "running"), str(data.get("since") or ""), str(data.get("restarted") or ""))

    def text(self) -> str:
        return json.dumps({"retries": self.retries, "interruptions": self.interruptions, "phase": self.phase,
                           "since": self.since, "restarted": self.restarted}, separators=(",", ":"))

    def seen(self, pod_uid: str) -> bool:
        return any(i.get("pod_uid") == pod_uid for i in self.interruptions)

    def named(self) -> str:
        return "; ".join(f"{i.get('at')} pod {i.get('pod')} on {i.get('node')}: {i.get('reason')}"
                         for i in self.interruptions)


def opted_in(obj: dict[str, Any], keys: ResumeKeys) -> bool:
    return str(_annotations(obj).get(keys.enabled, "")).strip().lower() == "true"


def max_retries(obj: dict[str, Any], keys: ResumeKeys, default: int) -> tuple[int, str]:
    """(the job's retry limit, "" or why its annotation was not read: then ``default``)."""
    text = _annotations(obj).get(keys.max_retries)
    if text is None:
        return default, ""
    if not str(text).strip().isdigit():
        return default, f"{keys.max_retries}={text!r} is not a whole number >= 0; using {default}"
    return int(str(text).strip()), ""


def node_fault(node: dict[str, Any] | None, keys: ResumeKeys) -> str:
    """Why ``node`` counts as faulty ("" when healthy): deleted, NotReady, marked unschedulable or Failed."""
    if node is None:
        return "node deleted"
    labels = (node.get("metadata") or {}).get("labels") or {}
    if labels.get(keys.health) in UNHEALTHY:
        return f"node {keys.health}={labels[keys.health]}"
    if labels.get(keys.check_status) == "Failed":
        return f"node {keys.check_status}=Failed"
    ready = [c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
    if ready and ready[-1].get("status") != "True":
        return f"node NotReady ({ready[-1].get('reason') or ready[-1].get('status')})"
    return ""


def schedulable(node: dict[str, Any], keys: ResumeKeys, selector: dict[str, str]) -> bool:
    """A node a resumed pod may land on: labelled Schedulable, Ready, not cordoned, matching ``selector``."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if labels.get(keys.health) != "Schedulable" or (node.get("spec") or {}).get("unschedulable"):
        return False
    if node_fault(node, keys) or any(labels.get(k) != v for k, v in selector.items()):
        return False
    return True


def templates(kind: Kind, obj: dict[str, Any]) -> list[tuple[list[str], dict[str, Any], int]]:
    """(path to the pod spec, the pod spec, pods it runs at once) for each pod template of the job: a
    PyTorchJob replica's ``replicas`` (absent: 1; 0 is none), a Job's min(parallelism, completions), a
    JobSet's replicas times its Job's."""
    spec = obj.get("spec") or {}
    if kind is PYTORCHJOB:
        return [(["spec", "pytorchReplicaSpecs", name, "template", "spec"],
                 ((replica.get("template") or {}).get("spec") or {}), _count(replica.get("replicas"), 1))
                for name, replica in sorted((spec.get("pytorchReplicaSpecs") or {}).items())]
    if kind is JOB:
        return [(["spec", "template", "spec"], (spec.get("template") or {}).get("spec") or {}, _at_once(spec))]
    return [(["spec", "replicatedJobs", str(i), "template", "spec", "template", "spec"],
             (((rj.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec") or {},
             _count(rj.get("replicas"), 1) * _at_once((rj.get("template") or {}).get("spec") or {}))
            for i, rj in enumerate(spec.get("replicatedJobs") or [])]


def _at_once(job_spec: dict[str, Any]) -> int:
    """A Job's pods at once: its parallelism (absent: 1), no more than its completions when it sets them."""
    parallelism = _count(job_spec.get("parallelism"), 1)
    completions = job_spec.get("completions")
    return parallelism if completions is None else min(parallelism, _count(completions, 1))


def _count(value: Any, absent: int) -> int:
    """A replica count as the API server stores it (an integer >= 0); absent or unreadable: ``absent``."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else absent


def replicas(kind: Kind, obj: dict[str, Any]) -> int:
    """Pods the job runs at once (several may share a node: dhc.resume.capacity packs them by GPU)."""
    return sum(count for _, _, count in templates(kind, obj))


def missing_selector(kind: Kind, obj: dict[str, Any], keys: ResumeKeys) -> bool:
    return any((spec.get("nodeSelector") or {}).get(keys.health) != "Schedulable" for _, spec, _ in templates(kind, obj))


def selector_patch(kind: Kind, obj: dict[str, Any], keys: ResumeKeys) -> dict[str, Any]:
    """A merge patch adding the health nodeSelector to every pod template of a PyTorchJob."""
    change: dict[str, Any] = {}
    for path, _, _ in templates(kind, obj):
        target = change
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target.setdefault(path[-1], {})["nodeSelector"] = {keys.health: "Schedulable"}
    return change


def selector_ops(kind: Kind, obj: dict[str, Any], keys: ResumeKeys) -> list[dict[str, Any]]:
    """JSON patch ops adding the health nodeSelector to each replicatedJob of a JobSet by its index.

    A merge patch cannot reach into a list: it would replace ``spec.replicatedJobs`` whole, and with it
    anything another writer changed there meanwhile. The JobSet webhook (ValidateUpdate) keeps
    replicatedJobs immutable except a pod template's nodeSelector, labels, annotations and tolerations
    while the JobSet is suspended or this very update suspends it (jobset v0.6 and later; v0.5 only
    when it was suspended already), so these ops go in the same write as ``spec.suspend: true``."""
    ops: list[dict[str, Any]] = []
    for path, spec, _ in templates(kind, obj):
        where = "/" + "/".join(path) + "/nodeSelector"
        if isinstance(spec.get("nodeSelector"), dict):
            ops.append({"op": "add", "path": f"{where}/{pointer(keys.health)}", "value": "Schedulable"})
        else:
            ops.append({"op": "add", "path": where, "value": {keys.health: "Schedulable"}})
    return ops


def as_ops(change: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """A merge patch of objects that exist already, as JSON patch ``add`` ops (which replace a member)."""
    ops: list[dict[str, Any]] = []
    for key, value in change.items():
        path = f"{prefix}/{pointer(key)}"
        ops += as_ops(value, path) if isinstance(value, dict) and value else [{"op": "add", "path": path,
                                                                               "value": value}]
    return ops


def pointer(key: str) -> str:
    """One JSON pointer token (RFC 6901): ~ as ~0, / as ~1."""
    return str(key).replace("~", "~0").replace("/", "~1")


def suspend_patch(kind: Kind, value: bool) -> dict[str, Any]:
    return {"spec": {"runPolicy": {"suspend": value}}} if kind is PYTORCHJOB else {"spec": {"suspend": value}}


def suspended(kind: Kind, obj: dict[str, Any]) -> bool:
    spec = obj.get("spec") or {}
    return bool((spec.get("runPolicy") or {}).get("suspend") if kind is PYTORCHJOB else spec.get("suspend"))


def finished(obj: dict[str, Any]) -> str:
    """The job's terminal condition (Failed, Succeeded/Complete/Completed) or ""."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Failed", *SUCCEEDED):
            return str(condition["type"])
    return ""


def record_patch(keys: ResumeKeys, record: Record, status: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {keys.state: record.text(), keys.status: status}}}


def merge(*changes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for change in changes:
        _merge_into(out, change)
    return out


def _merge_into(out: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            _merge_into(out[key], value)
        else:
            out[key] = value


def age_s(since: str, now: datetime) -> float:
    from dhc.k8s.scheme import parse_time

    started = parse_time(since)
    return (now - started).total_seconds() if started else float("inf")  # unreadable: expired, never forever


def _annotations(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text: str) -> datetime | None:
    from dhc.k8s.scheme import parse_time

    return parse_time(text)


def before(moment: datetime, since: str) -> bool:
    """Whether ``moment`` is before the time ``since`` names (False when it names none)."""
    started = parse(since)
    return started is not None and moment < started

