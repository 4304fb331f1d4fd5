"""The emulator taught training workloads: API discovery, PyTorchJobs and JobSets, merge patches of Jobs,
deleting and watching pods, and small stand-ins for the training operator, the Job controller and the
scheduler, as the real ones behave.

What the real pieces do, and these fakes do too:
- discovery: ``GET /apis/<group>/<version>`` lists the resources served, 404 when the group is not installed;
- a merge patch (RFC 7386) carrying ``metadata.resourceVersion`` is refused 409 Conflict when stale;
- the training operator (kubeflow/training-operator v1, pkg/controller.v1/common/pod.go) keeps one pod per
  replica index named ``<job>-<type>-<index>``; a Failed pod is deleted and re-created when restartPolicy is
  OnFailure/Always, or ExitCode with a retryable code (>= 128); Never, or a permanent code, ends the job
  Failed; ``runPolicy.suspend`` deletes the pods, and lifting it creates them again;
- the Job controller keeps ``parallelism`` active pods, keeps Failed pods (they count against
  ``backoffLimit``; past it the Job is Failed) and deletes active pods while ``spec.suspend`` is true;
- the scheduler binds a Pending pod to a node that matches its nodeSelector, has no NoSchedule taint,
  is not cordoned and runs no other training pod; none fits: the pod stays Pending.
"""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

from k8s_emulator import _reply

GROUPS = {("kubeflow.org", "v1"): "pytorchjobs", ("jobset.x-k8s.io", "v1alpha2"): "jobsets", ("batch", "v1"): "jobs"}
TRAINING_LABEL = "training.kubeflow.org/job-name"


