"""The connectivity stage: groups of nodes whose stress passed, each tested together in one Indexed Job.

``Batches`` is a mixin of the ``Controller``. Its background thread forms groups (``topology.form``:
bounded, by network topology, never mixing instance types or profiles) from the nodes waiting in
``candidates`` (node -> when its stress passed), creates each group's headless Service and Indexed
Job (``jobs.batch_manifests``) and marks its nodes InProgress at the connectivity stage. A node that
is gone, NotReady or Failed joins no group; one lost from a group whose Job runs dissolves it: the
others go back to the candidates at the same try and re-form without it (its loss is not theirs),
and the lost node gets its own next try (``reconcile.next_try``). A group's Job that ended without
a verdict for a node re-forms the same way (``regrouped``) when another member was lost, or when
another member's pod died first on its own (``first_deaths``: a non-zero exit without a verdict
before any other); a Job that ran out of time, or whose pods all died at once, has no culprit and
every member's try counts. A lost node is held out of groups until its survivors are in a new one.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from typing import Any

from dhc.controller import reconcile
from dhc.controller.jobs import CONTAINER, NODES_ANNOTATION, STAGE_ANNOTATION, batch_manifests
from dhc.controller.nodeinfo import allocatable as _allocatable
from dhc.controller.nodeinfo import attempts as _attempts
from dhc.controller.requests import Requests
from dhc.controller.topology import ALONE_AFTER_WINDOWS, Candidate, Grouping, form, path, places
from dhc.controller.verdicts import JOB_NAME_LABEL
from dhc.k8s import scheme
from dhc.k8s.client import K8sError, K8sNotFound

log = logging.getLogger("dhc.controller")
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"


def lost(node: dict[str, Any] | None, keys: scheme.Keys) -> str:
    """Why a node can take no part in a connectivity group now; '' when it can. A node without a
    Ready condition (not yet reported) is not held against it; Ready False or Unknown is."""
    if node is None:
        return "the node was deleted"
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") != "True":
        return f"the node is NotReady (Ready {ready.get('status')}: {ready.get('reason') or 'no reason given'})"
    if ((node.get("metadata") or {}).get("labels") or {}).get(keys.check_status) == "Failed":
        return "the node is marked Failed"
    return ""


def members(job: dict[str, Any]) -> list[str]:
    """The nodes of a connectivity group's Job, from its annotation."""
    text = ((job.get("metadata") or {}).get("annotations") or {}).get(NODES_ANNOTATION) or ""
    return [name for name in text.split(",") if name]


