"""A small Kubernetes API server for tests, over real HTTP: nodes, Jobs, pods and events, with planted faults.

It honours what dhc relies on: resourceVersion bumps on every write, JSON patch (RFC 6902, with
``test``), 404 for unknown objects, 409 for a duplicate create, label selectors of the ``k=v`` and
``k`` forms, the ``spec.nodeName=`` field selector on pods, list and watch with resourceVersion
(410 Gone once history is compacted past it), watches that can be dropped mid-stream, a queue of
faults (status, body, headers) for the next requests that match a method and path prefix, standing
faults (``inject``: a status with the API server's Status body, or a connection dropped without a
reply, for every matching request until healed or a count runs out), and a log of every request
(method, path with query, content type).

Pods are what the Job controller and the kubelet make of a Job: ``run_pod`` creates an ended pod of
a Job on a node, owned by the Job (its UID), labelled ``batch.kubernetes.io/job-name``, with the
container's exit code, reason and termination message in its status, as the kubelet reports them.
"""

from __future__ import annotations

import bisect
import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Emulator:
    def __init__(self, tls: tuple[Path, Path] | None = None):
        """``tls``: (certificate, key) files to serve HTTPS, as an in-cluster API server does."""
        self.lock = threading.Lock()
        self.version = 100
        self.nodes: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, str]] = []  # (method, path, content type)
        self.faults: list[tuple[str, str, int, dict[str, Any], dict[str, str]]] = []
        self.injected: list[dict[str, Any]] = []  # standing faults: see inject()
        self.before_patch: list[Any] = []  # callables run once before a patch: a concurrent writer
        self.jobs: dict[str, dict[str, Any]] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.pdbs: list[dict[str, Any]] = []  # PodDisruptionBudgets: namespace, matchLabels, disruptionsAllowed
        self.evictions: list[str] = []  # namespace/name of every pod evicted
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []  # (version, kind, type, object)
        self.oldest = 0  # watches from before this version get 410 Gone
        self.changed = threading.Condition(self.lock)
        self.drop_generation = 0  # bumped to drop every open watch
        self.writes = 0
        self.custom: dict[str, dict[str, Any]] = {}  # "<plural>/<namespace>/<name>" -> a dhc.dev custom object
        self.routes: list[Any] = []  # more routes (k8s_workloads): route(handler, method, parts, query, body) -> answered
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                emulator._serve(self, "GET")

            def do_PATCH(self):
                emulator._serve(self, "PATCH")

            def do_POST(self):
                emulator._serve(self, "POST")

            def do_DELETE(self):
                emulator._serve(self, "DELETE")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.authorizations: list[str] = []
        if tls is not None:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.url = f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> Emulator:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- test helpers --------------------------------------------------------------------------------
    def add_node(self, name: str, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
                 provider_id: str | None = None, status: dict[str, Any] | None = None,
                 annotations: dict[str, str] | None = None) -> None:
        with self.lock:
            node = {"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": name, "uid": f"uid-{name}", "labels": labels or {}, "annotations": annotations or {}},
                "spec": {"providerID": provider_id, "taints": taints or []}, "status": status or {}}
            self._record("nodes", "ADDED", node)
            self.nodes[name] = node

    def delete_node(self, name: str) -> None:
        """Someone deletes a Node object (a person, or the cloud provider after a termination)."""
        with self.lock:
            node = self.nodes.pop(name)
            self._record("nodes", "DELETED", node)

    def set_node_labels(self, name: str, labels: dict[str, str]) -> None:
        """Someone else (a person, the node-side sink) relabels a node."""
        with self.lock:
            node = copy.deepcopy(self.nodes[name])
            node["metadata"]["labels"].update(labels)
            self._record("nodes", "MODIFIED", node)
            self.nodes[name] = node

    def finish_job(self, name: str, succeeded: bool, reason: str = "", message: str = "") -> None:
        with self.lock:
            job = copy.deepcopy(self.jobs[name])
            kind = "Complete" if succeeded else "Failed"
            job["status"] = {"succeeded" if succeeded else "failed": 1,
                             "conditions": [{"type": kind, "status": "True", "reason": reason or kind, "message": message}]}
            self._record("jobs", "MODIFIED", job)
            self.jobs[name] = job

    def run_pod(self, job: str, node: str, message: str | None = None, exit_code: int = 0, reason: str = "",
                index: int | None = None, owner_uid: str | None = None, name: str | None = None) -> str:
        """An ended pod of ``job`` on ``node``: what the kubelet reports of its container ``dhc``."""
        with self.lock:
            owner = owner_uid or self.jobs[job]["metadata"]["uid"]
            pod_name = name or f"{job}-{index if index is not None else 0}-{len(self.pods):05d}"
            terminated = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error")}
            if message is not None:
                terminated["message"] = message
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": pod_name, "namespace": self.jobs[job]["metadata"]["namespace"], "uid": f"uid-{pod_name}",
                "labels": {"batch.kubernetes.io/job-name": job, "job-name": job, "batch.kubernetes.io/controller-uid": owner},
                "annotations": {} if index is None else {"batch.kubernetes.io/job-completion-index": str(index)},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": owner,
                                     "controller": True, "blockOwnerDeletion": True}]},
                "spec": {"nodeName": node, "containers": [{"name": "dhc", "image": "dhc-node:test"}]},
                "status": {"phase": "Succeeded" if exit_code == 0 else "Failed", "containerStatuses": [
                    {"name": "dhc", "ready": False, "restartCount": 0, "image": "dhc-node:test", "imageID": "",
                     "state": {"terminated": terminated}}]}}
            self._record("pods", "ADDED", pod)
            self.pods[pod_name] = pod
            return pod_name

    def add_pod(self, name: str, node: str, namespace: str = "default", labels: dict[str, str] | None = None,
                owner_kind: str | None = None, phase: str = "Running") -> None:
        """A pod bound to ``node``; ``owner_kind`` (ReplicaSet, DaemonSet, ...) names its controller."""
        with self.lock:
            owners = [] if owner_kind is None else [{"apiVersion": "apps/v1", "kind": owner_kind, "name": f"{name}-owner",
                                                     "uid": f"uid-{name}-owner", "controller": True}]
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels or {},
                "ownerReferences": owners}, "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
                "status": {"phase": phase}}
            self._record("pods", "ADDED", pod)
            self.pods[name] = pod

    def add_pdb(self, namespace: str, match_labels: dict[str, str], disruptions_allowed: int) -> dict[str, Any]:
        """A PodDisruptionBudget; raise ``["disruptionsAllowed"]`` later as its pods become healthy elsewhere."""
        with self.lock:
            pdb = {"name": f"pdb-{len(self.pdbs)}", "namespace": namespace, "matchLabels": match_labels,
                   "disruptionsAllowed": disruptions_allowed}
            self.pdbs.append(pdb)
            return pdb

    def reboot_node(self, name: str) -> None:
        """The node came back from a reboot: a new boot ID, and its Ready condition turned True just now."""
        with self.lock:
            node = copy.deepcopy(self.nodes[name])
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            node["status"]["nodeInfo"] = {  # every field the API requires, as the kubelet reports them
                "architecture": "amd64", "bootID": f"boot-{self.version}", "containerRuntimeVersion": "containerd://1.7",
                "kernelVersion": "6.1", "kubeProxyVersion": "v1.30.0", "kubeletVersion": "v1.30.0",
                "machineID": name, "operatingSystem": "linux", "osImage": "Amazon Linux 2023", "systemUUID": name}
            conditions = [c for c in node["status"].get("conditions") or [] if c.get("type") != "Ready"]
            node["status"]["conditions"] = conditions + [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                                          "lastTransitionTime": now, "lastHeartbeatTime": now}]
            self._record("nodes", "MODIFIED", node)
            self.nodes[name] = node

    def _evict(self, handler: BaseHTTPRequestHandler, namespace: str, name: str) -> None:
        """The Eviction API: 201 and the pod deleted, 404 when gone, 429 while a PDB allows no disruption."""
        with self.lock:
            pod = self.pods.get(name)
            if pod is None or pod["metadata"]["namespace"] != namespace:
                return _reply(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            labels = pod["metadata"].get("labels") or {}
            for pdb in self.pdbs:
                if pdb["namespace"] == namespace and all(labels.get(k) == v for k, v in pdb["matchLabels"].items()):
                    if pdb["disruptionsAllowed"] < 1:
                        return _reply(handler, 429, {
                            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429,
                            "reason": "TooManyRequests",
                            "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                            "details": {"causes": [{"reason": "DisruptionBudget", "message": f"The disruption "
                                                    f"budget {pdb['name']} needs 1 healthy pods and has 1 currently"}]}})
                    pdb["disruptionsAllowed"] -= 1
            del self.pods[name]
            self._record("pods", "DELETED", pod)
            self.evictions.append(f"{namespace}/{name}")
        return _reply(handler, 201, {"kind": "Eviction", "apiVersion": "policy/v1",
                                     "metadata": {"name": name, "namespace": namespace}})

    def compact(self) -> None:
        """Forget history: watches resuming from before now get 410 Gone."""
        with self.lock:
            self.oldest = self.version + 1
            self.history.clear()

    def drop_watches(self) -> None:
        with self.lock:
            self.drop_generation += 1
            self.changed.notify_all()

    def _record(self, kind: str, event_type: str, obj: dict[str, Any]) -> None:
        """Under the lock: a write bumps the version and is kept for watches."""
        self.version += 1
        self.writes += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.history.append((self.version, kind, event_type, copy.deepcopy(obj)))
        self.changed.notify_all()

    def fail_next(self, method: str, prefix: str, status: int, body: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None) -> None:
        self.faults.append((method, prefix, status, body or {"kind": "Status", "code": status}, headers or {}))

    def inject(self, method: str, prefix: str, status: int | None, message: str = "",
               times: int | None = None) -> dict[str, Any]:
        """Every ``method`` request whose path starts with ``prefix`` fails: ``status`` with a Status body
        carrying ``message`` (as the API server words it), or for None the connection closed without a
        reply (a reset, a crashed API server). ``times``: that many requests (None: until ``heal``).
        Returns the fault; its ``"hits"`` counts the requests it failed."""
        fault = {"method": method, "prefix": prefix, "status": status, "message": message, "times": times, "hits": 0}
        with self.lock:
            self.injected.append(fault)
        return fault

    def heal(self, fault: dict[str, Any]) -> None:
        with self.lock:
            if fault in self.injected:
                self.injected.remove(fault)

    def _injected(self, handler: BaseHTTPRequestHandler, method: str, path: str) -> bool:
        """True when a standing fault answered (or dropped) this request."""
        with self.lock:
            fault = next((f for f in self.injected if f["method"] == method and path.startswith(f["prefix"])), None)
            if fault is None:
                return False
            fault["hits"] += 1
            if fault["times"] is not None and fault["hits"] >= fault["times"]:
                self.injected.remove(fault)
        if fault["status"] is None:
            handler.close_connection = True  # no status line at all: the client sees the connection drop
            return True
        status = fault["status"]
        _reply(handler, status, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                 "message": fault["message"] or f"injected {status}", "code": status,
                                 "reason": _REASONS.get(status, "InternalError")})
        return True

    def kubeconfig(self, folder: Path) -> Path:
        path = folder / "kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}]}))
        return path

    # -- serving -------------------------------------------------------------------------------------
    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        path, query = url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        self.requests.append((method, handler.path if url.query else path, handler.headers.get("Content-Type", "")))
        self.authorizations.append(handler.headers.get("Authorization", ""))
        for fault in self.faults:
            if fault[0] == method and path.startswith(fault[1]):
                self.faults.remove(fault)
                return _reply(handler, fault[2], fault[3], fault[4])
        if self.injected and self._injected(handler, method, path):
            return None
        parts = path.strip("/").split("/")
        if any(route(handler, method, parts, query, body) for route in self.routes):
            return
        if parts == ["api", "v1", "nodes"] and method == "GET":
            return self._list_or_watch(handler, "nodes", query)
        if parts[:3] == ["api", "v1", "nodes"] and len(parts) == 4:
            return self._node(handler, method, parts[3], body)
        if parts[:3] == ["api", "v1", "nodes"] and len(parts) == 5 and parts[4] == "status":
            return self._node(handler, method, parts[3], body)  # the status subresource (conditions)
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "services" and method == "POST":
            service = json.loads(body)
            with self.lock:
                if service["metadata"]["name"] in self.services:
                    return _reply(handler, 409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
                service["metadata"]["namespace"] = parts[3]
                self._record("services", "ADDED", service)
                self.services[service["metadata"]["name"]] = service
            return _reply(handler, 201, service)
        if parts == ["api", "v1", "pods"] and method == "GET":
            with self.lock:
                items = [copy.deepcopy(p) for p in self.pods.values()
                         if _selects(query.get("labelSelector", ""), p) and _fields(query.get("fieldSelector", ""), p)]
                version = str(self.version)  # the version of exactly these items: a watch from it misses nothing
            return _reply(handler, 200, {"kind": "PodList", "apiVersion": "v1",
                                         "metadata": {"resourceVersion": version}, "items": items})
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 7 and parts[4] == "pods" \
                and parts[6] == "eviction" and method == "POST":
            return self._evict(handler, parts[3], parts[5])
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "pods" and method == "GET":
            with self.lock:
                items = [copy.deepcopy(p) for p in self.pods.values() if p["metadata"]["namespace"] == parts[3]
                         and _selects(query.get("labelSelector", ""), p) and _fields(query.get("fieldSelector", ""), p)]
                version = str(self.version)
            return _reply(handler, 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": version},
                                         "items": items})
        if parts[:4] == ["apis", "batch", "v1", "namespaces"] and len(parts) >= 6 and parts[5] == "jobs":
            return self._jobs(handler, method, parts[4], parts[6] if len(parts) > 6 else None, query, body)
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "events" and method == "POST":
            event = json.loads(body)
            with self.lock:
                self.version += 1
                event.setdefault("metadata", {})["name"] = f"{event['metadata'].get('generateName', 'e.')}{self.version}"
                event["metadata"]["namespace"] = parts[3]
                self.events.append(event)
            return _reply(handler, 201, event)
        if parts[:3] == ["apis", "dhc.dev", "v1alpha1"] and len(parts) >= 6 and parts[3] == "namespaces":
            return self._custom(handler, method, parts[4:], body)
        return _reply(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})

    def add_custom(self, plural: str, namespace: str, name: str, spec: dict[str, Any]) -> None:
        """What kubectl apply does for a dhc.dev custom object: stamped with a creation time and a version."""
        with self.lock:
            self.version += 1
            self.custom[f"{plural}/{namespace}/{name}"] = {
                "apiVersion": "dhc.dev/v1alpha1", "metadata": {"name": name, "namespace": namespace,
                "creationTimestamp": f"2026-01-01T00:00:{self.version % 60:02d}Z", "resourceVersion": str(self.version)},
                "spec": spec}

    def _custom(self, handler: BaseHTTPRequestHandler, method: str, parts: list[str], body: bytes) -> None:
        """[namespace, plural] GET: list; [namespace, plural, name, "status"] PATCH: a merge patch of the status."""
        with self.lock:
            if len(parts) == 2 and method == "GET":
                items = [copy.deepcopy(o) for k, o in sorted(self.custom.items()) if k.startswith(f"{parts[1]}/{parts[0]}/")]
                return _reply(handler, 200, {"items": items, "metadata": {"resourceVersion": str(self.version)}})
            obj = self.custom.get(f"{parts[1]}/{parts[0]}/{parts[2]}") if len(parts) == 4 else None
            if obj is None or parts[3] != "status" or method != "PATCH":
                return _reply(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            if "merge-patch" not in handler.headers.get("Content-Type", ""):
                return _reply(handler, 415, {"kind": "Status", "code": 415})
            obj.setdefault("status", {}).update(json.loads(body).get("status") or {})  # one level: what dhc writes
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            return _reply(handler, 200, copy.deepcopy(obj))

    def _node(self, handler: BaseHTTPRequestHandler, method: str, name: str, body: bytes) -> None:
        if method == "PATCH":
            for hook in self.before_patch:
                hook()
            self.before_patch.clear()
        with self.lock:
            node = self.nodes.get(name)
            if node is None:
                return _reply(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            if method == "GET":
                return _reply(handler, 200, node)
            if "json-patch" not in handler.headers.get("Content-Type", ""):
                return _reply(handler, 415, {"kind": "Status", "code": 415})
            try:
                patched = apply_json_patch(node, json.loads(body))
            except PatchTestFailed:
                return _reply(handler, 422, {"kind": "Status", "code": 422, "reason": "Invalid", "message":
                                             "the server rejected our request due to an error in our request"})
            self._record("nodes", "MODIFIED", patched)
            self.nodes[name] = patched
            return _reply(handler, 200, patched)

    def _jobs(self, handler: BaseHTTPRequestHandler, method: str, namespace: str, name: str | None,
              query: dict[str, str], body: bytes) -> None:
        if method == "GET" and name is None:
            return self._list_or_watch(handler, "jobs", query)
        with self.lock:
            if method == "POST":
                job = json.loads(body)
                job["metadata"]["namespace"] = namespace
                if job["metadata"]["name"] in self.jobs:
                    return _reply(handler, 409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
                job.setdefault("status", {})
                job["metadata"]["uid"] = f"uid-job-{job['metadata']['name']}"
                self._record("jobs", "ADDED", job)
                self.jobs[job["metadata"]["name"]] = job
                return _reply(handler, 201, job)
            job = self.jobs.get(name or "")
            if job is None:
                return _reply(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            if method == "DELETE":
                del self.jobs[name]
                self._record("jobs", "DELETED", job)
            return _reply(handler, 200, job)

    def _list_or_watch(self, handler: BaseHTTPRequestHandler, kind: str, query: dict[str, str]) -> None:
        selector = query.get("labelSelector", "")
        if query.get("watch") in ("true", "1"):
            return self._watch(handler, kind, int(query.get("resourceVersion") or 0), selector,
                               float(query.get("timeoutSeconds") or 30))
        with self.lock:
            store = self.nodes if kind == "nodes" else self.jobs
            items = [copy.deepcopy(o) for o in store.values() if _selects(selector, o)]
            version = str(self.version)
        list_kind = "NodeList" if kind == "nodes" else "JobList"
        return _reply(handler, 200, {"kind": list_kind, "apiVersion": "v1" if kind == "nodes" else "batch/v1",
                                     "metadata": {"resourceVersion": version}, "items": items})

    def _watch(self, handler: BaseHTTPRequestHandler, kind: str, since: int, selector: str, timeout_s: float) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")  # as the API server streams: event by event
        handler.end_headers()
        try:
            self._stream(handler, kind, since, selector, timeout_s)
            handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        handler.close_connection = True

    def _stream(self, handler: BaseHTTPRequestHandler, kind: str, since: int, selector: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self.lock:
            generation = self.drop_generation
            if since and since < self.oldest:
                gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired",
                                                    "message": f"too old resource version: {since}"}}
                _chunk(handler, gone)
                return
        sent = since
        while time.monotonic() < deadline:
            with self.lock:
                first = bisect.bisect_right(self.history, sent, key=lambda entry: entry[0])  # history is in version order
                events = [(v, t, o) for v, k, t, o in self.history[first:] if k == kind and _selects(selector, o)]
                if not events:
                    self.changed.wait(timeout=min(0.5, max(0.0, deadline - time.monotonic())))
                if self.drop_generation != generation:
                    raise ConnectionResetError("dropped")  # the connection drops mid-stream, unterminated
            for version, event_type, obj in events:
                _chunk(handler, {"type": event_type, "object": obj})
                sent = version


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}


def _chunk(handler: BaseHTTPRequestHandler, event: dict[str, Any]) -> None:
    data = (json.dumps(event) + "\n").encode()
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


def _selects(selector: str, obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, sep, value = term.partition("=")
        if (sep and labels.get(key) != value) or (not sep and key not in labels):
            return False
    return True


def _fields(selector: str, obj: dict[str, Any]) -> bool:
    """Field selectors of the ``spec.nodeName=NAME`` and ``metadata.name=NAME`` forms."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.partition("=")
        section, _, field_name = key.partition(".")
        if (obj.get(section) or {}).get(field_name) != value:
            return False
    return True


class PatchTestFailed(Exception):
    pass


def apply_json_patch(document: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    result = copy.deepcopy(document)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        target = result
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        if op["op"] == "test":
            if target.get(last) != op["value"]:
                raise PatchTestFailed(f"{op['path']} is {target.get(last)!r}, not {op['value']!r}")
        elif op["op"] in ("add", "replace"):
            target[last] = op["value"]
        elif op["op"] == "remove":
            target.pop(last)
    return result


def _reply(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
