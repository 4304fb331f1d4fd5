"""The only place dhc talks to the Kubernetes API server (the official ``kubernetes`` client).

Every call has a timeout. 429 and 5xx (and dropped connections) are retried with exponential
backoff and jitter; a node patch is guarded by its resourceVersion and re-read and re-applied on a
conflict, so it never clobbers what others changed meanwhile. API errors leave as dhc's own
exceptions (``dhc.k8s.apierrors``, re-exported here), chained to the client's, and each says
whether it is ``permanent`` (reported, not retried unchanged) or temporary (worth another try).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from dhc.k8s.apierrors import RETRIED, K8sConflict, K8sError, K8sGone, K8sNotFound, retry_after, translate

__all__ = ["K8sConflict", "K8sError", "K8sGone", "K8sNotFound", "Kube", "in_cluster_client"]
_translate = translate  # the name dhc.k8s.workloads imports


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None, timeout_s: float = 10.0, attempts: int = 6,
                 backoff_s: float = 0.2):
        self.api = api_client or _configured_client()
        self.api.sanitize_for_serialization = _plain_first(self.api.sanitize_for_serialization)  # type: ignore[method-assign]
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.timeout_s, self.attempts, self.backoff_s = timeout_s, attempts, backoff_s

    def call(self, what: str, fn: Callable[..., Any], *args: Any, retried: frozenset[int] | set[int] = RETRIED,
             **kwargs: Any) -> Any:
        """Run one API call with a timeout, retrying what is worth retrying (``retried``); translate errors."""
        for attempt in range(1, self.attempts + 1):
            try:
                return fn(*args, _request_timeout=self.timeout_s, **kwargs)
            except ApiException as exc:
                if exc.status in retried and attempt < self.attempts:
                    self._pause(attempt, exc)
                    continue
                raise translate(what, exc) from exc
            except (Urllib3Error, OSError) as exc:
                if attempt < self.attempts:
                    self._pause(attempt, None)
                    continue
                raise K8sError(f"{what}: API server unreachable: {exc}", what=what) from exc
        raise AssertionError("unreachable")

    def raw(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``call``, answering the API server's JSON as plain dicts (no model objects built and taken apart)."""
        def fetch(*inner: Any, **options: Any) -> Any:
            data = fn(*inner, _preload_content=False, **options).data
            try:
                return json.loads(data)
            except ValueError as exc:
                raise K8sError(f"{what}: the API server's answer is not JSON: {data[:60]!r}", what=what) from exc

        return self.call(what, fetch, *args, **kwargs)

    def node(self, name: str) -> dict[str, Any]:
        return self.raw(f"read node {name}", self.core.read_node, name)

    def patch_node(self, name: str, change: Callable[[dict[str, Any]], list[dict[str, Any]]],
                   status: bool = False, current: dict[str, Any] | None = None) -> dict[str, Any]:
        """Apply ``change(node) -> JSON patch ops`` guarded by the node's resourceVersion; re-read on conflict.
        ``status``: through the ``nodes/status`` subresource (conditions), as node-problem-detector writes.
        ``current``: a cached copy to try first, saving the read; if it is stale the guard fails and the
        node is read (and a cached copy that needs no change is never trusted to say so)."""
        for attempt in range(1, self.attempts + 1):
            node, cached = (current, True) if attempt == 1 and current is not None else (self.node(name), False)
            ops = change(node)
            if not ops and cached:
                node, cached = self.node(name), False
                ops = change(node)
            if not ops:
                return node
            guard = {"op": "test", "path": "/metadata/resourceVersion", "value": node["metadata"]["resourceVersion"]}
            try:
                return self.raw(f"patch node {name}" + (" status" if status else ""),
                                self.core.patch_node_status if status else self.core.patch_node, name, [guard, *ops])
            except K8sConflict:
                if attempt == self.attempts:
                    raise
                if not cached:  # a stale cache is read again at once; a race with another writer waits
                    self._pause(attempt, None)
        raise AssertionError("unreachable")

    def list_nodes(self, label_selector: str = "") -> tuple[list[dict[str, Any]], str]:
        raw = self.raw("list nodes", self.core.list_node, label_selector=label_selector)
        return raw.get("items") or [], raw["metadata"]["resourceVersion"]

    def list_jobs(self, namespace: str, label_selector: str) -> tuple[list[dict[str, Any]], str]:
        raw = self.raw(f"list jobs in {namespace}", self.batch.list_namespaced_job, namespace,
                       label_selector=label_selector)
        return raw.get("items") or [], raw["metadata"]["resourceVersion"]

    def list_pods(self, namespace: str, label_selector: str, field_selector: str = "") -> list[dict[str, Any]]:
        raw = self.raw(f"list pods in {namespace}", self.core.list_namespaced_pod, namespace,
                       label_selector=label_selector, field_selector=field_selector)
        return raw.get("items") or []

    def pods_on_node(self, node: str) -> list[dict[str, Any]]:
        """Every pod bound to ``node``, in all namespaces."""
        raw = self.raw(f"list pods on node {node}", self.core.list_pod_for_all_namespaces,
                       field_selector=f"spec.nodeName={node}")
        return raw.get("items") or []

    def evict(self, namespace: str, name: str) -> bool:
        """Evict a pod through the Eviction API: True when it is going or gone; False on 429 (a
        PodDisruptionBudget allows no disruption now: try later). 5xx are retried; a retry after an
        eviction that went through finds the pod gone (404), so it never evicts twice."""
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
        try:
            self.call(f"evict pod {namespace}/{name}", self.core.create_namespaced_pod_eviction, name, namespace,
                      body, retried=RETRIED - {429})
        except K8sNotFound:
            return True
        except K8sError as exc:
            if exc.status == 429:
                return False
            raise
        return True

    def create_job(self, manifest: dict[str, Any]) -> bool:
        """Create the Job; False when a Job of that name exists already (a restarted controller)."""
        return self._create("job", "/apis/batch/v1/namespaces/{namespace}/jobs", manifest)

    def create_service(self, manifest: dict[str, Any]) -> bool:
        """Create the Service; False when one of that name exists already."""
        return self._create("service", "/api/v1/namespaces/{namespace}/services", manifest)

    def _create(self, kind: str, path: str, manifest: dict[str, Any]) -> bool:
        """POST the manifest as is: the typed create validates it into model classes first (ms per Job)."""
        meta = manifest["metadata"]
        try:
            self.call(f"create {kind} {meta['name']}", self._post, path, meta["namespace"], manifest)
        except K8sConflict:
            return False
        return True

    def _post(self, path: str, namespace: str, body: dict[str, Any], _request_timeout: float) -> Any:
        """One POST through the client's own request path (its auth, TLS and pool); ApiException on non-2xx."""
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        request = self.api.param_serialize("POST", path, path_params={"namespace": namespace}, body=body,
                                           header_params=headers, auth_settings=["BearerToken"])
        response = self.api.call_api(*request, _request_timeout=_request_timeout)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response

    def watch(self, kind: str, resource_version: str, timeout_s: int, namespace: str | None = None,
              label_selector: str = "") -> Any:
        """Events of ``kind`` ("nodes" or "jobs") after ``resource_version``, for up to ``timeout_s``.

        Raises K8sGone when the version is too old (the caller re-lists); other failures surface as
        K8sError, and the caller resumes from the last version it saw.
        """
        from kubernetes import watch

        if kind == "nodes":
            fn, args = self.core.list_node, ()
        else:
            fn, args = self.batch.list_namespaced_job, (namespace,)
        stream = watch.Watch(return_type="object").stream(fn, *args, resource_version=resource_version, timeout_seconds=timeout_s,
                                      label_selector=label_selector, allow_watch_bookmarks=True,
                                      _request_timeout=timeout_s + 10)
        try:
            for event in stream:
                yield event["type"], event["raw_object"]
        except ApiException as exc:
            if exc.status == 410:
                raise K8sGone(f"watch {kind}: resourceVersion {resource_version} is too old", 410) from exc
            raise translate(f"watch {kind}", exc) from exc
        except (Urllib3Error, OSError) as exc:
            raise K8sError(f"watch {kind}: connection lost: {exc}", what=f"watch {kind}") from exc

    def node_event(self, node: dict[str, Any], reason: str, message: str, warning: bool, namespace: str = "default",
                   component: str = "dhc") -> None:
        meta = node["metadata"]
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.dhc-"),
            involved_object=client.V1ObjectReference(kind="Node", name=meta["name"], uid=meta.get("uid"),
                                                      api_version="v1"),
            reason=reason, message=message[:1024], type="Warning" if warning else "Normal",
            source=client.V1EventSource(component=component, host=meta["name"]),
            first_timestamp=now, last_timestamp=now, count=1)
        self.raw(f"create event for node {meta['name']}", self.core.create_namespaced_event, namespace, event)

    def _pause(self, attempt: int, exc: ApiException | None) -> None:
        wait = retry_after(exc)
        delay = wait if wait is not None else self.backoff_s * 2 ** (attempt - 1)
        time.sleep(delay * random.uniform(0.5, 1.5))


