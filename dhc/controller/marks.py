"""The remediation's marks on a node: its annotation keys, reading its phase safely, and JSON patch ops.

Pure functions, no API calls: the phase and history annotations are JSON that anyone with node
access could have edited, so reading one never raises (``load`` falls back to a default).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from dhc.k8s.scheme import load_annotation as load

HISTORY_KEPT = 20  # finished actions kept in the history annotation


class RemediationKeys:
    def __init__(self, prefix: str):
        self.state = f"{prefix}/remediation"  # annotation: the phase, as JSON
        self.history = f"{prefix}/remediation-history"  # annotation: finished actions, as JSON
        self.held = f"{prefix}/remediation-held"  # annotation: the breaker tripped on this node


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def annotate(node: dict[str, Any], annotations: dict[str, str | None],
             labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """JSON patch ops setting (or, for None, removing) annotations and labels; nothing else."""
    ops: list[dict[str, Any]] = []
    for section, values in (("annotations", annotations), ("labels", labels or {})):
        current = node["metadata"].get(section)
        if current is None and any(v is not None for v in values.values()):
            ops.append({"op": "add", "path": f"/metadata/{section}", "value": {}})
        for key, value in values.items():
            path = f"/metadata/{section}/{key.replace('~', '~0').replace('/', '~1')}"
            if value is None and key in (current or {}):
                ops.append({"op": "remove", "path": path})
            elif value is not None and (current or {}).get(key) != value:
                ops.append({"op": "add", "path": path, "value": value})
    return ops


def read_state(node: dict[str, Any], keys: RemediationKeys) -> dict[str, Any]:
    """The node's remediation phase; one that is not dhc's (hand-edited) reads as ``stuck`` with why."""
    text = (node["metadata"].get("annotations") or {}).get(keys.state)
    state = load(text, {})
    if text and (state.get("action") not in ("Reboot", "Replace") or not isinstance(state.get("phase"), str)
                 or not str(state.get("generation", 0)).isdigit()):
        return {"phase": "stuck", "why": f"unreadable {keys.state} annotation: {text[:80]!r}"}
    return state


def phase_ops(node: dict[str, Any], keys: RemediationKeys, state: dict[str, Any] | None,
              unschedulable: bool | None = None, history: dict[str, Any] | None = None,
              labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """JSON patch ops writing the phase (None: removing it), appending to the history, cordoning or not."""
    annotations: dict[str, str | None] = {keys.state: json.dumps(state, separators=(",", ":")) if state else None}
    if history is not None:
        past = load((node["metadata"].get("annotations") or {}).get(keys.history), [])
        annotations[keys.history] = json.dumps((past + [history])[-HISTORY_KEPT:], separators=(",", ":"))
    ops = annotate(node, annotations, labels)
    if unschedulable is not None and bool((node.get("spec") or {}).get("unschedulable")) != unschedulable:
        ops.append({"op": "add", "path": "/spec/unschedulable", "value": unschedulable})
    return ops
