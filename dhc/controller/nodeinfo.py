"""What the controller reads off a Node object: its GPU capacity, allocatable resources and dhc's try count."""

from __future__ import annotations

from typing import Any

from dhc.k8s import scheme


def capacity(node: dict[str, Any]) -> str:
    return str(((node.get("status") or {}).get("capacity") or {}).get("nvidia.com/gpu", "0")).strip()


def gpu_capacity(node: dict[str, Any]) -> bool:
    return capacity(node) not in ("", "0")


def gpu_count(node: dict[str, Any]) -> int | None:
    """The node's nvidia.com/gpu capacity (an extended resource: a whole number), or None if it is not one."""
    text = capacity(node)
    return int(text) if text.isascii() and text.isdigit() else None


def allocatable(node: dict[str, Any]) -> dict[str, str] | None:
    return (node.get("status") or {}).get("allocatable")


def attempts(node: dict[str, Any], keys: scheme.Keys) -> int:
    try:
        return max(1, int((node["metadata"].get("annotations") or {}).get(keys.attempts, "1")))
    except ValueError:
        return 1
