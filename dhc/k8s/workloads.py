"""Training workloads through the one retrying client: which kinds the cluster serves, their objects and pods.

Job auto-resume (dhc.resume) reads and patches Kubeflow PyTorchJobs, batch/v1 Jobs and JobSets here,
so the kubernetes package stays inside dhc.k8s. What the real API server does: a kind whose group
version is not installed answers 404 on its discovery path (``/apis/<group>/<version>``); a merge
patch that carries ``metadata.resourceVersion`` is refused with 409 when the object changed meanwhile
(optimistic concurrency), which callers treat as "re-read and decide again".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from dhc.k8s.client import K8sError, K8sGone, K8sNotFound, Kube, _translate


@dataclass(frozen=True)
class Kind:
    kind: str
    group: str  # "" for no group (never here)
    version: str
    plural: str
    pod_label: str  # the label every pod of such a job carries, valued with the job's name

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


PYTORCHJOB = Kind("PyTorchJob", "kubeflow.org", "v1", "pytorchjobs", "training.kubeflow.org/job-name")
JOB = Kind("Job", "batch", "v1", "jobs", "batch.kubernetes.io/job-name")
JOBSET = Kind("JobSet", "jobset.x-k8s.io", "v1alpha2", "jobsets", "jobset.sigs.k8s.io/jobset-name")
KINDS = (PYTORCHJOB, JOB, JOBSET)


def served(kube: Kube, kind: Kind) -> bool:
    """Whether the API server serves ``kind``'s group version and its resource (discovery)."""
    api = client.CustomObjectsApi(kube.api)
    try:
        raw = kube.call(f"discover {kind.api_version}", api.get_api_resources, kind.group, kind.version,
                        _preload_content=False)  # the raw list: no client model to trip over a missing field
    except K8sNotFound:
        return False
    try:
        resources = json.loads(raw.data)
    except ValueError:
        raise K8sError(f"discover {kind.api_version}: not a JSON APIResourceList: {raw.data[:80]!r}") from None
    return isinstance(resources, dict) and any(isinstance(r, dict) and r.get("name") == kind.plural
                                               for r in resources.get("resources") or [])


def list_all(kube: Kube, kind: Kind) -> list[dict[str, Any]]:
    """Every object of ``kind`` in every namespace."""
    api = client.CustomObjectsApi(kube.api)
    raw = kube.call(f"list {kind.plural}", api.list_cluster_custom_object, kind.group, kind.version, kind.plural)
    return list((raw or {}).get("items") or [])


def read(kube: Kube, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
    api = client.CustomObjectsApi(kube.api)
    return kube.call(f"read {kind.plural} {namespace}/{name}", api.get_namespaced_custom_object, kind.group,
                     kind.version, namespace, kind.plural, name)


def patch(kube: Kube, kind: Kind, obj: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch ``change`` into ``obj`` guarded by its resourceVersion: K8sConflict when it changed since."""
    meta = obj["metadata"]
    guarded = dict(change)
    guarded["metadata"] = dict(change.get("metadata") or {}) | {"resourceVersion": meta["resourceVersion"]}
    api = client.CustomObjectsApi(kube.api)
    return kube.call(f"patch {kind.plural} {meta['namespace']}/{meta['name']}", api.patch_namespaced_custom_object,
                     kind.group, kind.version, meta["namespace"], kind.plural, meta["name"], guarded,
                     _content_type="application/merge-patch+json")


def json_patch(kube: Kube, kind: Kind, obj: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply JSON patch ``ops`` (RFC 6902) to ``obj`` after a ``test`` of its resourceVersion: the API server
    answers 422 when the test fails, which reads as K8sConflict (changed since: re-read and decide again)."""
    meta = obj["metadata"]
    guard = {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}
    api = client.CustomObjectsApi(kube.api)
    return kube.call(f"patch {kind.plural} {meta['namespace']}/{meta['name']}", api.patch_namespaced_custom_object,
                     kind.group, kind.version, meta["namespace"], kind.plural, meta["name"], [guard, *ops],
                     _content_type="application/json-patch+json")


def pods(kube: Kube, kind: Kind) -> tuple[list[dict[str, Any]], str]:
    """Every pod of a job of ``kind`` (all namespaces), and the list's resourceVersion for a watch."""
    raw = kube.call(f"list pods of {kind.plural}", kube.core.list_pod_for_all_namespaces, label_selector=kind.pod_label,
                    _preload_content=False)  # raw JSON: one odd pod in someone's namespace never stops the list
    try:
        body = json.loads(raw.data)
        return list(body.get("items") or []), str(body["metadata"]["resourceVersion"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise K8sError(f"list pods of {kind.plural}: not a PodList: {raw.data[:80]!r}") from None


def watch_pods(kube: Kube, kind: Kind, version: str, timeout_s: int) -> Any:
    """Pod events of ``kind``'s jobs after ``version``; K8sGone when it is too old (list again)."""
    from kubernetes import watch
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import HTTPError

    # return_type "object": events stay plain dicts, so one pod the client's models refuse never wedges the watch
    stream = watch.Watch(return_type="object").stream(kube.core.list_pod_for_all_namespaces, label_selector=kind.pod_label,
                                  resource_version=version, timeout_seconds=timeout_s, _request_timeout=timeout_s + 10)
    try:
        for event in stream:
            yield event["type"], event["raw_object"]
    except ApiException as exc:
        if exc.status == 410:
            raise K8sGone(f"watch pods of {kind.plural}: resourceVersion {version} is too old") from None
        raise _translate(f"watch pods of {kind.plural}", exc) from None
    except (HTTPError, OSError) as exc:
        raise K8sError(f"watch pods of {kind.plural}: connection lost: {exc}") from None
    except ValueError as exc:  # the client's model refused an event's object (pydantic's error is a ValueError)
        raise K8sError(f"watch pods of {kind.plural}: an event the client cannot read: {str(exc)[:200]}") from None


def event(kube: Kube, kind: Kind, obj: dict[str, Any], reason: str, message: str, warning: bool) -> None:
    """An Event on the job itself (``kubectl describe`` shows it), from component dhc-job-auto-resume."""
    meta, now = obj["metadata"], datetime.now(UTC)
    body = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.dhc-"),
        involved_object=client.V1ObjectReference(kind=kind.kind, name=meta["name"], namespace=meta["namespace"],
                                                  uid=meta.get("uid"), api_version=kind.api_version),
        reason=reason, message=message[:1024], type="Warning" if warning else "Normal",
        source=client.V1EventSource(component="dhc-job-auto-resume"), first_timestamp=now, last_timestamp=now,
        count=1)
    kube.call(f"create event for {kind.kind} {meta['name']}", kube.core.create_namespaced_event, meta["namespace"],
              body)
