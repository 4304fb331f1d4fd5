"""Node conditions, written through the ``nodes/status`` subresource as node-problem-detector writes them.

A condition is ``{type, status, reason, message, lastHeartbeatTime, lastTransitionTime}``;
``kubectl describe node`` lists them. ``lastTransitionTime`` moves only when the status changes, so
a fault raised again keeps the time it first turned True. Conditions of other writers (the kubelet's
Ready, MemoryPressure, ...) are kept as they are. The patch is guarded by the node's resourceVersion
and re-read and re-applied on a conflict, like every node write of dhc.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dhc.k8s.client import Kube

MAX_MESSAGE = 1024


def condition(kind: str, status: bool, reason: str, message: str, now: datetime | None = None) -> dict[str, str]:
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": kind, "status": "True" if status else "False", "reason": reason, "message": message[:MAX_MESSAGE],
            "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}


def merged(current: list[dict[str, Any]], wanted: list[dict[str, str]]) -> list[dict[str, Any]]:
    """``current`` with each wanted condition set; a status that did not change keeps its transition time."""
    by_type = {c["type"]: c for c in wanted}
    out = []
    for old in current:
        new = by_type.pop(old.get("type"), None)
        if new is not None and old.get("status") == new["status"] and old.get("lastTransitionTime"):
            new = new | {"lastTransitionTime": old["lastTransitionTime"]}
        out.append(new or old)
    return out + list(by_type.values())


def set_conditions(kube: Kube, name: str, wanted: list[dict[str, str]]) -> dict[str, Any]:
    """PATCH nodes/NAME/status so the node carries ``wanted``; returns the node as written."""
    def change(node: dict[str, Any]) -> list[dict[str, Any]]:
        current = (node.get("status") or {}).get("conditions") or []
        return [{"op": "add", "path": "/status/conditions", "value": merged(current, wanted)}]
    return kube.patch_node(name, change, status=True)
