"""The emulator's stand-ins for the controllers that run training pods, as the real ones behave (used by
k8s_workloads.Workloads, under the emulator's lock):

- the training operator (kubeflow/training-operator v1, pkg/controller.v1/common/pod.go) keeps one pod per
  replica index named ``<job>-<type>-<index>``; a replica's restartPolicy (default OnFailure) becomes the
  pod's (ExitCode: Never), so the kubelet restarts a crashed container in place; a Failed pod (an eviction,
  or restartPolicy Never/ExitCode) is deleted and re-created when the policy is OnFailure/Always or ExitCode
  with a retryable code (>= 128); Never, or a permanent code, ends the job Failed; ``runPolicy.suspend``
  deletes the pods, and lifting it creates them again;
- the Job controller keeps ``parallelism`` active pods, keeps Failed pods (they count against
  ``backoffLimit``; past it the Job is Failed) and deletes active pods while ``spec.suspend`` is true;
- the JobSet controller runs ``replicas`` child Jobs per replicatedJob, each of ``parallelism`` pods named
  ``<jobset>-<replicatedJob>-<jobIndex>-<podIndex>``; ``spec.suspend`` suspends the child Jobs (their pods
  deleted) and lifting it resumes them (pods re-created from the JobSet's current templates); a failed pod
  fails its child Job (backoffLimit 0) and the JobSet restarts every child Job while
  ``failurePolicy.maxRestarts`` allows, else it ends Failed;
- the scheduler binds a Pending pod to a node that matches its nodeSelector, has no NoSchedule/NoExecute
  taint, is not cordoned and has the ``nvidia.com/gpu`` it asks for left over from the pods bound there
  (Terminating ones included: they hold their resources until removed); a pod that asks for no GPU fits
  any such node; none fits: the pod stays Pending;
- a deleted pod on a node that is not Ready stays, Terminating (``deletionTimestamp``), until its Node is
  deleted and the pod garbage collector removes it (no kubelet confirms the deletion).
"""

from __future__ import annotations

import copy
from typing import Any

TRAINING_LABEL = "training.kubeflow.org/job-name"
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
GPU = "nvidia.com/gpu"


