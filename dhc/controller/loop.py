"""The controller: watch Nodes and dhc's Jobs, and bring each node's check to a verdict.

Level-triggered: every node event, Job event and periodic resync puts the node's name on a queue;
workers decide from the cached node and Jobs (``reconcile.decide``) and act. Watches resume from
their last resourceVersion and re-list on 410 Gone. Acting on a Job that ended re-reads the node
first, so a verdict the node-side sink just wrote is never mistaken for a missing one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from dhc.controller import reconcile
from dhc.controller.jobs import JOB_LABEL, JobSettings, batch_manifests, job_manifest
from dhc.k8s import scheme
from dhc.k8s.client import K8sError, K8sGone, K8sNotFound, Kube
from dhc.thresholds import CATALOGUE, Thresholds

log = logging.getLogger("dhc.controller")
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
OPT_IN_LABEL = "dhc.dev/deep-health-check"  # "enabled": check this node whatever its type


@dataclass
class ControllerSettings:
    jobs: JobSettings = field(default_factory=JobSettings)
    prefix: str = scheme.DEFAULT_PREFIX
    max_attempts: int = 3
    workers: int = 4
    resync_s: float = 60.0
    watch_timeout_s: int = 120
    deadline_margin_s: int = 600
    batch_window_s: float = 60.0  # nodes whose stress passed within this window test their fabric together


class Controller:
    def __init__(self, kube: Kube, thresholds: Thresholds, settings: ControllerSettings):
        self.kube, self.thresholds, self.settings = kube, thresholds, settings
        self.keys = scheme.Keys(settings.prefix)
        self.nodes: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self._pending: list[str] = []
        self._queued: set[str] = set()
        self._wake = threading.Condition()
        self._locks: dict[str, threading.Lock] = {}
        self.candidates: dict[str, float] = {}  # node -> when its stress passed (waiting for a batch)
        self._batching = threading.Lock()

    # -- running -------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        threads = [threading.Thread(target=self._watch_loop, args=(kind, stop), daemon=True, name=f"watch-{kind}")
                   for kind in ("jobs", "nodes")]
        threads += [threading.Thread(target=self._worker, args=(stop,), daemon=True, name=f"worker-{i}")
                    for i in range(self.settings.workers)]
        threads.append(threading.Thread(target=self._batcher, args=(stop,), daemon=True, name="batcher"))
        for thread in threads:
            thread.start()
        while not stop.wait(self.settings.resync_s):
            for name in list(self.nodes):
                self.enqueue(name)
        with self._wake:
            self._wake.notify_all()
        for thread in threads:
            thread.join(timeout=5)

    def enqueue(self, name: str) -> None:
        with self._wake:
            if name not in self._queued:
                self._queued.add(name)
                self._pending.append(name)
                self._wake.notify()

    def _worker(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._wake:
                while not self._pending and not stop.is_set():
                    self._wake.wait(timeout=1.0)
                if stop.is_set():
                    return
                name = self._pending.pop(0)
                self._queued.discard(name)
            lock = self._locks.setdefault(name, threading.Lock())
            with lock:  # one worker per node at a time
                try:
                    self.reconcile(name)
                except K8sError as exc:
                    log.warning("node %s: %s; will retry", name, exc)
                    threading.Timer(2.0, self.enqueue, args=(name,)).start()

    def _watch_loop(self, kind: str, stop: threading.Event) -> None:
        version = self._relist(kind)
        while not stop.is_set():
            try:
                for event_type, obj in self.kube.watch(kind, version, self.settings.watch_timeout_s,
                                                       self.settings.jobs.namespace, self._selector(kind)):
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event_type != "BOOKMARK":
                        self._observe(kind, event_type, obj)
                    if stop.is_set():
                        return
            except K8sGone:
                version = self._relist(kind)
            except K8sError as exc:  # a dropped watch: resume from the last version seen
                log.info("watch %s interrupted (%s); resuming from %s", kind, exc, version)
                time.sleep(0.5)

    def _relist(self, kind: str) -> str:
        while True:
            try:
                if kind == "nodes":
                    items, version = self.kube.list_nodes()
                    self.nodes = {n["metadata"]["name"]: n for n in items}
                    for name in self.nodes:
                        self.enqueue(name)
                else:
                    items, version = self.kube.list_jobs(self.settings.jobs.namespace, self._selector("jobs"))
                    self.jobs = {j["metadata"]["name"]: j for j in items}
                return version
            except K8sError as exc:
                log.warning("list %s failed (%s); retrying", kind, exc)
                time.sleep(1.0)

    def _selector(self, kind: str) -> str:
        return f"{JOB_LABEL}=dhc" if kind == "jobs" else ""

    def _observe(self, kind: str, event_type: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        store = self.nodes if kind == "nodes" else self.jobs
        if event_type == "DELETED":
            store.pop(name, None)
        else:
            store[name] = obj
        annotations = obj["metadata"].get("annotations") or {}
        names = [name] if kind == "nodes" else \
            [annotations.get("dhc.dev/node-name")] + annotations.get("dhc.dev/nodes", "").split(",")
        for node in filter(None, names):
            self.enqueue(node)

    # -- deciding and acting ---------------------------------------------------------------------------
    def wants(self, node: dict[str, Any]) -> bool:
        labels = node["metadata"].get("labels") or {}
        if labels.get(OPT_IN_LABEL) == "enabled":
            return True
        itype = labels.get(INSTANCE_TYPE_LABEL)
        return bool(itype) and itype in self.thresholds.names and self._type(itype).gpus > 0

    def reconcile(self, name: str) -> str:
        node = self.nodes.get(name)
        if node is None or not self.wants(node):
            return reconcile.NOTHING
        decision = self._decide(node)
        if decision.kind in (reconcile.RETRY, reconcile.GIVE_UP, reconcile.REBATCH):
            node = self.kube.node(name)  # a verdict may have landed since the cache saw the node
            self.nodes[name] = node
            decision = self._decide(node)
        if decision.kind == reconcile.AWAIT_BATCH and self.settings.jobs.connectivity:
            self.candidates.setdefault(name, time.monotonic())
            return decision.kind
        self.candidates.pop(name, None)
        act = {reconcile.JOIN: self._join, reconcile.START: self._start, reconcile.RETRY: self._retry,
               reconcile.GIVE_UP: self._give_up, reconcile.RECHECK: self._recheck,
               reconcile.REBATCH: self._rebatch}.get(decision.kind)
        if act is not None:
            act(name, decision)
        return decision.kind

    def _decide(self, node: dict[str, Any]) -> reconcile.Decision:
        name = node["metadata"]["name"]
        return reconcile.decide(node, reconcile.jobs_of(name, list(self.jobs.values())), self.keys,
                                self.settings.max_attempts, self.jobs)

    def _join(self, name: str, decision: reconcile.Decision) -> None:
        self._patch(name, scheme.joining(), decision, drop_request=False)
        self._start(name, decision)

    def _recheck(self, name: str, decision: reconcile.Decision) -> None:
        self._patch(name, scheme.joining(), decision, drop_request=True)
        self._start(name, decision)

    def _retry(self, name: str, decision: reconcile.Decision) -> None:
        self._mark(name, decision, "InProgress", "Unschedulable", "DeepHealthCheckRetry")
        self._start(name, decision)

    def _give_up(self, name: str, decision: reconcile.Decision) -> None:
        self._mark(name, decision, "Failed", "UnschedulablePendingReplacement", "DeepHealthCheckFailed")

    def _mark(self, name: str, decision: reconcile.Decision, status: str, health: str, event: str,
              extra: dict[str, str] | None = None) -> None:
        """Set the node's state with the decision's reason, and say so in a Warning Event."""
        state = scheme.NodeState(status, health, decision.reason)
        patched = self._patch(name, state, decision, drop_request=False, extra=extra)
        self.kube.node_event(patched, event, decision.reason, warning=True, namespace=self.settings.jobs.namespace)

    def _rebatch(self, name: str, decision: reconcile.Decision) -> None:
        self._mark(name, decision, "InProgress", "Unschedulable", "DeepHealthCheckRetry",
                   extra={self.keys.stage: "stress-passed"})

    # -- the connectivity stage: batches of nodes whose stress passed ------------------------------
    def _batcher(self, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            try:
                self._form_batches()
            except K8sError as exc:
                log.warning("forming a connectivity batch failed (%s); will retry", exc)

    def _form_batches(self) -> None:
        with self._batching:
            now, groups = time.monotonic(), {}
            for name, since in list(self.candidates.items()):
                node = self.nodes.get(name)
                if node is not None:
                    itype = (node["metadata"].get("labels") or {}).get(INSTANCE_TYPE_LABEL) or "cpu"
                    groups.setdefault(itype, []).append((since, name))
            for itype, members in groups.items():
                if now - min(since for since, _ in members) >= self.settings.batch_window_s:
                    self._start_batch(itype, sorted(name for _, name in members))

    def _start_batch(self, itype: str, names: list[str]) -> None:
        known = itype in self.thresholds.names
        limits = self._type(itype) if known else None
        attempt = max(_attempts(self.nodes[n], self.keys) for n in names)
        settings = self.settings.jobs
        deadline = self._deadline(itype, "InstanceConnectivity") if known else 3600
        service, job = batch_manifests(names, attempt, itype if known else "cpu", limits.gpus if limits else 0,
                                       limits.efa if limits else 0, deadline, self.keys, settings)
        self.kube.create_service(service)
        self.kube.create_job(job)
        self.jobs.setdefault(job["metadata"]["name"], job)
        for name in names:
            annotations = {self.keys.stage: "connectivity", self.keys.batch: job["metadata"]["name"]}
            state = scheme.NodeState("InProgress", "Unschedulable")
            self.nodes[name] = self.kube.patch_node(
                name, lambda n, a=annotations, s=state: scheme.node_ops(n, self.keys, s, a))
            self.candidates.pop(name, None)
        log.info("connectivity batch %s: %d %s nodes", job["metadata"]["name"], len(names), itype)

    def _patch(self, name: str, state: scheme.NodeState, decision: reconcile.Decision,
               drop_request: bool, extra: dict[str, str] | None = None) -> dict[str, Any]:
        annotations = {self.keys.generation: str(decision.generation), self.keys.attempts: str(decision.attempt)}
        annotations |= extra or {}
        drop = (self.keys.request,) if drop_request else ()
        patched = self.kube.patch_node(name, lambda n: scheme.node_ops(n, self.keys, state, annotations, drop))
        self.nodes[name] = patched
        return patched

    def _start(self, name: str, decision: reconcile.Decision) -> None:
        node = self.nodes[name]
        itype = (node["metadata"].get("labels") or {}).get(INSTANCE_TYPE_LABEL) or "cpu"
        known = itype in self.thresholds.names
        limits = self._type(itype) if known else None
        deadline = self._deadline(itype) if known else 7200
        manifest = job_manifest(name, decision.generation, decision.attempt, itype if known else "cpu",
                                limits.gpus if limits else 0, limits.efa if limits else 0, deadline, self.keys,
                                self.settings.jobs)
        self.kube.create_job(manifest)
        self.jobs.setdefault(manifest["metadata"]["name"], manifest)  # until the watch reports it

    def _type(self, itype: str) -> Any:
        return self.thresholds.resolve(itype, self.settings.jobs.profile).instance_type

    def _deadline(self, itype: str, suite: str | None = None) -> int:
        """The Job's activeDeadlineSeconds: every timeout of the suite's checks for this type, plus a margin."""
        limits = self.thresholds.resolve(itype, self.settings.jobs.profile)
        prefix = {"InstanceStress": "stress.", "InstanceConnectivity": "connectivity."}[suite or self.settings.jobs.suite]
        checks = [c for c in CATALOGUE if c.startswith(prefix) and not limits.check(c).skip]
        return int(sum(limits.timing(c).timeout_s for c in checks) + self.settings.deadline_margin_s)


def _attempts(node: dict[str, Any], keys: scheme.Keys) -> int:
    try:
        return max(1, int((node["metadata"].get("annotations") or {}).get(keys.attempts, "1")))
    except ValueError:
        return 1


__all__ = ["Controller", "ControllerSettings", "K8sNotFound"]
