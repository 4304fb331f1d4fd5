"""The connectivity stage: groups of nodes whose stress passed, each tested together in one Indexed Job.

``Batches`` is a mixin of the ``Controller``. Its background thread forms groups (``topology.form``:
bounded, filled within a layer-2 domain across its leaves, never mixing instance types or profiles)
from the nodes waiting in ``candidates`` (node -> when its stress passed), creates each group's
headless Service and Indexed Job (``jobs.batch_manifests``) and marks its nodes InProgress at the
connectivity stage (each patch starts from the cached node: no read unless the cache is stale). A
node that is gone, NotReady or Failed joins no group; one lost from a group whose Job runs dissolves
it: the others go back to the candidates at the same try and re-form without it (its loss is not
theirs), and the lost node gets its own next try (``reconcile.next_try``). A group's Job that ended
without a verdict for a node re-forms the same way (``regrouped``) when another member was lost, or
when another member's pod died first on its own (``first_deaths``: a non-zero exit without a
verdict, alone in the first second, the next death 2 s or more later); a Job that ran out of time,
or whose pods died together, has no culprit and every member's try counts. A lost node is held out
of groups until its survivors are in a new one (dissolving and re-forming: ``regroup.Regroup``, a
mixin under this one).

The batcher forms groups only when something that decides them changed (a candidate, a candidate's
or a group member's node, a connectivity Job: the caches' listeners set a dirty flag) or when a
window, a wait or a hold runs out; a quiet cluster costs it nothing. API errors follow the
controller's model per group: a temporary one backs the group off (``workqueue.Holds``); a permanent
one (a 403 creating its Service or Job) is said once, as an error line, a Warning Event on each of its
nodes and ``dhc_controller_errors_total{kind="permanent"}``, and the group is not tried again until
its candidates change or ``PERMANENT_RETRY_S`` passes. An unexpected exception is logged with its
stack and the batcher backs off and carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

from dhc.controller.jobs import STAGE_ANNOTATION, batch_manifests
from dhc.controller.nodeinfo import allocatable as _allocatable
from dhc.controller.nodeinfo import attempts as _attempts
from dhc.controller.regroup import Regroup
from dhc.controller.requests import Requests
from dhc.controller.topology import (
    ALONE_AFTER_WINDOWS,
    Candidate,
    Grouping,
    first_deaths,
    form,
    lost,
    members,
    path,
    places,
)
from dhc.controller.workqueue import Backoff, Holds
from dhc.k8s import scheme
from dhc.k8s.client import K8sError

__all__ = ["Batches", "first_deaths", "lost", "members"]
log = logging.getLogger("dhc.controller")
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
TICK_S = 0.2  # how often the batcher looks whether anything changed
PERMANENT_RETRY_S = 3600.0  # a group refused for good is tried again after this long, even unchanged


class Batches(Regroup):
    """The connectivity stage of a ``Controller`` (which provides every attribute used here)."""

    candidates: dict[str, float]
    _batching: threading.Lock
    nodes: Any
    jobs: Any
    settings: Any
    thresholds: Any
    keys: scheme.Keys
    kube: Any
    # and group(node), count(what, kind), _type(itype), _deadline(itype, profile, suite), _decide(node),
    # _rebatch(name, decision), _give_up(name, decision)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stale, self._due, self._listening = threading.Event(), 0.0, False  # the dirty flag; when a window
        # or a hold runs out; whether the caches tell the batcher of their changes yet
        self._stale.set()
        self.group_holds = Holds(Backoff(), PERMANENT_RETRY_S)  # a group (its node names) after an API error
        self.batcher_holds = Holds(Backoff(cap_s=60.0), PERMANENT_RETRY_S)  # after a pass that failed as a whole
        self._pass_said = ""  # the permanent error a failed pass last reported

    def background(self) -> list[tuple[str, Any]]:
        on_demand = Requests(self, self.settings.jobs.namespace, self.settings.requests_poll_s)  # type: ignore[arg-type]
        return [("batcher", self._batcher)] + ([("requests", on_demand.run)] if self.settings.requests_poll_s else [])

    def _listen(self) -> None:
        """The caches tell the batcher what may decide a group (the dirty flag starts set: a first pass)."""
        if self._listening:  # (a batcher started again)
            return
        self._listening = True
        self.candidates.listen(lambda name, since: self._stale.set())
        self.nodes.listen(self._node_changed)
        self.jobs.listen(lambda name, job: self._stale.set() if job is None or _stage(job) == "connectivity" else None)

    def _node_changed(self, name: str | None, node: dict[str, Any] | None) -> None:
        """A change that may decide a group: a node gone or re-listed, a candidate's, a group member's."""
        if name is None or node is None or name in self.candidates or \
                ((node.get("metadata") or {}).get("annotations") or {}).get(self.keys.stage) == "connectivity":
            self._stale.set()

    def _batcher(self, stop: threading.Event) -> None:
        self._listen()
        resume = 0.0
        while not stop.wait(TICK_S):
            now = time.monotonic()
            if now < resume or (not self._stale.is_set() and now < self._due):
                continue
            self._stale.clear()
            try:
                self._dissolve_broken()
                self._due = self._form_batches()
            except Exception as exc:  # a bug or a refused call must not end the connectivity stage
                resume = time.monotonic() + self._pass_failed(exc)
                self._stale.set()  # the pass did not finish: the next one looks again
            else:
                self.batcher_holds.forget("pass")

    def _pass_failed(self, exc: Exception) -> float:
        """A pass that failed as a whole (dissolving a broken group, or a bug): said, backed off."""
        if not isinstance(exc, K8sError):
            delay = self.batcher_holds.failed("pass", False, "")[0]
            log.exception("the connectivity batcher failed unexpectedly; trying again in %.1f s", delay)
            return delay
        delay, news = self.batcher_holds.failed("pass", False, "")[0], exc.permanent and self._pass_said != str(exc)
        self._pass_said = str(exc) if exc.permanent else self._pass_said
        self.count("errors", "permanent" if exc.permanent else "temporary")  # type: ignore[attr-defined]
        log.log(logging.ERROR if news else logging.WARNING,
                "dissolving a broken connectivity group failed (%s); trying again in %.1f s", exc, delay)
        return delay

    def _form_batches(self) -> float:
        """Start the groups due now; when the next one may be due though nothing changes (inf: never)."""
        with self._batching:
            by_grouping: dict[Grouping, list[Candidate]] = {}
            for name, since in self.candidates.items():
                node = self.nodes.get(name)
                if node is None:  # deleted while it waited
                    self.candidates.pop(name, None)
                    continue
                labels = node["metadata"].get("labels") or {}
                itype = labels.get(INSTANCE_TYPE_LABEL)
                if lost(node, self.keys) or itype not in self.thresholds.names or self._held_apart(name):
                    continue  # (an unknown type never passed its stress stage)
                group = self.group(node)  # type: ignore[attr-defined]
                candidate = Candidate(name, (itype, group.profile), labels, since)
                by_grouping.setdefault(self.grouping(group), []).append(candidate)
            now, waiting_now = time.monotonic(), set(self.candidates.keys())
            self.group_holds.keep(lambda key: set(key.split(",")) <= waiting_now)
            due = [self._apart_due()]
            for grouping, waiting in by_grouping.items():
                kinds = {c.name: c.kind for c in waiting}
                for names in form(waiting, grouping, self.settings.batch_window_s, now):
                    self._try_group(*kinds[names[0]], names)
                due += _ripening(waiting, grouping, self.settings.batch_window_s)
            return min((t for t in due + [self.group_holds.next_due()] if t > now), default=float("inf"))

    def _try_group(self, itype: str, profile: str, names: list[str]) -> None:
        key = ",".join(names)
        if self.group_holds.held(key):
            return
        try:
            self._start_batch(itype, profile, names)
        except K8sError as exc:
            self._group_failed(key, names, exc)
        else:
            self.group_holds.forget(key)

    def _group_failed(self, key: str, names: list[str], exc: K8sError) -> None:
        delay, news = self.group_holds.failed(key, exc.permanent, str(exc))
        self.count("errors", "permanent" if exc.permanent else "temporary")  # type: ignore[attr-defined]
        if not exc.permanent:
            log.warning("connectivity group of %s: %s; trying again in %.1f s", key, exc, delay)
            return
        why = f"connectivity group of {key}: {exc.what or 'an API call'} refused (HTTP {exc.status}): " \
              f"{exc.detail or exc}; not tried again until its candidates change, or in {delay / 60:g} min"
        if not news:
            log.warning("%s", why)
            return
        log.error("%s", why)
        for node in filter(None, (self.nodes.get(n) for n in names)):
            try:
                self.kube.node_event(node, "DeepHealthCheckApiRefused", why, warning=True,
                                     namespace=self.settings.jobs.namespace)
            except K8sError as event_exc:
                log.error("node %s: the Warning Event saying so was refused too: %s", node["metadata"]["name"], event_exc)

    def grouping(self, group: Any) -> Grouping:
        """The command line's group settings, with what the node's group in the config file overrides."""
        base: Grouping = self.settings.grouping
        size = getattr(group, "group_size", 0) or base.size
        return replace(base, size=size, min_size=min(base.min_size, size),
                       label=getattr(group, "topology_label", "") or base.label)

    def _start_batch(self, itype: str, profile: str, names: list[str]) -> None:
        """Create the group's Service and Job and mark its nodes; a member deleted since it was formed
        (read once here) leaves the group unstarted: the others re-form without it at the next pass."""
        nodes = {n: node for n in names if (node := self.nodes.get(n)) is not None}
        if len(nodes) < len(names):
            log.info("connectivity group of %s: %s deleted meanwhile; re-forming", ",".join(names),
                     ",".join(sorted(set(names) - set(nodes))))
            self._stale.set()
            return
        limits, jobs = self._type(itype), replace(self.settings.jobs, profile=profile)  # type: ignore[attr-defined]
        attempt = max(_attempts(node, self.keys) for node in nodes.values())
        deadline = self._deadline(itype, profile, "InstanceConnectivity")  # type: ignore[attr-defined]
        where = places([path(node["metadata"].get("labels") or {}, self.grouping(self.group(node)).label)  # type: ignore[attr-defined]
                        for node in nodes.values()])
        service, job = batch_manifests(names, attempt, itype, limits.gpus, limits.efa, deadline, self.keys,
                                       jobs, _allocatable(nodes[names[0]]), where)
        self.kube.create_service(service)
        if self.kube.create_job(job):  # False: it exists already (a restarted controller)
            self.count("jobs", "connectivity")  # type: ignore[attr-defined]
        self.jobs.setdefault(job["metadata"]["name"], job)
        for name in names:
            annotations = {self.keys.stage: "connectivity", self.keys.batch: job["metadata"]["name"]}
            state = scheme.NodeState("InProgress", "Unschedulable")
            self.nodes[name] = self.kube.patch_node(  # from the cached node: a stale one fails the guard, is read
                name, lambda n, a=annotations, s=state: scheme.node_ops(n, self.keys, s, a), current=nodes[name])
            self.candidates.pop(name, None)
        log.info("connectivity group %s: %d %s nodes at %s", job["metadata"]["name"], len(names), itype, where)


def _stage(obj: dict[str, Any]) -> str:
    """The stage a node or a Job is at, from dhc's stage annotation ('' when none)."""
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(STAGE_ANNOTATION, "")


def _ripening(waiting: list[Candidate], grouping: Grouping, window_s: float) -> list[float]:
    """When the waiting candidates' windows, and their waits to run alone, run out."""
    alone_after = ALONE_AFTER_WINDOWS * window_s if grouping.alone_after_s is None else grouping.alone_after_s
    return [c.since + wait for c in waiting for wait in (window_s, alone_after)]
