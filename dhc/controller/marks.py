"""The remediation's marks on a node: its annotation keys, reading them safely, and JSON patch ops.

Pure functions, no API calls: the phase and history annotations are JSON that anyone with node
access could have edited, so reading one never raises (``load`` falls back to a default).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


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
