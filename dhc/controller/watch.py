"""The controller's informer and work queue: watch Nodes and dhc's Jobs, queue node names, run workers.

Level-triggered: every node event, Job event and periodic resync puts the node's name on a queue;
workers call ``reconcile(name)``, one worker per node at a time, and retry a node whose API calls
failed. Watches resume from their last resourceVersion and re-list on 410 Gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from dhc.controller.jobs import JOB_LABEL, NODE_ANNOTATION, NODES_ANNOTATION
from dhc.k8s.client import K8sError, K8sGone, Kube

log = logging.getLogger("dhc.controller")


class WorkQueue:
    def __init__(self, kube: Kube, namespace: str, workers: int, resync_s: float, watch_timeout_s: int):
        self.kube, self.namespace, self.workers = kube, namespace, workers
        self.resync_s, self.watch_timeout_s = resync_s, watch_timeout_s
        self.nodes: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self._pending: list[str] = []
        self._queued: set[str] = set()
        self._wake = threading.Condition()
        self._locks: dict[str, threading.Lock] = {}

    def reconcile(self, name: str) -> str:
        raise NotImplementedError

    def background(self) -> list[tuple[str, Callable[[threading.Event], None]]]:
        """More threads to run beside the watches and workers: (name, target(stop))."""
        return []

    def run(self, stop: threading.Event) -> None:
        threads = [threading.Thread(target=self._watch_loop, args=(kind, stop), daemon=True, name=f"watch-{kind}")
                   for kind in ("jobs", "nodes")]
        threads += [threading.Thread(target=self._worker, args=(stop,), daemon=True, name=f"worker-{i}")
                    for i in range(self.workers)]
        threads += [threading.Thread(target=target, args=(stop,), daemon=True, name=name)
                    for name, target in self.background()]
        for thread in threads:
            thread.start()
        while not stop.wait(self.resync_s):
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
                for event_type, obj in self.kube.watch(kind, version, self.watch_timeout_s,
                                                       self.namespace, self._selector(kind)):
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
                    items, version = self.kube.list_jobs(self.namespace, self._selector("jobs"))
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
            [annotations.get(NODE_ANNOTATION)] + annotations.get(NODES_ANNOTATION, "").split(",")
        for node in filter(None, names):
            self.enqueue(node)
