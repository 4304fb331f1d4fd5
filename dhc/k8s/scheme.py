"""The node scheme: which labels, taint and annotations say where a node's deep health check stands.

Defaults mirror SageMaker HyperPod so existing nodeSelectors keep working; the key prefix is
configurable (a real HyperPod cluster owns those keys itself). Pure functions, no API calls.
Who wins the health label: dhc agent's Pending mark stands over the controller's writes until a
remediation action after it consumes it (``agent_mark``), so a passing check never clears a fault.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dhc.model import Device, Finding
from dhc.model.codec import non_finite
from dhc.model.report import Report

DEFAULT_PREFIX = "sagemaker.amazonaws.com"
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_ANNOTATION_CHARS = 16_384  # well inside the 256 KiB all annotations share


PENDING = ("UnschedulablePendingReboot", "UnschedulablePendingReplacement")  # in rising severity
_SEVERITY = ("Schedulable", "Unschedulable", *PENDING)


@dataclass(frozen=True)
class NodeState:
    check_status: str  # InProgress | Passed | Failed
    health: str  # Schedulable | Unschedulable | UnschedulablePendingReboot | UnschedulablePendingReplacement
    reasons: str = ""  # for the annotation and the Event

    @property
    def tainted(self) -> bool:
        return self.health != "Schedulable"


class Keys:
    def __init__(self, prefix: str = DEFAULT_PREFIX):
        self.check_status = f"{prefix}/deep-health-check-status"
        self.health = f"{prefix}/node-health-status"
        self.reasons = f"{prefix}/deep-health-check-reasons"
        self.attempts = f"{prefix}/deep-health-check-attempts"
        self.generation = f"{prefix}/deep-health-check-generation"
        self.request = f"{prefix}/deep-health-check-request"  # label: "recheck" asks for a new check
        self.stage = f"{prefix}/deep-health-check-stage"  # annotation: stress-passed | connectivity
        self.batch = f"{prefix}/deep-health-check-batch"  # annotation: the connectivity Job of the node
        self.record = f"{prefix}/deep-health-check-record"  # annotation: the controller's record of the run
        self.agent_reasons = f"{prefix}/agent-health-reasons"  # annotation: what dhc agent found (JSON)
        # annotation: the controller's finished remediation actions, a JSON list of {"at": ...}
        # (dhc.controller.marks.RemediationKeys.history writes it; read here to tell a consumed agent mark)
        self.remediation_history = f"{prefix}/remediation-history"


def joining() -> NodeState:
    return NodeState("InProgress", "Unschedulable")


def from_verdict(report: Report | dict[str, Any], instance_id: str | None = None, final: bool = True) -> NodeState:
    """The node state a run's report asks for (``state_for``), with its reasons for the annotation."""
    typed = Report.of(report)
    return state_for(typed.verdict.status, typed.verdict.action, final, reasons_text(typed, instance_id))


def state_for(status: str, action: str, final: bool, reasons: str = "") -> NodeState:
    """Passed -> Schedulable; Failed -> pending reboot or replacement; Incomplete -> still InProgress.

    A Passed that is not ``final`` (the stress stage, with connectivity to follow) keeps the node
    InProgress and unschedulable. The one mapping, for a report and for a verdict handed over to the controller.
    """
    if status == "Passed":
        return NodeState("Passed", "Schedulable", reasons) if final else NodeState("InProgress", "Unschedulable", reasons)
    if status == "Failed":
        health = "UnschedulablePendingReboot" if action == "Reboot" else "UnschedulablePendingReplacement"
        return NodeState("Failed", health, reasons)
    return NodeState("InProgress", "Unschedulable", reasons)  # Incomplete: the controller retries, then fails


def reasons_text(report: Report | dict[str, Any], instance_id: str | None = None) -> str:
    """The reasons annotation of a run's report (the node-side sink)."""
    typed = Report.of(report)
    instance, verdict = typed.instance, typed.verdict
    return reasons_annotation(verdict.status, verdict.action, instance_id or instance.instance_id.value,
                              instance.instance_type.value, typed.run.run_id, verdict.reasons)


def reasons_annotation(status: str, action: str, instance_id: str | None, instance_type: str | None, run_id: str,
                       reasons: Sequence[Finding], left_out: int = 0) -> str:
    """The reasons annotation's JSON, the same whoever writes the node (the node-side sink or the controller).

    Cut to MAX_ANNOTATION_CHARS from the end; ``truncated`` counts the reasons left out (``left_out`` of
    them before this, e.g. to fit a termination message)."""
    head = {"verdict": str(status), "action": str(action), "instance_id": instance_id, "instance_type": instance_type,
            "run_id": run_id}
    rows = [_reason(r) for r in reasons]
    kept = len(rows)
    while True:
        cut = left_out + len(rows) - kept
        text = json.dumps(head | {"reasons": rows[:kept]} | ({"truncated": cut} if cut else {}), separators=(",", ":"))
        if len(text) <= MAX_ANNOTATION_CHARS or kept == 0:
            return text
        kept -= 1


def _reason(r: Finding) -> dict[str, Any]:
    return {"check": r.check, "status": r.status.value, "message": r.message, "action": r.action.value,
            "metric": r.metric, "value": None if non_finite(r.value) else r.value, "limit": r.limit, "unit": r.unit,
            "gpu": gpu_ids(r.device)}


