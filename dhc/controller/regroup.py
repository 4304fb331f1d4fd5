"""A connectivity group that lost a member re-forms without it (a mixin of the ``Controller``, under ``Batches``).

A member is lost when its node is deleted, NotReady or marked Failed (``topology.lost``), or when its
group pod died first on its own (``topology.first_deaths``). A running group's Job that lost one is
dissolved: the survivors go back to the candidates at the same try, a Regroup Event on each, and the
Job and its rendezvous Service are deleted; the lost member is charged its own next try
(``reconcile.next_try``). A group's Job that ended without a verdict re-forms the same way
(``regrouped``). The lost member is held apart (``_apart``, behind its own lock: workers write it
through ``regrouped``, the batcher reads it) until its survivors are in a new group, or the wait to
run alone passed, so it never re-forms the same group with them.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from dhc.controller import reconcile
from dhc.controller.jobs import STAGE_ANNOTATION
from dhc.controller.topology import ALONE_AFTER_WINDOWS, Grouping, first_deaths, lost, members, regroup_reason
from dhc.controller.verdicts import JOB_NAME_LABEL
from dhc.k8s import scheme
from dhc.k8s.client import K8sNotFound

log = logging.getLogger("dhc.controller")


class Regroup:
    """Dissolving and re-forming broken groups, for a ``Controller`` (which provides every attribute used here)."""

    nodes: Any
    jobs: Any
    candidates: Any
    settings: Any
    keys: scheme.Keys
    kube: Any
    _batching: threading.Lock
    _stale: threading.Event  # the batcher's dirty flag (``Batches``)
    # and _decide(node), _rebatch(name, decision), _give_up(name, decision)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._apart: dict[str, tuple[frozenset[str], str, float]] = {}  # culprit -> (survivors, their old group, until)
        self._apart_lock = threading.Lock()

    # -- a group that lost a member re-forms without it ----------------------------------------------
    def regrouped(self, name: str, ended: reconcile.Decision) -> reconcile.Decision | None:
        """A group's Job ended without a verdict for ``name`` while another member was lost, or another
        member's pod died first: the same try again in a group without it (None when no other member was
        lost, or ``name`` is lost itself). Reads the Job's pods only when no member is lost by its node."""
        job = self.jobs.get(ended.job) if ended.again == reconcile.REBATCH else None
        if job is None or lost(self.nodes.get(name), self.keys):
            return None
        gone = {m: why for m in members(job) if m != name and (why := lost(self.nodes.get(m), self.keys))}
        if not gone and not reconcile.job_state(job)[1].startswith("DeadlineExceeded"):  # all timed out: no culprit
            meta = job["metadata"]
            gone = first_deaths(self.kube.list_pods(meta["namespace"], f"{JOB_NAME_LABEL}={meta['name']}"), job)
        if not gone or name in gone:
            return None
        self._keep_apart(gone, members(job), job["metadata"]["name"])
        return reconcile.Decision(reconcile.REBATCH, ended.generation, ended.attempt, regroup_reason(job, gone))

    def _dissolve_broken(self) -> None:
        """Each running group's Job that lost a member: survivors back to the candidates, then the Job deleted."""
        with self._batching:
            for job in self.jobs.values():
                annotations = job["metadata"].get("annotations") or {}
                if annotations.get(STAGE_ANNOTATION) != "connectivity" or reconcile.job_state(job)[0] != "running":
                    continue
                gone = {m: why for m in members(job) if (why := lost(self.nodes.get(m), self.keys))}
                if gone:
                    self._dissolve(job, gone)

    def _dissolve(self, job: dict[str, Any], gone: dict[str, str]) -> None:
        name, why = job["metadata"]["name"], regroup_reason(job, gone)
        ripe = time.monotonic() - self.settings.batch_window_s  # survivors re-form at the next look
        for member in members(job):
            if member in gone or self._batch_of(member) != name:
                continue
            state = scheme.NodeState("InProgress", "Unschedulable", why)
            patched = self.kube.patch_node(member, lambda n, s=state: scheme.node_ops(
                n, self.keys, s, {self.keys.stage: "stress-passed"}), current=self.nodes.get(member))
            self.nodes[member] = patched
            self.candidates[member] = ripe
            self.kube.node_event(patched, "DeepHealthCheckRegroup", why, warning=False,
                                 namespace=self.settings.jobs.namespace)
        self._keep_apart(gone, members(job), name)
        for member, reason in gone.items():
            self._charge(member, name, reason)
        self._delete_job(job)
        log.warning("%s", why)

    def _keep_apart(self, gone: dict[str, str], everyone: list[str], job: str) -> None:
        """Hold the lost members out of groups until the survivors are in a new one (or alone_after_s passed):
        a lost node whose node is fine (its pod died) must not re-form the same group with them."""
        grouping: Grouping = self.settings.grouping
        wait = ALONE_AFTER_WINDOWS * self.settings.batch_window_s if grouping.alone_after_s is None \
            else grouping.alone_after_s
        until = time.monotonic() + wait
        with self._apart_lock:
            for member in gone:
                self._apart[member] = (frozenset(everyone) - set(gone), job, until)
        self._stale.set()

    def _held_apart(self, name: str) -> bool:
        with self._apart_lock:
            held = self._apart.get(name)
        if held is None:
            return False
        survivors, job, until = held
        waiting = [s for s in survivors if s in self.nodes and self._batch_of(s) in ("", job)]
        if waiting and time.monotonic() < until:
            return True
        with self._apart_lock:
            if self._apart.get(name) is held:  # not one a worker set since
                self._apart.pop(name, None)
        return False

    def _apart_due(self) -> float:
        with self._apart_lock:
            return min((until for _, _, until in self._apart.values()), default=float("inf"))

    def _batch_of(self, member: str) -> str:
        """The group a node is in now ('' when none): only a node still at the connectivity stage is in one."""
        annotations = ((self.nodes.get(member) or {}).get("metadata") or {}).get("annotations") or {}
        return annotations.get(self.keys.batch, "") if annotations.get(self.keys.stage) == "connectivity" else ""

    def _charge(self, member: str, job: str, reason: str) -> None:
        """The lost member's own next try (or Failed once its tries are spent); a node deleted, or marked
        Failed already, has its outcome."""
        node = self.nodes.get(member)
        if node is None or self._batch_of(member) != job or \
                (node["metadata"].get("labels") or {}).get(self.keys.check_status) == "Failed":
            return
        now = self._decide(node)  # type: ignore[attr-defined]
        ended = reconcile.Decision(reconcile.ENDED, now.generation, now.attempt,
                                   f"it was lost from connectivity group {job}: {reason}", job, reconcile.REBATCH)
        after = reconcile.next_try(ended, "", self.settings.max_attempts)
        act = self._rebatch if after.kind == reconcile.REBATCH else self._give_up  # type: ignore[attr-defined]
        act(member, after)

    def _delete_job(self, job: dict[str, Any]) -> None:
        """Delete the group's Job with its pods, and its rendezvous Service; one already gone is fine."""
        name, namespace = job["metadata"]["name"], job["metadata"].get("namespace") or self.settings.jobs.namespace
        for what, delete, options in (("job", self.kube.batch.delete_namespaced_job, {"propagation_policy": "Background"}),
                                      ("service", self.kube.core.delete_namespaced_service, {})):
            try:
                self.kube.call(f"delete {what} {namespace}/{name}", delete, name, namespace, **options)
            except K8sNotFound:
                pass
        self.jobs.pop(name, None)
