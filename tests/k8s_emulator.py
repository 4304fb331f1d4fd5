"""A small Kubernetes API server for tests, over real HTTP: nodes and events, with planted faults.

It honours what dhc relies on: resourceVersion bumps on every write, JSON patch (RFC 6902, with
``test``), 404 for unknown nodes, and a queue of faults (status, body, headers) for the next
requests that match a method and path prefix.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Emulator:
    def __init__(self):
        self.lock = threading.Lock()
        self.version = 100
        self.nodes: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str, str]] = []  # (method, path, content type)
        self.faults: list[tuple[str, str, int, dict[str, Any], dict[str, str]]] = []
        self.before_patch: list[Any] = []  # callables run once before a patch: a concurrent writer
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                emulator._serve(self, "GET")

            def do_PATCH(self):
                emulator._serve(self, "PATCH")

            def do_POST(self):
                emulator._serve(self, "POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> Emulator:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- test helpers --------------------------------------------------------------------------------
    def add_node(self, name: str, labels: dict[str, str] | None = None, taints: list[dict[str, str]] | None = None,
                 provider_id: str | None = None) -> None:
        with self.lock:
            self.version += 1
            self.nodes[name] = {"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": name, "uid": f"uid-{name}", "resourceVersion": str(self.version), "labels": labels or {}},
                "spec": {"providerID": provider_id, "taints": taints or []}, "status": {}}

    def fail_next(self, method: str, prefix: str, status: int, body: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None) -> None:
        self.faults.append((method, prefix, status, body or {"kind": "Status", "code": status}, headers or {}))

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
        path = handler.path.split("?")[0]
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        self.requests.append((method, path, handler.headers.get("Content-Type", "")))
        for fault in self.faults:
            if fault[0] == method and path.startswith(fault[1]):
                self.faults.remove(fault)
                return _reply(handler, fault[2], fault[3], fault[4])
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "nodes"] and len(parts) == 4:
            return self._node(handler, method, parts[3], body)
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 5 and parts[4] == "events" and method == "POST":
            event = json.loads(body)
            with self.lock:
                self.version += 1
                event.setdefault("metadata", {})["name"] = f"{event['metadata'].get('generateName', 'e.')}{self.version}"
                event["metadata"]["namespace"] = parts[3]
                self.events.append(event)
            return _reply(handler, 201, event)
        return _reply(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})

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
            except PatchTestFailed as exc:
                return _reply(handler, 422, {"kind": "Status", "code": 422, "message": f"the test operation failed: {exc}"})
            self.version += 1
            patched["metadata"]["resourceVersion"] = str(self.version)
            self.nodes[name] = patched
            return _reply(handler, 200, patched)


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