def label_value(value: str) -> str:
    """A valid label value: at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", value)[:63].strip("-._")
    assert _LABEL_VALUE.match(cleaned), cleaned
    return cleaned


def taint(keys: Keys, state: NodeState) -> dict[str, str]:
    return {"key": keys.health, "value": label_value(state.health), "effect": "NoSchedule"}


def gpu_ids(device: Device | None) -> dict[str, Any] | None:
    """A GPU's identifiers for an annotation or message (None for any other device)."""
    if device is None or device.kind != "gpu":
        return None
    return {"index": device.index, "uuid": device.uuid, "serial": device.serial, "pci_bus_id": device.pci_bus_id}


def node_ops(node: dict[str, Any], keys: Keys, state: NodeState, annotations: dict[str, str] | None = None,
             drop_labels: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """JSON patch operations that set dhc's labels, annotations and taint, and touch nothing else.

    A standing agent mark (``agent_mark``) is never lowered: the health written is the more severe of
    the mark and ``state``'s, so a Passed check leaves such a node Passed but still Pending."""
    meta, spec = node.get("metadata") or {}, node.get("spec") or {}
    mark = agent_mark(node, keys)
    if mark and _SEVERITY.index(mark) > _SEVERITY.index(state.health if state.health in _SEVERITY else PENDING[1]):
        state = NodeState(state.check_status, mark, state.reasons)
    ops: list[dict[str, Any]] = []
    labels = meta.get("labels") or {}
    if "labels" not in meta or meta["labels"] is None:
        ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
    for key, value in ((keys.check_status, state.check_status), (keys.health, state.health)):
        if labels.get(key) != label_value(value):
            ops.append({"op": "add", "path": f"/metadata/labels/{_escape(key)}", "value": label_value(value)})
    for key in drop_labels:
        if key in labels:
            ops.append({"op": "remove", "path": f"/metadata/labels/{_escape(key)}"})
    wanted = dict(annotations or {}) | ({keys.reasons: state.reasons} if state.reasons else {})
    current_annotations = meta.get("annotations") or {}
    changed = {k: v for k, v in wanted.items() if current_annotations.get(k) != v}
    if changed and ("annotations" not in meta or meta["annotations"] is None):
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
    for key, value in changed.items():
        ops.append({"op": "add", "path": f"/metadata/annotations/{_escape(key)}", "value": value})
    current = spec.get("taints") or []
    wanted = [t for t in current if t.get("key") != keys.health] + ([taint(keys, state)] if state.tainted else [])
    if _plain_taints(wanted) != _plain_taints(current):
        ops.append({"op": "add", "path": "/spec/taints", "value": wanted})
    return ops


def _plain_taints(taints: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    return [(t.get("key"), t.get("value"), t.get("effect")) for t in taints]


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")




def pending_ops(node: dict[str, Any], keys: Keys, health: str, annotations: dict[str, str]) -> list[dict[str, Any]]:
    """JSON patch operations a node-bound writer (dhc agent) uses to mark its node PendingReboot or
    PendingReplacement: the health label, its NoSchedule taint and ``annotations``. Never a milder
    state than the node has (a PendingReplacement stays), never Schedulable, never the check-status label."""
    assert health in PENDING, health
    meta = node.get("metadata") or {}
    current = (meta.get("labels") or {}).get(keys.health)
    if current in PENDING and PENDING.index(current) > PENDING.index(health):
        health = current
    ops: list[dict[str, Any]] = []
    if meta.get("labels") is None:
        ops.append({"op": "add", "path": "/metadata/labels", "value": {}})
    if current != health:
        ops.append({"op": "add", "path": f"/metadata/labels/{_escape(keys.health)}", "value": health})
    old = meta.get("annotations") or {}
    changed = {k: v for k, v in annotations.items() if old.get(k) != v}
    if changed and meta.get("annotations") is None:
        ops.append({"op": "add", "path": "/metadata/annotations", "value": {}})
    ops += [{"op": "add", "path": f"/metadata/annotations/{_escape(k)}", "value": v} for k, v in changed.items()]
    taints = (node.get("spec") or {}).get("taints") or []
    wanted = [t for t in taints if t.get("key") != keys.health] + [taint(keys, NodeState("Failed", health))]
    if _plain_taints(wanted) != _plain_taints(taints):
        ops.append({"op": "add", "path": "/spec/taints", "value": wanted})
    return ops


def agent_mark(node: dict[str, Any], keys: Keys) -> str | None:
    """The node's Pending health label when it is dhc agent's mark and still stands, else None.

    It stands when the agent's annotation is on the node, the label is still Pending (a person who
    relabels the node lifts it) and the annotation's ``ts`` is newer than every finished remediation
    action in the history (an action consumes the marks made before it). Fails closed: a ``ts`` that
    cannot be read stands; a history entry that cannot be read consumes nothing."""
    meta = node.get("metadata") or {}
    health, notes = (meta.get("labels") or {}).get(keys.health), meta.get("annotations") or {}
    if health not in PENDING or keys.agent_reasons not in notes:
        return None
    marked = parse_time(load_annotation(notes[keys.agent_reasons], {}).get("ts"))
    acted = [parse_time(h.get("at")) for h in load_annotation(notes.get(keys.remediation_history), []) if isinstance(h, dict)]
    last = max((t for t in acted if t is not None), default=None)
    return health if marked is None or last is None or marked > last else None


def load_annotation(text: str | None, default: Any) -> Any:
    """An annotation's JSON, or ``default`` when absent or not ours (never an exception)."""
    try:
        value = json.loads(text) if text else default
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def parse_time(text: Any) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone), or None when it is not one."""
    try:
        value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