class Operators:
    emulator: Any
    objects: dict[tuple[str, str, str], dict[str, Any]]
    user_jobs: set[str]
    deleted_pods: list[str]

    def _operate_once(self) -> None:
        with self.emulator.lock:
            for (plural, _, _), obj in list(self.objects.items()):
                if plural == "pytorchjobs":
                    self._pytorchjob(obj)
                elif plural == "jobsets":
                    self._jobset(obj)
            for name in sorted(self.user_jobs & set(self.emulator.jobs)):
                self._job(self.emulator.jobs[name])
            self._schedule()

    def _mine(self, label: str, name: str) -> dict[str, dict[str, Any]]:
        return {p["metadata"]["name"]: p for p in self.emulator.pods.values()
                if (p["metadata"].get("labels") or {}).get(label) == name}

    def _pytorchjob(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job["spec"]
        mine = self._mine(TRAINING_LABEL, meta["name"])
        if _finished(job):
            return
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
                    template = copy.deepcopy(replica["template"])
                    template.setdefault("spec", {})["restartPolicy"] = "Never" if policy == "ExitCode" else policy
                    self._create_pod(name, meta, template, {
                        TRAINING_LABEL: meta["name"], "training.kubeflow.org/replica-type": rtype.lower(),
                        "training.kubeflow.org/replica-index": str(index),
                        "training.kubeflow.org/operator-name": "pytorchjob-controller"}, "PyTorchJob")
                elif pod["status"].get("phase") == "Failed" and "deletionTimestamp" not in pod["metadata"]:
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
        mine = list(self._mine("batch.kubernetes.io/job-name", meta["name"]).values())
        failed = [p for p in mine if p["status"].get("phase") == "Failed"]
        active = [p for p in mine if p["status"].get("phase") in ("Pending", "Running")
                  and "deletionTimestamp" not in p["metadata"]]
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

    def _jobset(self, js: dict[str, Any]) -> None:
        meta, spec = js["metadata"], js["spec"]
        mine = self._mine(JOBSET_LABEL, meta["name"])
        if _finished(js):
            return
        if spec.get("suspend") or any(p["status"].get("phase") == "Failed" for p in mine.values()):
            restarts = int((js.get("status") or {}).get("restarts") or 0)
            if not spec.get("suspend") and restarts >= int((spec.get("failurePolicy") or {}).get("maxRestarts") or 0):
                return self._condition(js, "jobsets", "Failed", "jobset failed: a child Job failed, no restart left")
            for pod in mine.values():
                self._drop(pod)
            if not spec.get("suspend"):
                js["status"] = dict(js.get("status") or {}) | {"restarts": restarts + 1}
                self.emulator._record("jobsets", "MODIFIED", js)
            return
        for rj in spec.get("replicatedJobs") or []:
            job_spec = (rj.get("template") or {}).get("spec") or {}
            for job_index in range(int(rj.get("replicas") or 1)):
                for pod_index in range(int(job_spec.get("parallelism") or 1)):
                    name = f"{meta['name']}-{rj['name']}-{job_index}-{pod_index}"
                    if name not in mine:
                        self._create_pod(name, meta, job_spec["template"], {
                            JOBSET_LABEL: meta["name"], "jobset.sigs.k8s.io/replicatedjob-name": rj["name"],
                            "batch.kubernetes.io/job-name": f"{meta['name']}-{rj['name']}-{job_index}"}, "Job")

    def _create_pod(self, name: str, meta: dict[str, Any], template: dict[str, Any], labels: dict[str, str],
                    owner: str) -> None:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": name, "namespace": meta["namespace"], "uid": f"uid-{name}-{self.emulator.version}", "labels": labels,
            "creationTimestamp": now(),
            "ownerReferences": [{"apiVersion": "kubeflow.org/v1" if owner == "PyTorchJob" else "batch/v1", "kind": owner,
                                 "name": meta["name"], "uid": meta["uid"], "controller": True}]},
            "spec": copy.deepcopy(template.get("spec") or {}), "status": {"phase": "Pending"}}
        self.emulator._record("pods", "ADDED", pod)
        self.emulator.pods[name] = pod

    def _drop(self, pod: dict[str, Any]) -> None:
        """A controller deletes the pod: gone at once, unless its node is not Ready (then Terminating)."""
        name, node = pod["metadata"]["name"], self.emulator.nodes.get(pod["spec"].get("nodeName") or "")
        if node is not None and not ready(node):
            if "deletionTimestamp" not in pod["metadata"]:
                stuck = copy.deepcopy(pod)
                stuck["metadata"]["deletionTimestamp"] = now()
                self.emulator._record("pods", "MODIFIED", stuck)
                self.emulator.pods[name] = stuck
            return
        gone = copy.deepcopy(pod)
        gone["metadata"].setdefault("deletionTimestamp", now())
        del self.emulator.pods[name]
        self.deleted_pods.append(name)
        self.emulator._record("pods", "DELETED", gone)

    def _schedule(self) -> None:
        free = {name: int(((n.get("status") or {}).get("allocatable") or {}).get(GPU) or 0)
                for name, n in self.emulator.nodes.items()}
        for p in self.emulator.pods.values():
            if p["status"].get("phase") in ("Pending", "Running") and p["spec"].get("nodeName") in free:
                free[p["spec"]["nodeName"]] -= _gpus(p)
        for pod in list(self.emulator.pods.values()):
            if pod["status"].get("phase") != "Pending" or pod["spec"].get("nodeName"):
                continue
            node = next((n for n in self.emulator.nodes.values() if free[n["metadata"]["name"]] >= _gpus(pod)
                         and _fits(pod, n)), None)
            if node is not None:
                bound = copy.deepcopy(pod)
                bound["spec"]["nodeName"] = node["metadata"]["name"]
                bound["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True",
                                                                      "lastTransitionTime": now()}]}
                free[node["metadata"]["name"]] -= _gpus(pod)
                self.emulator._record("pods", "MODIFIED", bound)
                self.emulator.pods[pod["metadata"]["name"]] = bound

    def _condition(self, obj: dict[str, Any], plural: str, kind: str, message: str) -> None:
        obj["status"] = dict(obj.get("status") or {}) | {"conditions": [
            {"type": kind, "status": "True", "reason": f"Job{kind}", "message": message, "lastTransitionTime": now()}]}
        self.emulator._record(plural, "MODIFIED", obj)


def ready(node: dict[str, Any]) -> bool:
    conditions = [c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
    return not conditions or conditions[-1].get("status") == "True"


def _fits(pod: dict[str, Any], node: dict[str, Any]) -> bool:
    labels = node["metadata"].get("labels") or {}
    if (node.get("spec") or {}).get("unschedulable") or not ready(node):
        return False
    if any(t.get("effect") in ("NoSchedule", "NoExecute") for t in (node.get("spec") or {}).get("taints") or []):
        return False
    return all(labels.get(k) == v for k, v in (pod["spec"].get("nodeSelector") or {}).items())


def _gpus(pod: dict[str, Any]) -> int:
    return sum(int((((c.get("resources") or {}).get("limits") or {}).get(GPU)) or 0)
               for c in pod["spec"].get("containers") or [])


def _finished(obj: dict[str, Any]) -> bool:
    return any(c.get("type") in ("Failed", "Succeeded", "Complete") and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _exit_code(pod: dict[str, Any]) -> int:
    for container in pod["status"].get("containerStatuses") or []:
        ended = (container.get("state") or {}).get("terminated")
        if ended:
            return int(ended.get("exitCode", 0))
    return 0


def now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
