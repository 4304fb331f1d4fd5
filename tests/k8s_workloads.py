"""The emulator taught training workloads: API discovery, PyTorchJobs and JobSets, merge and JSON patches,
deleting and watching pods, node faults as the kubelet and the control plane show them; the controllers
that run the pods are k8s_operators' stand-ins.

What the real pieces do, and these fakes do too:
- discovery: ``GET /apis/<group>/<version>`` lists the resources served, 404 when the group is not installed;
- a merge patch (RFC 7386) carrying ``metadata.resourceVersion`` is refused 409 Conflict when stale; a JSON
  patch (RFC 6902) whose ``test`` op fails is refused 422;
- a CRD's structural schema prunes fields it does not know (``prunes``: a training-operator before v1.7
  has no ``runPolicy.suspend``, so the write is accepted without it);
- the JobSet webhook refuses any change of ``spec.replicatedJobs`` except a pod template's nodeSelector,
  and that only while the JobSet is suspended or the same update suspends it;
- the kubelet restarts a crashed container in place when the pod's restartPolicy is OnFailure/Always
  (Running, restartCount + 1, lastState.terminated), and reports the pod Failed otherwise or on eviction;
- a node that stops answering turns Ready Unknown, tainted unreachable; the taint manager marks its pods
  DisruptionTarget and deletes them, and they stay Terminating until the Node is deleted.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

from k8s_emulator import _reply
from k8s_operators import TRAINING_LABEL, Operators, now

GROUPS = {("kubeflow.org", "v1"): "pytorchjobs", ("jobset.x-k8s.io", "v1alpha2"): "jobsets", ("batch", "v1"): "jobs"}


class Workloads(Operators):
    def __init__(self, emulator: Any, served: tuple[str, ...] = ("pytorchjobs", "jobsets"),
                 prunes: dict[str, tuple[str, ...]] | None = None):
        self.emulator, self.served = emulator, set(served) | {"jobs"}
        self.prunes = prunes or {}  # plural -> a field path its schema does not know (dropped from every write)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name)
        self.deleted_pods: list[str] = []
        self.user_jobs: set[str] = set()  # batch Jobs added here (the emulator also holds dhc's check Jobs)
        self.stop = threading.Event()
        emulator.routes.append(self.route)

    def __enter__(self) -> Workloads:
        threading.Thread(target=self._operate, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()

    # -- test helpers --------------------------------------------------------------------------------
    def add(self, plural: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """What kubectl apply does: the object stored with a uid, a version and an empty status."""
        em = self.emulator
        with em.lock:
            obj = copy.deepcopy(manifest)
            meta = obj["metadata"]
            meta.setdefault("namespace", "default")
            meta["uid"] = f"uid-{plural}-{meta['name']}-{em.version}"
            meta["creationTimestamp"] = now()
            obj.setdefault("status", {})
            if plural == "jobs":
                self.user_jobs.add(meta["name"])
                em.jobs[meta["name"]] = obj
                em._record("jobs", "ADDED", obj)
            else:
                self.objects[(plural, meta["namespace"], meta["name"])] = obj
                em._record(plural, "ADDED", obj)
            return obj

    def get(self, plural: str, name: str, namespace: str = "default") -> dict[str, Any]:
        with self.emulator.lock:
            obj = self.emulator.jobs[name] if plural == "jobs" else self.objects[(plural, namespace, name)]
            return copy.deepcopy(obj)

    def delete(self, plural: str, name: str, namespace: str = "default") -> None:
        with self.emulator.lock:
            obj = self.emulator.jobs.pop(name) if plural == "jobs" else self.objects.pop((plural, namespace, name))
            self.emulator._record(plural, "DELETED", obj)

    def fail_pod(self, name: str, reason: str = "", exit_code: int = 137, message: str = "") -> None:
        """The kubelet's report: an eviction (``reason`` Evicted) fails the pod; a crashed container is restarted
        in place when the pod's restartPolicy is OnFailure/Always, else the pod ends Failed."""
        em = self.emulator
        with em.lock:
            pod = copy.deepcopy(em.pods[name])
            terminated = {"exitCode": exit_code, "reason": "Error", "finishedAt": now()}
            container = pod["spec"]["containers"][0]
            before = next(iter(pod["status"].get("containerStatuses") or []), {})
            if not reason and pod["spec"].get("restartPolicy") in ("OnFailure", "Always"):
                pod["status"] = dict(pod["status"]) | {"phase": "Running", "containerStatuses": [{
                    "name": container["name"], "image": container["image"], "imageID": "", "ready": True,
                    "restartCount": int(before.get("restartCount") or 0) + 1, "lastState": {"terminated": terminated},
                    "state": {"running": {"startedAt": now()}}}]}
            else:
                pod["status"] = {"phase": "Failed", "containerStatuses": [{
                    "name": container["name"], "image": container["image"], "imageID": "", "ready": False,
                    "restartCount": int(before.get("restartCount") or 0), "state": {"terminated": terminated}}]}
            if reason:
                pod["status"] |= {"reason": reason, "message": message or f"The node was low on resource: {reason}"}
            em._record("pods", "MODIFIED", pod)
            em.pods[name] = pod

    def node_not_ready(self, name: str) -> None:
        """The node stops answering: Ready Unknown, the unreachable taint; its pods marked DisruptionTarget and
        deleted by the taint manager, Terminating (still Running) while the node is there."""
        em = self.emulator
        with em.lock:
            node = copy.deepcopy(em.nodes[name])
            node["status"]["conditions"] = [{"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                                             "lastTransitionTime": now()}]
            node["spec"]["taints"] = [*node["spec"].get("taints", []), {"key": "node.kubernetes.io/unreachable",
                                                                        "effect": "NoExecute"}]
            em._record("nodes", "MODIFIED", node)
            em.nodes[name] = node
            for pod in [p for p in em.pods.values() if p["spec"].get("nodeName") == name]:
                marked = copy.deepcopy(pod)
                marked["status"]["conditions"] = [*marked["status"].get("conditions", []), {
                    "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
                    "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": now()}]
                marked["metadata"]["deletionTimestamp"] = now()
                em._record("pods", "MODIFIED", marked)
                em.pods[pod["metadata"]["name"]] = marked

    def remove_node(self, name: str) -> None:
        """The Node object is deleted; the pod garbage collector then deletes every pod bound to it."""
        self.emulator.delete_node(name)
        with self.emulator.lock:
            for pod in [p for p in self.emulator.pods.values() if p["spec"].get("nodeName") == name]:
                self._drop(pod)

    def pods_of(self, job: str, label: str = TRAINING_LABEL) -> list[dict[str, Any]]:
        with self.emulator.lock:
            return [copy.deepcopy(p) for p in self.emulator.pods.values()
                    if (p["metadata"].get("labels") or {}).get(label) == job]

    # -- serving -------------------------------------------------------------------------------------
    def route(self, handler: Any, method: str, parts: list[str], query: dict[str, str], body: bytes) -> bool:
        if parts[:1] == ["apis"] and len(parts) == 3:
            plural = GROUPS.get((parts[1], parts[2]))
            if plural not in self.served:
                return False  # falls through to 404, as an API server without the group answers
            _reply(handler, 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{parts[1]}/{parts[2]}",
                                  "resources": [{"name": plural, "singularName": plural[:-1], "namespaced": True, "kind": plural[:-1],
                                                 "verbs": ["get", "list", "watch", "patch", "delete"]}]})
            return True
        if parts == ["api", "v1", "pods"] and method == "GET" and query.get("watch") in ("true", "1"):
            self.emulator._watch(handler, "pods", int(query.get("resourceVersion") or 0),
                                 query.get("labelSelector", ""), float(query.get("timeoutSeconds") or 30))
            return True
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and parts[4] == "pods" and method == "DELETE":
            self._delete_pod(handler, parts[3], parts[5])
            return True
        if parts[:1] == ["apis"] and len(parts) >= 4 and GROUPS.get((parts[1], parts[2])) in self.served:
            return self._objects(handler, method, GROUPS[(parts[1], parts[2])], parts[3:], body)
        return False

    def _objects(self, handler: Any, method: str, plural: str, rest: list[str], body: bytes) -> bool:
        if rest == [plural] and method == "GET":
            with self.emulator.lock:
                store = self.emulator.jobs.values() if plural == "jobs" else \
                    [o for k, o in sorted(self.objects.items()) if k[0] == plural]
                items = [copy.deepcopy(o) for o in store]
                _reply(handler, 200, {"items": items, "metadata": {"resourceVersion": str(self.emulator.version)}})
            return True
        if len(rest) != 4 or rest[0] != "namespaces" or rest[2] != plural:
            return False
        if plural == "jobs" and method != "PATCH":
            return False  # the emulator's own Job routes
        with self.emulator.lock:
            obj = self.emulator.jobs.get(rest[3]) if plural == "jobs" else self.objects.get((plural, rest[1], rest[3]))
            if obj is None:
                _reply(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            elif method == "GET":
                _reply(handler, 200, copy.deepcopy(obj))
            elif method == "PATCH":
                self._patch(handler, plural, obj, body)
            else:
                return False
        return True

    def _patch(self, handler: Any, plural: str, obj: dict[str, Any], body: bytes) -> None:
        """Under the lock: a merge patch refused 409 when its resourceVersion is stale, or a JSON patch refused 422
        when an op (its ``test`` of the version) fails; then pruning and the JobSet webhook."""
        kind = handler.headers.get("Content-Type", "")
        if "merge-patch" in kind:
            change = json.loads(body)
            wanted = (change.get("metadata") or {}).pop("resourceVersion", None)
            if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
                return _reply(handler, 409, {"kind": "Status", "code": 409, "reason": "Conflict", "message":
                                             "the object has been modified; please apply your changes to the latest version"})
            patched = merge_patch(obj, change)
        elif "json-patch" in kind:
            try:
                patched = json_patch(obj, json.loads(body))
            except (KeyError, IndexError, ValueError):  # as the API server: a patch that did not apply, no detail
                return _reply(handler, 422, {"kind": "Status", "code": 422, "reason": "Invalid", "message":
                                             "the server rejected our request due to an error in our request"})
        else:
            return _reply(handler, 415, {"kind": "Status", "code": 415})
        refused = jobset_webhook(obj, patched) if plural == "jobsets" else ""
        if refused:
            return _reply(handler, 422, {"kind": "Status", "code": 422, "reason": "Invalid", "message": refused})
        *parents, last = self.prunes.get(plural, ("",))
        target = patched
        for part in parents:
            target = target.get(part) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target.pop(last, None)
        meta = patched["metadata"]
        if plural == "jobs":
            self.emulator.jobs[meta["name"]] = patched
        else:
            self.objects[(plural, meta["namespace"], meta["name"])] = patched
        self.emulator._record(plural, "MODIFIED", patched)
        return _reply(handler, 200, copy.deepcopy(patched))

    def _delete_pod(self, handler: Any, namespace: str, name: str) -> None:
        with self.emulator.lock:
            pod = self.emulator.pods.get(name)
            if pod is None or pod["metadata"]["namespace"] != namespace:
                return _reply(handler, 404, {"kind": "Status", "code": 404, "reason": "NotFound"})
            self._drop(pod)
        return _reply(handler, 200, {"kind": "Status", "status": "Success"})

    def _operate(self) -> None:
        while not self.stop.wait(0.02):
            self._operate_once()


    def _operate(self) -> None:
        while not self.stop.wait(0.02):
            self._operate_once()


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902's add, replace, remove and test on JSON pointers (RFC 6901); an op that cannot apply raises."""
    result = copy.deepcopy(target)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        holder: Any = result
        for part in parents:
            holder = holder[int(part)] if isinstance(holder, list) else holder[part]
        key: Any = int(last) if isinstance(holder, list) else last
        if op["op"] == "test" and holder[key] != op["value"]:
            raise ValueError(f"testing value {op['path']} failed: test failed")
        if op["op"] in ("add", "replace"):
            holder[key] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del holder[key]
    return result


def jobset_webhook(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The JobSet webhook's ValidateUpdate: "" when allowed, else its refusal."""
    def masked(obj: dict[str, Any]) -> list[Any]:
        jobs = copy.deepcopy((obj.get("spec") or {}).get("replicatedJobs") or [])
        if (old.get("spec") or {}).get("suspend") or (new.get("spec") or {}).get("suspend"):
            for rj in jobs:
                ((rj.get("template") or {}).get("spec") or {}).get("template", {}).get("spec", {}).pop("nodeSelector", None)
        return jobs
    return "" if masked(old) == masked(new) else "spec.replicatedJobs: Invalid value: field is immutable"
