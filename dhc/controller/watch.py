"""The controller's informer and worker pool: watch Nodes and dhc's Jobs, queue node names, run workers.

Level-triggered: every node event, Job event and periodic resync puts the node's name on the work
queue (``workqueue.Queue``: de-duplicated, one worker per node at a time, a node added while it is
reconciled is reconciled once more after). Watches resume from their last resourceVersion and
re-list on 410 Gone; the caches (``cache.Store``) are shared behind their own locks.

The error model at the API boundary (``K8sError.permanent``): a temporary error (5xx, 429, a
conflict, a timeout, a dropped connection) retries the node after a per-node exponential backoff
(1 s doubling to 5 min, with jitter), reset by a success. A permanent one (403 Forbidden, 401,
400, an invalid 422) is reported once, as an error log line and a Warning Event on the node naming
the call and the API server's message, counted in ``dhc_controller_errors_total{kind}``, and the
node is not tried again until it changes (a watch event with a new resourceVersion) or an hour has
passed. Resyncs and Job events do not lift either hold; only a change to the node does.

A list or watch the API server refuses (a 403 when RBAC lacks list/watch nodes, a 5xx) is tried again
after an exponential backoff per call (1 s doubling to 2 min, jitter), reset by a success; its error
is logged once (an error line when permanent), then again each time the delay is at its cap. Every
thread (watches, workers, the batcher) survives an unexpected exception: logged with its stack,
started again after a backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import Any

from dhc.controller.cache import JobStore, Store
from dhc.controller.jobs import JOB_LABEL, NODE_ANNOTATION, NODES_ANNOTATION
from dhc.controller.workqueue import Backoff, Queue
from dhc.k8s.client import K8sError, K8sGone, K8sNotFound, Kube

log = logging.getLogger("dhc.controller")
PERMANENT_RETRY_S = 3600.0  # a node refused for good is tried again after this long, even unchanged
HEALTHY_RUN_S = 60.0  # a thread that ran this long before it failed starts again at once


class WorkQueue:
    def __init__(self, kube: Kube, namespace: str, workers: int, resync_s: float, watch_timeout_s: int):
        self.kube, self.namespace, self.workers = kube, namespace, workers
        self.resync_s, self.watch_timeout_s = resync_s, watch_timeout_s
        self.nodes = Store()
        self.jobs = JobStore()
        self.queue, self.backoff = Queue(), Backoff()
        self._held: dict[str, tuple[str, float]] = {}  # node -> (its resourceVersion when it failed, until)
        self._reported: dict[str, str] = {}  # node -> the permanent error last reported for it
        self._holding = threading.Lock()
        self.list_backoff = Backoff(1.0, 120.0)  # a list or watch refused, per call ("list nodes", "watch jobs")
        self._list_said: dict[str, str] = {}  # call -> the error last logged for it
        self.thread_backoff = Backoff(1.0, 60.0)  # a thread that failed unexpectedly, by name
        self.tally: Counter[tuple[str, str]] = Counter()  # what was done, by kind: ("errors", "permanent"), ...
        self._counting = threading.Lock()

    def reconcile(self, name: str) -> str:
        raise NotImplementedError

    def background(self) -> list[tuple[str, Callable[[threading.Event], None]]]:
        """More threads to run beside the watches and workers: (name, target(stop))."""
        return []

    def count(self, what: str, kind: str = "") -> None:
        with self._counting:
            self.tally[what, kind] += 1

    def run(self, stop: threading.Event) -> None:
        targets = [(f"watch-{kind}", partial(self._watch_loop, kind)) for kind in ("jobs", "nodes")]
        targets += [(f"worker-{i}", self._worker) for i in range(self.workers)] + self.background()
        threads = [threading.Thread(target=self._surviving(name, target), args=(stop,), daemon=True, name=name)
                   for name, target in targets]
        for thread in threads:
            thread.start()
        while not stop.wait(self.resync_s):
            for name in self.nodes:
                self.enqueue(name)
        self.queue.close()
        for thread in threads:
            thread.join(timeout=5)

    def _surviving(self, name: str, target: Callable[[threading.Event], None]) -> Callable[[threading.Event], None]:
        """``target`` run until it returns: an unexpected exception is logged with its stack, and the
        target started again after a backoff (at once when it had run ``HEALTHY_RUN_S``)."""
        def run(stop: threading.Event) -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    return target(stop)
                except Exception:
                    if time.monotonic() - started >= HEALTHY_RUN_S:
                        self.thread_backoff.forget(name)
                    delay = self.thread_backoff.next(name)
                    log.exception("thread %s failed unexpectedly; starting it again in %.1f s", name, delay)
                    stop.wait(delay)

        return run

    def enqueue(self, name: str) -> None:
        """Queue the node, unless it is held after an error and has not changed since."""
        with self._holding:
            hold = self._held.get(name)
            if hold is not None:
                if _version(self.nodes.get(name)) == hold[0] and time.monotonic() < hold[1]:
                    return
                del self._held[name]
        self.queue.add(name)

    def forget(self, name: str) -> None:
        """The node is gone or fine: drop its backoff, hold and reported error."""
        self.backoff.forget(name)
        with self._holding:
            self._held.pop(name, None)
            self._reported.pop(name, None)

    # -- workers --------------------------------------------------------------------------------------
    def _worker(self, stop: threading.Event) -> None:
        while not stop.is_set():
            name = self.queue.get(timeout_s=1.0)
            if name is None:
                continue
            try:
                self._process(name)
            finally:
                self.queue.done(name)

    def _process(self, name: str) -> None:
        try:
            self.reconcile(name)
        except K8sError as exc:
            self._failed(name, exc)
        except Exception as exc:  # a bug must not kill the worker: said with its stack, retried with backoff
            log.exception("node %s: reconcile failed unexpectedly", name)
            self._failed(name, K8sError(f"unexpected {type(exc).__name__}: {exc}"))
        else:
            self.forget(name)

    def _failed(self, name: str, exc: K8sError) -> None:
        permanent = exc.permanent
        delay = PERMANENT_RETRY_S if permanent else self.backoff.next(name)
        with self._holding:
            self._held[name] = (_version(self.nodes.get(name)), time.monotonic() + delay)
            repeated = self._reported.get(name) == str(exc)
            if permanent:
                self._reported[name] = str(exc)
        self.queue.add_after(name, delay)
        if isinstance(exc, K8sNotFound) and exc.what.endswith(f" node {name}"):  # deleted meanwhile: no error
            log.info("node %s: %s (deleted meanwhile)", name, exc)
            return
        self.count("errors", "permanent" if permanent else "temporary")
        if not permanent:
            log.warning("node %s: %s; will retry in %.1f s", name, exc, delay)
        elif repeated:
            log.warning("node %s: %s; not retried until the node changes", name, exc)
        else:
            self._report(name, exc)

    def _report(self, name: str, exc: K8sError) -> None:
        """A permanent error: an error log line and a Warning Event on the node, once."""
        why = f"{exc.what or 'an API call'} refused (HTTP {exc.status}): {exc.detail or exc}; " \
              f"not retried until the node changes, or in {PERMANENT_RETRY_S / 60:g} min"
        log.error("node %s: %s", name, why)
        node = self.nodes.get(name)
        if node is None:
            return
        try:
            self.kube.node_event(node, "DeepHealthCheckApiRefused", why, warning=True, namespace=self.namespace)
        except K8sError as event_exc:
            log.error("node %s: the Warning Event saying so was refused too: %s", name, event_exc)

    # -- watches --------------------------------------------------------------------------------------
    def _watch_loop(self, kind: str, stop: threading.Event) -> None:
        version = self._relist(kind, stop)
        while not stop.is_set():
            try:
                for event_type, obj in self.kube.watch(kind, version, self.watch_timeout_s,
                                                       self.namespace, self._selector(kind)):
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if event_type != "BOOKMARK":
                        self._observe(kind, event_type, obj)
                    if stop.is_set():
                        return
                self._api_ok(f"watch {kind}")
            except K8sGone:
                version = self._relist(kind, stop)
            except K8sError as exc:  # a dropped or refused watch: resume from the last version seen
                stop.wait(self._api_failed(f"watch {kind}", exc, f"resuming from {version}"))

    def _relist(self, kind: str, stop: threading.Event) -> str:
        while not stop.is_set():
            try:
                if kind == "nodes":
                    items, version = self.kube.list_nodes()
                    self.nodes.replace({n["metadata"]["name"]: n for n in items})
                    for name in self.nodes:
                        self.enqueue(name)
                else:
                    items, version = self.kube.list_jobs(self.namespace, self._selector("jobs"))
                    self.jobs.replace({j["metadata"]["name"]: j for j in items})
                self._api_ok(f"list {kind}")
                return version
            except K8sError as exc:
                stop.wait(self._api_failed(f"list {kind}", exc, "trying again"))
        return ""

    def _api_failed(self, call: str, exc: K8sError, then: str) -> float:
        """A list or watch failed: how long to wait. Said once (an error line when permanent), then each
        time the delay is at its cap; counted in dhc_controller_errors_total{kind}."""
        delay = self.list_backoff.next(call)
        with self._holding:
            news, self._list_said[call] = self._list_said.get(call) != str(exc), str(exc)
        if exc.status is not None:  # (a dropped connection is the watch's everyday end, not an error)
            self.count("errors", "permanent" if exc.permanent else "temporary")
        level = logging.ERROR if exc.permanent else logging.WARNING if exc.status else logging.INFO
        if news or self.list_backoff.capped(call):
            log.log(level, "%s failed (%s); %s in %.1f s", call, exc, then, delay)
        else:
            log.debug("%s failed again (%s); %s in %.1f s", call, exc, then, delay)
        return delay

    def _api_ok(self, call: str) -> None:
        self.list_backoff.forget(call)
        with self._holding:
            self._list_said.pop(call, None)

    def _selector(self, kind: str) -> str:
        return f"{JOB_LABEL}=dhc" if kind == "jobs" else ""

    def _observe(self, kind: str, event_type: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        store = self.nodes if kind == "nodes" else self.jobs
        if event_type == "DELETED":
            store.pop(name, None)
            if kind == "nodes":
                self.forget(name)
        else:
            store[name] = obj
        annotations = obj["metadata"].get("annotations") or {}
        names = [name] if kind == "nodes" else \
            [annotations.get(NODE_ANNOTATION)] + annotations.get(NODES_ANNOTATION, "").split(",")
        for node in filter(None, names):
            self.enqueue(node)


def _version(node: dict[str, Any] | None) -> str:
    return str(((node or {}).get("metadata") or {}).get("resourceVersion") or "")
