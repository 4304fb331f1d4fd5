"""Custom resources through the one retrying client: list them, and merge-patch their status subresource.

The controller's on-demand requests (``HealthCheckRequest``, dhc.dev/v1alpha1) are read and reported
on here, so the kubernetes package stays inside dhc.k8s.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from dhc.k8s.client import Kube


def list_objects(kube: Kube, group: str, version: str, namespace: str, plural: str) -> list[dict[str, Any]]:
    api = client.CustomObjectsApi(kube.api)
    raw = kube.call(f"list {plural}", api.list_namespaced_custom_object, group, version, namespace, plural)
    return list((raw or {}).get("items") or [])


def patch_status(kube: Kube, group: str, version: str, namespace: str, plural: str, name: str,
                 status: dict[str, Any]) -> dict[str, Any]:
    """Merge ``status`` into the object's status (the status subresource: spec stays the user's)."""
    api = client.CustomObjectsApi(kube.api)
    return kube.call(f"patch {plural}/{name} status", api.patch_namespaced_custom_object_status, group, version,
                     namespace, plural, name, {"status": status},
                     _content_type="application/merge-patch+json")
