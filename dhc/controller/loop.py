"""The controller: bring each node's check to a verdict, from the cached node and its Jobs.

Which nodes it checks (``wants``) and what it does for one (``reconcile.decide``, then act); the
connectivity stage's groups are ``batches.Batches``'s. The watching and queueing is ``watch.WorkQueue``'s.
A Job that ended is read for its pods' verdicts (``verdicts``), which the controller alone writes onto the node; a
node it would check but cannot judge (an instance type not in thresholds.yaml, or one promising
fewer GPUs than the node has) stays out of service with the reason, and is never checked against
another type's profile. A node at rest that is marked PendingReboot / PendingReplacement is handed
to ``remediation`` for its next step, unless its group's NodeRecovery is None. Each node's group
(``groups``) sets its profile and stages; a group without deep checks leaves its joining nodes
untouched (no Job, no label, no taint, never Passed). ``snapshot`` is what ``metrics`` shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from dhc.controller import groups as node_groups
from dhc.controller import reconcile, verdicts
from dhc.controller.batches import Batches
from dhc.controller.cache import Store
from dhc.controller.jobs import STAGE_ANNOTATION, JobSettings, job_manifest
from dhc.controller.nodeinfo import allocatable as _allocatable
from dhc.controller.nodeinfo import capacity as _capacity
from dhc.controller.nodeinfo import gpu_capacity as _gpu_capacity
from dhc.controller.nodeinfo import gpu_count as _gpu_count
from dhc.controller.remediation import Actuator, RemediationSettings, Remediator
from dhc.controller.topology import Grouping
from dhc.controller.watch import WorkQueue
from dhc.k8s import scheme
from dhc.k8s.client import K8sNotFound, Kube
from dhc.thresholds import CATALOGUE, SUITES, Thresholds

log = logging.getLogger("dhc.controller")
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
OPT_IN_LABEL = "dhc.dev/deep-health-check"  # "enabled": check this node whatever its type
AWAIT_BATCH, UNSUPPORTED = reconcile.AWAIT_BATCH, "unsupported"


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
    grouping: Grouping = field(default_factory=Grouping)  # connectivity groups: size, minimum, topology label
    remediation: RemediationSettings = field(default_factory=RemediationSettings)
    groups: node_groups.Groups | None = None  # None: every node as the command line says (JobSettings)
    requests_poll_s: float = 0.0  # how often HealthCheckRequests are read (0: not at all)


@dataclass(frozen=True)
class Snapshot:
    check_status: Counter[str]  # nodes by dhc's deep-health-check-status label
    health: Counter[str]  # nodes by dhc's node-health-status label
    unjudged: int  # nodes dhc would check but cannot judge
    tally: dict[tuple[str, str], int]  # Jobs started by stage, verdicts written by status, unearned labels found
    breaker_tripped: bool = False  # the remediation circuit breaker waits for a person
    recoveries: tuple[float, ...] = ()  # seconds from detection to Schedulable again, per remediated node


class Controller(Batches, WorkQueue):
    def __init__(self, kube: Kube, thresholds: Thresholds, settings: ControllerSettings,
                 actuator: Actuator | None = None):
        super().__init__(kube, settings.jobs.namespace, settings.workers, settings.resync_s, settings.watch_timeout_s)
        self.thresholds, self.settings = thresholds, settings
        self.keys = scheme.Keys(settings.prefix)
        self.candidates = Store()  # node -> when its stress passed (waiting for a batch)
        self._batching = threading.Lock()
        self.unjudged: set[str] = set()  # nodes dhc would check but cannot judge
        self.remediation = Remediator(self, settings.remediation, actuator)
        self.groups = settings.groups or node_groups.plain(settings.jobs.profile, settings.jobs.connectivity)

    def snapshot(self) -> Snapshot:
        """What the metrics show: dhc's labels over the cached nodes, and the counts so far."""
        labels = [n["metadata"].get("labels") or {} for n in self.nodes.values()]
        with self._counting:
            tally = dict(self.tally)
        return Snapshot(Counter(v for v in (lb.get(self.keys.check_status) for lb in labels) if v),
                        Counter(v for v in (lb.get(self.keys.health) for lb in labels) if v),
                        len(self.unjudged), tally, bool(self.remediation.tripped()),
                        tuple(self.remediation.recoveries))

    # -- deciding and acting ---------------------------------------------------------------------------
    def wants(self, node: dict[str, Any]) -> bool:
        """Opted in, of a GPU instance type dhc knows, or with GPUs whatever its type."""
        labels = node["metadata"].get("labels") or {}
        if labels.get(OPT_IN_LABEL) == "enabled" or _gpu_capacity(node):
            return True
        itype = labels.get(INSTANCE_TYPE_LABEL)
        return bool(itype) and itype in self.thresholds.names and self._type(itype).gpus > 0

    def reconcile(self, name: str) -> str:
        node = self.nodes.get(name)
        if node is None or not self.wants(node):
            self.unjudged.discard(name)
            self.remediation.forget(name)
            return reconcile.NOTHING
        if node_groups.unchecked(self.group(node), node, self.keys):  # joins with no deep checks: untouched
            self._recover(node)
            return reconcile.NOTHING
        why = self._cannot_judge(node)
        if why:
            return self._unsupported(node, why)
        self.unjudged.discard(name)
        decision = self._decide(node)
        if decision.kind in (reconcile.ENDED, reconcile.GIVE_UP, reconcile.REBATCH):
            node = self.kube.node(name)  # a re-check request may have landed since the cache saw the node
            self.nodes[name] = node
            decision = self._decide(node)
        if decision.kind == reconcile.ENDED:
            decision = self._collect(name, decision)
        if decision.kind == AWAIT_BATCH and self.group(self.nodes[name]).connectivity:
            self.candidates.setdefault(name, time.monotonic())
            return decision.kind
        if decision.kind == AWAIT_BATCH:  # its group dropped the fabric stage since: a stress-only check, anew
            decision = reconcile.Decision(reconcile.RECHECK, decision.generation + 1, 1)
        self.candidates.pop(name, None)
        act = {reconcile.JOIN: self._join, reconcile.START: self._start, reconcile.RETRY: self._retry,
               reconcile.GIVE_UP: self._give_up, reconcile.RECHECK: self._recheck,
               reconcile.REBATCH: self._rebatch, reconcile.UNEARNED: self._unearned}.get(decision.kind)
        if act is not None:
            act(name, decision)
        elif decision.kind == reconcile.NOTHING:  # a node at rest: marked for remediation, or in its course
            self._recover(self.nodes[name])
        return decision.kind

    def group(self, node: dict[str, Any]) -> node_groups.Group:
        return self.groups.of(node["metadata"].get("labels") or {})

    def _recover(self, node: dict[str, Any]) -> None:
        """Remediation's next step, unless the node's group says NodeRecovery: None (labels and Events only)."""
        if self.group(node).automatic:
            self.remediation.step(node)

    def _collect(self, name: str, ended: reconcile.Decision) -> reconcile.Decision:
        """The ended Job's verdict for this node, written by the controller; or the next try without one."""
        job = self.jobs.get(ended.job)
        outcome = verdicts.read(self.kube, job, name) if job is not None else verdicts.Outcome(why="the Job is gone")
        if outcome.verdict is None:  # another member lost: the same try in a group without it (batches)
            return self.regrouped(name, ended) or reconcile.next_try(ended, outcome.why, self.settings.max_attempts)
        assert job is not None
        self.nodes[name] = verdicts.apply(self.kube, self.keys, name, job, outcome, ended.generation,
                                          self.settings.jobs.namespace)
        self.count("verdicts", outcome.verdict.status)
        return self._decide(self.nodes[name])  # AWAIT_BATCH after a stress pass; otherwise nothing more

    def _cannot_judge(self, node: dict[str, Any]) -> str:
        """'' when a profile in thresholds.yaml fits the node; else why not, with what to do about it."""
        itype = (node["metadata"].get("labels") or {}).get(INSTANCE_TYPE_LABEL)
        if not itype or itype not in self.thresholds.names:
            fix = "add the type, or an alias, to thresholds.yaml"
            why = f"instance type {itype!r} is not in thresholds.yaml" if itype else \
                f"the node has no {INSTANCE_TYPE_LABEL} label"
        else:
            have, promised = _gpu_count(node), self._type(itype).gpus
            if have is not None and have <= promised:
                return ""
            fix = f"correct the node's {INSTANCE_TYPE_LABEL} label or the type in thresholds.yaml"
            why = f"its nvidia.com/gpu capacity {_capacity(node)!r} is not a whole number" if have is None else \
                f"it has {have} GPUs (nvidia.com/gpu capacity) but instance type {itype!r} promises {promised} in " \
                "thresholds.yaml, so a check against that profile would not test them all"
        return f"{why}: dhc cannot judge this node ({fix}, then label the node {self.keys.request}=recheck)"

    def _unsupported(self, node: dict[str, Any], reason: str) -> str:
        """A node dhc would check but cannot judge: out of service with the reason, never a CPU-only pass."""
        name, labels = node["metadata"]["name"], node["metadata"].get("labels") or {}
        self.unjudged.add(name)
        annotations = (node["metadata"].get("annotations") or {})
        if labels.get(self.keys.check_status) == "Incomplete" and annotations.get(self.keys.reasons) == reason \
                and self.keys.request not in labels:
            return UNSUPPORTED
        state = scheme.NodeState("Incomplete", "Unschedulable", reason)
        self.nodes[name] = patched = self.kube.patch_node(
            name, lambda n: scheme.node_ops(n, self.keys, state, drop_labels=(self.keys.request,)))
        self.kube.node_event(patched, "DeepHealthCheckUnsupported", reason, warning=True,
                             namespace=self.settings.jobs.namespace)
        log.warning("node %s: %s", name, reason)
        return UNSUPPORTED

    def _decide(self, node: dict[str, Any]) -> reconcile.Decision:
        name = node["metadata"]["name"]
        return reconcile.decide(node, reconcile.jobs_of(name, self.jobs.for_node(name)), self.keys,
                                self.settings.max_attempts, self.jobs)

    def _join(self, name: str, decision: reconcile.Decision) -> None:
        self._patch(name, scheme.joining(), decision, drop_request=True, extra={self.keys.stage: "stress"})
        self._start(name, decision)

    def _recheck(self, name: str, decision: reconcile.Decision) -> None:
        self._patch(name, scheme.joining(), decision, drop_request=True, extra={self.keys.stage: "stress"})
        self._start(name, decision)

    def _unearned(self, name: str, decision: reconcile.Decision) -> None:
        """Labelled Passed by someone else: taint it and check it, and say why in a Warning Event."""
        self.count("unearned")
        self._mark(name, decision, "InProgress", "Unschedulable", "DeepHealthCheckUnearned",
                   extra={self.keys.stage: "stress"})
        self._start(name, decision)

    def _retry(self, name: str, decision: reconcile.Decision) -> None:
        self._mark(name, decision, "InProgress", "Unschedulable", "DeepHealthCheckRetry")
        self._start(name, decision)

    def _give_up(self, name: str, decision: reconcile.Decision) -> None:
        self._mark(name, decision, "Failed", "UnschedulablePendingReplacement", "DeepHealthCheckFailed")
        self.count("verdicts", "Failed")

    def _mark(self, name: str, decision: reconcile.Decision, status: str, health: str, event: str,
              extra: dict[str, str] | None = None) -> None:
        """Set the node's state with the decision's reason, and say so in a Warning Event."""
        state = scheme.NodeState(status, health, decision.reason)
        patched = self._patch(name, state, decision, drop_request=False, extra=extra)
        self.kube.node_event(patched, event, decision.reason, warning=True, namespace=self.settings.jobs.namespace)

    def _rebatch(self, name: str, decision: reconcile.Decision) -> None:
        self._mark(name, decision, "InProgress", "Unschedulable", "DeepHealthCheckRetry",
                   extra={self.keys.stage: "stress-passed"})

    def _patch(self, name: str, state: scheme.NodeState, decision: reconcile.Decision,
               drop_request: bool, extra: dict[str, str] | None = None) -> dict[str, Any]:
        annotations = {self.keys.generation: str(decision.generation), self.keys.attempts: str(decision.attempt)}
        annotations |= extra or {}
        drop = (self.keys.request,) if drop_request else ()
        patched = self.kube.patch_node(name, lambda n: scheme.node_ops(n, self.keys, state, annotations, drop),
                                       current=self.nodes.get(name))  # the cache first: no read when it is current
        self.nodes[name] = patched
        return patched

    def _start(self, name: str, decision: reconcile.Decision) -> None:
        node = self.nodes[name]
        itype = node["metadata"]["labels"][INSTANCE_TYPE_LABEL]  # reconcile judged only known types
        limits, group = self._type(itype), self.group(node)
        jobs = replace(self.settings.jobs, profile=group.profile, connectivity=group.connectivity)
        manifest = job_manifest(name, decision.generation, decision.attempt, itype, limits.gpus, limits.efa,
                                self._deadline(itype, group.profile), self.keys, jobs, _allocatable(node))
        if self.kube.create_job(manifest):
            self.count("jobs", manifest["metadata"]["annotations"][STAGE_ANNOTATION])
        self.jobs.setdefault(manifest["metadata"]["name"], manifest)  # until the watch reports it

    def _type(self, itype: str) -> Any:
        return self.thresholds.resolve(itype, self.settings.jobs.profile).instance_type

    def _deadline(self, itype: str, profile: str, suite: str | None = None) -> int:
        """The Job's activeDeadlineSeconds: every timeout of the suite's checks for this type, plus a margin."""
        limits = self.thresholds.resolve(itype, profile)
        prefix = {name: f"{key}." for key, name in SUITES.items()}[suite or self.settings.jobs.suite]
        checks = [c for c in CATALOGUE if c.startswith(prefix) and not limits.check(c).skip]
        return int(sum(limits.timing(c).timeout_s for c in checks) + self.settings.deadline_margin_s)


__all__ = ["Controller", "ControllerSettings", "K8sNotFound"]