class Batches:
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
        self._apart: dict[str, tuple[frozenset[str], str, float]] = {}  # culprit -> (survivors, their old group, until)

    def background(self) -> list[tuple[str, Any]]:
        on_demand = Requests(self, self.settings.jobs.namespace, self.settings.requests_poll_s)  # type: ignore[arg-type]
        return [("batcher", self._batcher)] + ([("requests", on_demand.run)] if self.settings.requests_poll_s else [])

    def _batcher(self, stop: threading.Event) -> None:
        while not stop.wait(0.2):
            try:
                self._dissolve_broken()
                self._form_batches()
            except K8sError as exc:
                log.warning("forming a connectivity group failed (%s); will retry", exc)

    def _form_batches(self) -> None:
        with self._batching:
            by_grouping: dict[Grouping, list[Candidate]] = {}
            for name, since in list(self.candidates.items()):
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
            now = time.monotonic()
            for grouping, waiting in by_grouping.items():
                kinds = {c.name: c.kind for c in waiting}
                for names in form(waiting, grouping, self.settings.batch_window_s, now):
                    self._start_batch(*kinds[names[0]], names)

    def grouping(self, group: Any) -> Grouping:
        """The command line's group settings, with what the node's group in the config file overrides."""
        base: Grouping = self.settings.grouping
        size = getattr(group, "group_size", 0) or base.size
        return replace(base, size=size, min_size=min(base.min_size, size),
                       label=getattr(group, "topology_label", "") or base.label)

    def _start_batch(self, itype: str, profile: str, names: list[str]) -> None:
        limits, jobs = self._type(itype), replace(self.settings.jobs, profile=profile)  # type: ignore[attr-defined]
        attempt = max(_attempts(self.nodes[n], self.keys) for n in names)
        deadline = self._deadline(itype, profile, "InstanceConnectivity")  # type: ignore[attr-defined]
        where = places([path(self.nodes[n]["metadata"].get("labels") or {},
                             self.grouping(self.group(self.nodes[n])).label) for n in names])  # type: ignore[attr-defined]
        service, job = batch_manifests(names, attempt, itype, limits.gpus, limits.efa, deadline, self.keys,
                                       jobs, _allocatable(self.nodes[names[0]]), where)
        self.kube.create_service(service)
        if self.kube.create_job(job):  # False: it exists already (a restarted controller)
            self.count("jobs", "connectivity")  # type: ignore[attr-defined]
        self.jobs.setdefault(job["metadata"]["name"], job)
        for name in names:
            annotations = {self.keys.stage: "connectivity", self.keys.batch: job["metadata"]["name"]}
            state = scheme.NodeState("InProgress", "Unschedulable")
            self.nodes[name] = self.kube.patch_node(
                name, lambda n, a=annotations, s=state: scheme.node_ops(n, self.keys, s, a))
            self.candidates.pop(name, None)
        log.info("connectivity group %s: %d %s nodes at %s", job["metadata"]["name"], len(names), itype, where)

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
        return reconcile.Decision(reconcile.REBATCH, ended.generation, ended.attempt, _regroup_reason(job, gone))

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
        name, why = job["metadata"]["name"], _regroup_reason(job, gone)
        ripe = time.monotonic() - self.settings.batch_window_s  # survivors re-form at the next look
        for member in members(job):
            if member in gone or self._batch_of(member) != name:
                continue
            state = scheme.NodeState("InProgress", "Unschedulable", why)
            patched = self.kube.patch_node(member, lambda n, s=state: scheme.node_ops(
                n, self.keys, s, {self.keys.stage: "stress-passed"}))
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
        for member in gone:
            self._apart[member] = (frozenset(everyone) - set(gone), job, until)

    def _held_apart(self, name: str) -> bool:
        held = self._apart.get(name)
        if held is None:
            return False
        survivors, job, until = held
        waiting = [s for s in survivors if s in self.nodes and self._batch_of(s) in ("", job)]
        if waiting and time.monotonic() < until:
            return True
        if self._apart.get(name) is held:  # not one a worker set since
            self._apart.pop(name, None)
        return False

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


def first_deaths(pods: list[dict[str, Any]], job: dict[str, Any]) -> dict[str, str]:
    """The members whose group pod died first on its own: it ended without a verdict (a non-zero exit, no
    termination message) before any other pod ended so. {} when that cannot be told: no such pod, a time
    that cannot be read, or every member's pod died so at once (the group failed as a whole)."""
    uid, deaths = job["metadata"].get("uid"), []
    for pod in pods:
        owners = [r.get("uid") for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")]
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        ended = next(((c.get("state") or {}).get("terminated") for c in statuses if c.get("name") == CONTAINER), None)
        if (uid and uid not in owners) or not ended or ended.get("message") or ended.get("exitCode") == 0:
            continue
        why = f"its pod {pod['metadata']['name']} exited {ended.get('exitCode')} ({ended.get('reason') or 'no reason'})" \
            " without a verdict, first in its group"
        deaths.append((scheme.parse_time(ended.get("finishedAt")), (pod.get("spec") or {}).get("nodeName", ""), why))
    if not deaths or any(at is None for at, _, _ in deaths):
        return {}
    first = min(at for at, _, _ in deaths)  # type: ignore[type-var]
    culprits = {node: why for at, node, why in deaths if at == first and node in members(job)}
    return culprits if len(culprits) < len(members(job)) else {}


def _regroup_reason(job: dict[str, Any], gone: dict[str, str]) -> str:
    lost_nodes = "; ".join(f"{m}: {why}" for m, why in sorted(gone.items()))
    return f"connectivity group {job['metadata']['name']} lost a member ({lost_nodes}); " \
        "re-forming without it, this try not counted"