class Workloads:
    def __init__(self, emulator: Any, served: tuple[str, ...] = ("pytorchjobs", "jobsets")):
        self.emulator, self.served = emulator, set(served) | {"jobs"}
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
        """The kubelet reports the pod Failed: evicted (``reason`` Evicted) or its container ended."""
        em = self.emulator
        with em.lock:
            pod = copy.deepcopy(em.pods[name])
            terminated = {"exitCode": exit_code, "reason": "Error", "finishedAt": _now()}
            container = pod["spec"]["containers"][0]
            pod["status"] = {"phase": "Failed", "containerStatuses": [{
                "name": container["name"], "image": container["image"], "imageID": "", "ready": False,
                "restartCount": 0, "state": {"terminated": terminated}}]}
            if reason:
                pod["status"] |= {"reason": reason, "message": message or f"The node was low on resource: {reason}"}
            em._record("pods", "MODIFIED", pod)
            em.pods[name] = pod

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
        """Under the lock: an RFC 7386 merge patch, refused 409 when its resourceVersion is stale."""
        if "merge-patch" not in handler.headers.get("Content-Type", ""):
            return _reply(handler, 415, {"kind": "Status", "code": 415})
        change = json.loads(body)
        wanted = (change.get("metadata") or {}).pop("resourceVersion", None)
        if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
            return _reply(handler, 409, {"kind": "Status", "code": 409, "reason": "Conflict", "message":
                                         "the object has been modified; please apply your changes to the latest version"})
        patched = merge_patch(obj, change)
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

    def _drop(self, pod: dict[str, Any]) -> None:
        del self.emulator.pods[pod["metadata"]["name"]]
        self.deleted_pods.append(pod["metadata"]["name"])
        self.emulator._record("pods", "DELETED", pod)

    # -- the operator, the Job controller and the scheduler ----------------------------------------------
    def _operate(self) -> None:
        while not self.stop.wait(0.02):
            with self.emulator.lock:
                for (plural, _, _), obj in list(self.objects.items()):
                    if plural == "pytorchjobs":
                        self._pytorchjob(obj)
                for name in sorted(self.user_jobs & set(self.emulator.jobs)):
                    self._job(self.emulator.jobs[name])
                self._schedule()

    def _pytorchjob(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job["spec"]
        if _finished(job):
            return
        mine = {p["metadata"]["name"]: p for p in self.emulator.pods.values()
                if (p["metadata"].get("labels") or {}).get(TRAINING_LABEL) == meta["name"]}
        if (spec.get("runPolicy") or {}).get("suspend"):
            for pod in mine.values():
                self._drop(pod)
            return
        for rtype, replica in spec["pytorchReplicaSpecs"].items():
            policy = replica.get("restartPolicy", "OnFailure")
            for index in range(int(replica.get("replicas") or 1)):
                name = f"{meta['name']}-{rtype.lower()}-{index}"
                pod = mine.get(name)
                if pod is None:
                    self._create_pod(name, meta, replica["template"], {
                        TRAINING_LABEL: meta["name"], "training.kubeflow.org/replica-type": rtype.lower(),
                        "training.kubeflow.org/replica-index": str(index),
                        "training.kubeflow.org/operator-name": "pytorchjob-controller"}, "PyTorchJob")
                elif pod["status"].get("phase") == "Failed":
                    code = _exit_code(pod)
                    if policy in ("OnFailure", "Always") or (policy == "ExitCode" and code >= 128):
                        self._drop(pod)
                    else:
                        self._condition(job, "pytorchjobs", "Failed", f"{rtype} replica(s) failed")
                        return

    def _job(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job["spec"]
        if _finished(job):
            return
        mine = [p for p in self.emulator.pods.values()
                if (p["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") == meta["name"]]
        failed = [p for p in mine if p["status"].get("phase") == "Failed"]
        active = [p for p in mine if p["status"].get("phase") in ("Pending", "Running")]
        if len(failed) > int(spec.get("backoffLimit", 6)):
            return self._condition(job, "jobs", "Failed", "Job has reached the specified backoff limit")
        if spec.get("suspend"):
            for pod in active:
                self._drop(pod)
            return
        for index in range(int(spec.get("parallelism") or 1) - len(active)):
            name = f"{meta['name']}-{self.emulator.version:05d}{index}"
            self._create_pod(name, meta, spec["template"], {"batch.kubernetes.io/job-name": meta["name"],
                                                             "job-name": meta["name"]}, "Job")

    def _create_pod(self, name: str, meta: dict[str, Any], template: dict[str, Any], labels: dict[str, str],
                    owner: str) -> None:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": meta["namespace"], "uid": f"uid-{name}-{self.emulator.version}", "labels": labels,
            "ownerReferences": [{"apiVersion": "kubeflow.org/v1" if owner == "PyTorchJob" else "batch/v1", "kind": owner,
                                 "name": meta["name"], "uid": meta["uid"], "controller": True}]},
            "spec": copy.deepcopy(template.get("spec") or {}), "status": {"phase": "Pending"}}
        self.emulator._record("pods", "ADDED", pod)
        self.emulator.pods[name] = pod

    def _schedule(self) -> None:
        used = {p["spec"].get("nodeName") for p in self.emulator.pods.values() if p["status"].get("phase") == "Running"}
        for pod in list(self.emulator.pods.values()):
            if pod["status"].get("phase") != "Pending" or pod["spec"].get("nodeName"):
                continue
            node = next((n for n in self.emulator.nodes.values() if n["metadata"]["name"] not in used
                         and _fits(pod, n)), None)
            if node is not None:
                bound = copy.deepcopy(pod)
                bound["spec"]["nodeName"] = node["metadata"]["name"]
                bound["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                                                                      "lastTransitionTime": _now()}]}
                used.add(node["metadata"]["name"])
                self.emulator._record("pods", "MODIFIED", bound)
                self.emulator.pods[pod["metadata"]["name"]] = bound

    def _condition(self, obj: dict[str, Any], plural: str, kind: str, message: str) -> None:
        obj["status"] = dict(obj.get("status") or {}) | {"conditions": [
            {"type": kind, "status": "True", "reason": f"Job{kind}", "message": message, "lastTransitionTime": _now()}]}
        self.emulator._record(plural, "MODIFIED", obj)


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


def _fits(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    if any(t.get("effect") in ("NoSchedule", "NoExecute") for t in (node.get("spec") or {}).get("taints") or []):
        return False
    return all(labels.get(k) == v for k, v in (pod["spec"].get("nodeSelector") or {}).items())


def _finished(obj: dict[str, Any]) -> bool:
    return any(c.get("type") in ("Failed", "Succeeded", "Complete") and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _exit_code(pod: dict[str, Any]) -> int:
    for container in pod["status"].get("containerStatuses") or []:
        ended = (container.get("state") or {}).get("terminated")
        if ended:
            return int(ended.get("exitCode", 0))
    return 0


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
