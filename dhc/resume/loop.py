"""Job auto-resume's loop: watch the pods of opted-in jobs, tell node faults from the job's own failures,
suspend an interrupted job, resume it once enough Schedulable nodes exist, give up at its retry limit.

Runs beside the node controller (``dhc controller --job-auto-resume``) or alone (``dhc resume``); it
shares nothing with it but the API server and the node labels. One watch per served kind sees each
pod's failure before its operator deletes it (the training operator deletes a Failed pod at once with
restartPolicy OnFailure/ExitCode); a periodic pass (``poll_s``) judges those failures and drives each
job's record (dhc.resume.state), so a missed watch event costs one pass, never a double restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from dhc.k8s import workloads
from dhc.k8s.client import K8sConflict, K8sError, K8sGone, K8sNotFound, Kube
from dhc.k8s.scheme import parse_time
from dhc.k8s.workloads import JOB, JOBSET, KINDS, Kind
from dhc.resume import faults, state
from dhc.resume.capacity import Capacity
from dhc.resume.decide import Decisions
from dhc.resume.metrics import Recoveries
from dhc.resume.state import Candidate, Record, ResumeKeys, ResumeSettings

log = logging.getLogger("dhc.resume")
KUEUE = "kueue.x-k8s.io/queue-name"  # a job Kueue admits: its suspend belongs to Kueue


class Resumer(Decisions):
    def __init__(self, kube: Kube, settings: ResumeSettings):
        self.kube, self.settings, self.keys = kube, settings, ResumeKeys(settings.prefix)
        self.kinds: list[Kind] = []
        self.unserved: list[str] = []  # kinds reported once as not served, then ignored
        self.candidates: dict[str, Candidate] = {}  # pod uid -> a failure not judged yet
        self.judged: dict[str, None] = {}  # pod uids judged already (the newest 10,000): a later DELETED is no news
        self.pods: dict[str, tuple[Kind, dict[str, Any]]] = {}  # pod uid -> (its job's kind, the pod as last seen)
        self.resuming: dict[tuple[str, str, str], datetime] = {}  # restarted job -> when it was interrupted
        self.tally: Counter = Counter()  # resumed, given-up, left-alone (node healthy), too-old (fault came later)
        self.waiting = 0
        self.passes = 0  # finished passes: tests wait on it for a positive signal
        self.listed: set[str] = set()  # kinds whose pods were listed and are being watched
        self.recoveries = Recoveries()  # seconds from interruption to every pod Running again
        self.faulty: dict[str, datetime] = {}  # node -> when it turned faulty, as this controller can tell
        self.healthy: set[str] = set()  # nodes of pending failures seen healthy since
        self.said: set[tuple[str, ...]] = set()  # (kind, error) list failures and Kueue jobs, logged once each
        self.unsupported: set[str] = set()  # kinds whose API dropped the suspend
        self.lock = threading.Lock()

    # -- running ---------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: discover the kinds (retried while the API cannot answer), watch, pass every poll_s.
        A pass that fails is logged and the next one tries again: the loop never dies with the controller up."""
        while not self._discovered(stop):
            stop.wait(5.0)
        threads = [threading.Thread(target=self._watch, args=(kind, stop), daemon=True, name=f"resume-{kind.plural}")
                   for kind in self.kinds]
        for thread in threads:
            thread.start()
        while not stop.wait(self.settings.poll_s):
            try:
                self.step()
            except K8sError as exc:
                log.warning("job auto-resume pass failed (%s); next pass in %.0f s", exc, self.settings.poll_s)
            except Exception:  # an object no rule here foresaw: said with its stack, never the loop's end
                log.exception("job auto-resume pass failed; next pass in %.0f s", self.settings.poll_s)

    def _discovered(self, stop: threading.Event) -> bool:
        try:
            served = [kind for kind in KINDS if kind is JOB or workloads.served(self.kube, kind)]
        except K8sError as exc:
            log.warning("job auto-resume: cannot ask which kinds the cluster serves (%s); asking again in 5 s", exc)
            return stop.is_set()
        self.kinds = served
        for kind in KINDS:
            if kind not in served:
                self._unserved(kind)
        return True

    def _unserved(self, kind: Kind) -> None:
        if kind.kind not in self.unserved:
            self.unserved.append(kind.kind)
            log.warning("job auto-resume: the cluster does not serve %s (%s); %s jobs are ignored", kind.plural,
                        kind.api_version, kind.kind)
        if kind in self.kinds:
            self.kinds.remove(kind)

    def _watch(self, kind: Kind, stop: threading.Event) -> None:
        version = ""
        while not stop.is_set():
            try:
                if not version:
                    items, version = workloads.pods(self.kube, kind)
                    for pod in items:
                        self._observe(kind, "ADDED", pod)
                    self.listed.add(kind.kind)
                for event_type, pod in workloads.watch_pods(self.kube, kind, version, self.settings.watch_timeout_s):
                    version = (pod.get("metadata") or {}).get("resourceVersion") or version
                    self._observe(kind, event_type, pod)
                    if stop.is_set():
                        return
            except K8sGone:
                version = ""
            except K8sError as exc:
                log.info("watch pods of %s interrupted (%s); resuming", kind.plural, exc)
                time.sleep(0.5)
            except Exception:  # a pod no rule here foresaw: list again rather than stop watching
                log.exception("watch pods of %s failed; listing again", kind.plural)
                version = ""
                time.sleep(1.0)

    def _observe(self, kind: Kind, event_type: str, pod: dict[str, Any]) -> None:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        uid, job = meta.get("uid", ""), (meta.get("labels") or {}).get(kind.pod_label)
        if kind is JOB and JOBSET.pod_label in (meta.get("labels") or {}):
            return  # a JobSet's child Job's pod: its JobSet's watch judges it
        with self.lock:
            previous = (self.pods.get(uid) or (kind, None))[1]
            if event_type == "DELETED":
                self.pods.pop(uid, None)
            else:
                self.pods[uid] = (kind, pod)
            if not job or not spec.get("nodeName"):
                return
            for sign in faults.signs(previous, pod, event_type):
                if sign.key not in self.candidates and sign.key not in self.judged:
                    self.candidates[sign.key] = Candidate(
                        kind, meta.get("namespace", ""), job, meta.get("name", ""), sign.key, spec["nodeName"],
                        sign.reason, sign.at, parse_time(meta.get("creationTimestamp")), sign.deletion,
                        datetime.now(UTC))

    # -- one pass --------------------------------------------------------------------------------------
    def step(self) -> None:
        """One pass: judge the failures seen, drive every waiting job; nodes are listed only when needed."""
        jobs, broken, others = self._opted_in_jobs()
        for kind, obj in others:  # opted out while waiting: let go
            self._guarded(kind, obj, lambda o, k=kind: self._opted_out(k, o))
        waiting = [(kind, obj) for kind, obj in jobs.values() if Record.of(obj, self.keys).phase == "waiting"]
        self.waiting = len(waiting)  # as listed at the start of the pass
        if self.candidates or waiting:
            nodes = {n["metadata"]["name"]: n for n in self.kube.list_nodes()[0]}
            self._judge(jobs, nodes, broken)
            capacity = Capacity(nodes, self.keys, self._busy(jobs))
            for kind, obj in waiting:
                self._guarded(kind, obj, lambda o, k=kind: self._wait_or_restart(k, o, capacity))
        self._running_again(jobs, broken)
        self.passes += 1

    def _opted_in_jobs(self) -> tuple[dict[tuple[str, str, str], tuple[Kind, dict[str, Any]]], set[str], list[Any]]:
        """(opted-in jobs by key, kinds whose list failed this pass, waiting jobs no longer opted in)."""
        jobs: dict[tuple[str, str, str], tuple[Kind, dict[str, Any]]] = {}
        broken, others = set(), []
        for kind in list(self.kinds):
            try:
                found = workloads.list_all(self.kube, kind)
            except K8sNotFound:  # its CRD was removed since
                self._unserved(kind)
                continue
            except K8sError as exc:  # one kind's 403/500 never stops the others
                broken.add(kind.kind)
                self._once((kind.kind, str(exc.status)), "job auto-resume: cannot list %s (%s); its jobs wait for "
                           "the next pass, the other kinds go on", kind.plural, exc)
                continue
            for obj in found:
                meta = obj.get("metadata") or {}
                if not state.opted_in(obj, self.keys):
                    others += [(kind, obj)] if Record.of(obj, self.keys).phase == "waiting" else []
                elif KUEUE in (meta.get("labels") or {}):
                    self._once((kind.kind, meta.get("namespace", ""), meta.get("name", ""), "kueue"), "job auto-resume: "
                               "%s %s/%s is queued by Kueue (%s): its suspend is Kueue's, so dhc leaves it alone",
                               kind.kind, meta.get("namespace"), meta.get("name"), KUEUE)
                else:
                    jobs[(kind.kind, meta["namespace"], meta["name"])] = (kind, obj)
        return jobs, broken, others

    def _once(self, key: tuple[str, ...], message: str, *args: Any) -> None:
        if key not in self.said:
            self.said.add(key)
            log.warning(message, *args)

    def _judge(self, jobs: dict[tuple[str, str, str], Any], nodes: dict[str, dict[str, Any]], broken: set[str]) -> None:
        """A failure counts when its node was (or became) faulty within window_s of it, as this controller saw."""
        now = datetime.now(UTC)
        with self.lock:
            candidates = list(self.candidates.values())
        for cand in candidates:
            if cand.kind.kind in broken:
                continue  # its jobs could not be listed: judged next pass
            obj = (jobs.get((cand.kind.kind, cand.namespace, cand.job)) or (None, None))[1]
            fault = state.node_fault(nodes.get(cand.node), self.keys)
            counts = bool(fault) and (self._faulty_since(cand, nodes.get(cand.node), now) - cand.at
                                      ).total_seconds() <= self.settings.window_s
            if not fault:
                self.healthy.add(cand.node)
            expired = (now - cand.at).total_seconds() > self.settings.window_s
            if obj is not None and counts:
                self._guarded(cand.kind, obj, lambda o, c=cand, f=fault: self._interrupt(c, o, f))
            elif obj is not None and expired and not cand.deletion:
                self._left_alone(cand, fault)
            if obj is None or counts or expired:
                self._judged(cand.uid)
        pending = {c.node for c in self.candidates.values()}
        self.faulty = {n: t for n, t in self.faulty.items() if n in pending and state.node_fault(nodes.get(n), self.keys)}
        self.healthy &= pending

    def _left_alone(self, cand: Candidate, fault: str) -> None:
        """A failure that is not this node's fault: the node stayed healthy, or turned faulty too long after it."""
        why = "too old to be this fault (%s, more than %.0f s later)" if fault else "healthy%s within %.0f s of it"
        log.info("pod %s/%s failed on node %s (%s), " + why + ": the job's own restartPolicy handles it",
                 cand.namespace, cand.pod, cand.node, cand.reason, fault, self.settings.window_s)
        self.tally["too-old" if fault else "left-alone"] += 1

    def _faulty_since(self, cand: Candidate, node: dict[str, Any] | None, now: datetime) -> datetime:
        """When the node turned faulty: its NotReady transition, else now if this controller saw it healthy since
        the failure was seen (passes look every poll_s), else no later than when the failure was seen."""
        if cand.node not in self.faulty:
            ready = [c for c in ((node or {}).get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
            changed = parse_time(ready[-1].get("lastTransitionTime")) if ready and ready[-1].get("status") != "True" \
                else None
            first = now if cand.node in self.healthy else min(now, cand.seen or now)
            self.faulty[cand.node] = min(changed, first) if changed else first
        return self.faulty[cand.node]

    def _judged(self, key: str) -> None:
        with self.lock:
            self.candidates.pop(key, None)  # judged: a node fault, or the job's own failure
            self.judged[key] = None
            while len(self.judged) > 10_000:
                self.judged.pop(next(iter(self.judged)))

    def _busy(self, jobs: dict[tuple[str, str, str], Any]) -> dict[str, set[Any]]:
        """Node -> the opted-in jobs with a live pod on it (Terminating pods hold nothing)."""
        busy: dict[str, set[Any]] = {}
        with self.lock:
            for kind, pod in self.pods.values():
                meta = pod.get("metadata") or {}
                key = (kind.kind, meta.get("namespace"), (meta.get("labels") or {}).get(kind.pod_label))
                node = (pod.get("spec") or {}).get("nodeName")
                if node and key in jobs and faults.live(pod):
                    busy.setdefault(node, set()).add(key)
        return busy

    def _guarded(self, kind: Kind, obj: dict[str, Any], decide: Any) -> None:
        """Apply ``decide(obj) -> (patch, after)`` guarded by the job's version; on 409 re-read and decide again."""
        for _ in range(6):
            decision = decide(obj)
            if decision is None:
                return
            change, after = decision
            try:
                answer = workloads.json_patch(self.kube, kind, obj, change) if isinstance(change, list) else \
                    workloads.patch(self.kube, kind, obj, change)
            except K8sConflict:
                try:
                    obj = workloads.read(self.kube, kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
                except K8sNotFound:
                    return  # deleted meanwhile: forgotten
                continue
            except K8sNotFound:
                return
            after(answer if isinstance(answer, dict) else {})
            return
        log.warning("job %s/%s kept changing; trying again next pass", obj["metadata"]["namespace"],
                    obj["metadata"]["name"])

    def _running_again(self, jobs: dict[tuple[str, str, str], tuple[Kind, dict[str, Any]]], broken: set[str]) -> None:
        """Restarted jobs whose pods all run again (Terminating ones do not count): the time since the interruption
        goes to the histogram, and the job is forgotten here."""
        with self.lock:
            for key, interrupted in list(self.resuming.items()):
                if key[0] in broken:
                    continue
                if key not in jobs:
                    self.resuming.pop(key)  # deleted meanwhile
                    continue
                kind, obj = jobs[key]
                running = sum(1 for k, p in self.pods.values() if k is kind and faults.live(p)
                              and (p.get("status") or {}).get("phase") == "Running"
                              and (p["metadata"].get("labels") or {}).get(kind.pod_label) == key[2]
                              and p["metadata"].get("namespace") == key[1])
                if running >= state.replicas(kind, obj):
                    self.resuming.pop(key)
                    self.recoveries.add((datetime.now(UTC) - interrupted).total_seconds())

    def _event(self, kind: Kind, obj: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        try:
            workloads.event(self.kube, kind, obj, reason, message, warning)
        except K8sError as exc:  # the annotation carries the same facts
            log.warning("event %s on %s %s: %s", reason, kind.kind, obj["metadata"]["name"], exc)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"tally": dict(self.tally), "waiting": self.waiting, "recoveries": self.recoveries.snapshot()}