def _plain_first(sanitize: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The client's body sanitizer, skipped for plain JSON (dhc's manifests and patches, a fifth of the
    controller's CPU at scale); anything json cannot encode as is (a model, a datetime) still goes through it."""
    def plain_or_sanitized(obj: Any) -> Any:
        if type(obj) in (dict, list):
            try:
                json.dumps(obj)
            except (TypeError, ValueError):
                return sanitize(obj)
            return obj
        return sanitize(obj)

    return plain_or_sanitized


SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def in_cluster_client(token_file: str = f"{SERVICE_ACCOUNT}/token", ca_file: str = f"{SERVICE_ACCOUNT}/ca.crt",
                      environ: dict[str, str] | None = None) -> client.ApiClient:
    """The pod's ServiceAccount: the API server from KUBERNETES_SERVICE_HOST/PORT, its token and CA."""
    from kubernetes.config.incluster_config import InClusterConfigLoader

    configuration = client.Configuration()
    loader = InClusterConfigLoader(token_filename=token_file, cert_filename=ca_file,
                                   **({"environ": environ} if environ is not None else {}))
    loader.load_and_set(configuration)
    return client.ApiClient(configuration)


def _configured_client() -> client.ApiClient:
    """In a pod its ServiceAccount; elsewhere the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    try:
        return in_cluster_client()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as exc:
            raise K8sError(f"no Kubernetes configuration (not in a pod, and no usable kubeconfig): {exc}") from exc
    return client.ApiClient()
