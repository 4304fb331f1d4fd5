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
from dhc.k8s.workloads import JOB, KINDS, Kind
from dhc.resume import state
from dhc.resume.state import Candidate, Record, ResumeKeys, ResumeSettings, before, iso, parse

log = logging.getLogger("dhc.resume")
_OWN_END = {"PyTorchJob": "restartPolicy Never ends it at the first failure: use OnFailure or ExitCode",
            "Job": "its backoffLimit was spent: a podFailurePolicy that ignores DisruptionTarget keeps it alive",
            "JobSet": "its failurePolicy.maxRestarts was spent"}


class Resumer:
    def __init__(self, kube: Kube, settings: ResumeSettings):
        self.kube, self.settings, self.keys = kube, settings, ResumeKeys(settings.prefix)
        self.kinds: list[Kind] = []
        self.unserved: list[str] = []  # kinds reported once as not served, then ignored
        self.candidates: dict[str, Candidate] = {}  # pod uid -> a failure not judged yet
        self.judged: dict[str, None] = {}  # pod uids judged already (the newest 10,000): a later DELETED is no news
        self.pods: dict[str, dict[str, Any]] = {}  # pod uid -> the pod as last seen
        self.resuming: dict[tuple[str, str, str], datetime] = {}  # restarted job -> when it was interrupted
        self.tally: Counter = Counter()  # resumed, given-up/<why>
        self.waiting = 0
        self.passes = 0  # finished passes: tests wait on it for a positive signal
        self.listed: set[str] = set()  # kinds whose pods were listed and are being watched
        self.recoveries: list[float] = []  # seconds from interruption to every pod Running again
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
        with self.lock:
            if event_type == "DELETED":
                self.pods.pop(uid, None)
            else:
                self.pods[uid] = pod
            failed = state.pod_failure(pod)
            why = failed or ("deleted" if event_type == "DELETED" and
                             (pod.get("status") or {}).get("phase") != "Succeeded" else "")
            at = (state.failed_at(pod) or state.created_at(meta)) if failed else datetime.now(UTC)  # deleted: just now
            if why and job and spec.get("nodeName") and uid not in self.candidates and uid not in self.judged:
                self.candidates[uid] = Candidate(kind, meta.get("namespace", ""), job, meta.get("name", ""), uid,
                                                 spec["nodeName"], why, at)

    # -- one pass --------------------------------------------------------------------------------------
    def step(self) -> None:
        """One pass: judge the failures seen, drive every waiting job; nodes are listed only when needed."""
        jobs = self._opted_in_jobs()
        waiting = [(kind, obj) for kind, obj in jobs.values() if Record.of(obj, self.keys).phase == "waiting"]
        self.waiting = len(waiting)  # as listed at the start of the pass
        if self.candidates or waiting:
            nodes = {n["metadata"]["name"]: n for n in self.kube.list_nodes()[0]}
            self._judge(jobs, nodes)
            for kind, obj in waiting:
                self._guarded(kind, obj, lambda o, k=kind: self._wait_or_restart(k, o, nodes))
        self._running_again(jobs)
        self.passes += 1

    def _opted_in_jobs(self) -> dict[tuple[str, str, str], tuple[Kind, dict[str, Any]]]:
        jobs: dict[tuple[str, str, str], tuple[Kind, dict[str, Any]]] = {}
        for kind in list(self.kinds):
            try:
                found = workloads.list_all(self.kube, kind)
            except K8sNotFound:  # its CRD was removed since
                self._unserved(kind)
                continue
            jobs.update({(kind.kind, o["metadata"]["namespace"], o["metadata"]["name"]): (kind, o)
                         for o in found if state.opted_in(o, self.keys)})
        return jobs

    def _judge(self, jobs: dict[tuple[str, str, str], Any], nodes: dict[str, dict[str, Any]]) -> None:
        now = datetime.now(UTC)
        with self.lock:
            candidates = list(self.candidates.values())
        for cand in candidates:
            obj = (jobs.get((cand.kind.kind, cand.namespace, cand.job)) or (None, None))[1]
            fault = state.node_fault(nodes.get(cand.node), self.keys)
            if obj is not None and fault:
                self._guarded(cand.kind, obj, lambda o, c=cand, f=fault: self._interrupt(c, o, f))
            if obj is not None and not fault and (now - cand.at).total_seconds() > self.settings.window_s:
                log.info("pod %s/%s failed on healthy node %s (%s): the job's own restartPolicy handles it",
                         cand.namespace, cand.pod, cand.node, cand.reason)
                self.tally["left-alone"] += 1
            if obj is None or fault or (now - cand.at).total_seconds() > self.settings.window_s:
                with self.lock:
                    self.candidates.pop(cand.uid, None)  # judged: a node fault, or the job's own failure
                    self.judged[cand.uid] = None
                    while len(self.judged) > 10_000:
                        self.judged.pop(next(iter(self.judged)))

    def _guarded(self, kind: Kind, obj: dict[str, Any], decide: Any) -> None:
        """Apply ``decide(obj) -> (patch, after)`` guarded by the job's version; on 409 re-read and decide again."""
        for _ in range(6):
            decision = decide(obj)
            if decision is None:
                return
            change, after = decision
            try:
                workloads.patch(self.kube, kind, obj, change)
            except K8sConflict:
                try:
                    obj = workloads.read(self.kube, kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
                except K8sNotFound:
                    return  # deleted meanwhile: forgotten
                continue
            except K8sNotFound:
                return
            after()
            return
        log.warning("job %s/%s kept changing; trying again next pass", obj["metadata"]["namespace"],
                    obj["metadata"]["name"])

    # -- decisions (each returns (patch, what to do once it is applied) or None) ---------------------------
    def _interrupt(self, cand: Candidate, obj: dict[str, Any], fault: str) -> Any:
        record, kind = Record.of(obj, self.keys), cand.kind
        if record.phase != "running" or record.seen(cand.uid) or before(cand.at, record.since):
            return None  # already handled, or part of the interruption being handled
        record.interruptions.append({"at": iso(cand.at), "pod": cand.pod, "pod_uid": cand.uid, "node": cand.node,
                                     "reason": f"{cand.reason}; {fault}"})
        limit, bad_limit = state.max_retries(obj, self.keys, self.settings.default_max_retries)
        ended = state.finished(obj)
        if record.retries >= limit or ended == "Failed":
            why = f"{record.retries} of {limit} restarts used" if record.retries >= limit else \
                f"the {kind.kind} ended Failed on its own before dhc could suspend it ({_OWN_END[kind.kind]})"
            return self._give_up(kind, obj, record, why)
        record.phase, record.since = "waiting", iso(datetime.now(UTC))
        need = state.replicas(kind, obj)
        status = f"interrupted by a node fault; waiting for {need} Schedulable nodes"
        change = state.merge(state.record_patch(self.keys, record, status), state.suspend_patch(kind, True),
                             self._selector_change(kind, obj))
        notes = [bad_limit] + ([f"add nodeSelector {self.keys.health}: Schedulable to the Job's manifest: a "
                                "started Job's pod template cannot change"] if kind is JOB and
                               state.missing_selector(kind, obj, self.keys) else [])
        message = (f"pod {cand.pod} on node {cand.node}: {cand.reason}; {fault}. Suspended; waiting for {need} "
                   f"Schedulable nodes, then restart {record.retries + 1} of {limit}") + \
            "".join(f" ({note})" for note in notes if note)
        return change, lambda: self._event(kind, obj, "JobInterruptedByNodeFault", message, True)

    def _selector_change(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        allowed = self.settings.add_node_selector or \
            str(((obj.get("metadata") or {}).get("annotations") or {}).get(self.keys.add_selector, "")).lower() == "true"
        if kind is JOB or not allowed or not state.missing_selector(kind, obj, self.keys):
            return {}  # a started Job's pod template is immutable: the README says to put the selector in it
        return state.selector_patch(kind, obj, self.keys)

    def _wait_or_restart(self, kind: Kind, obj: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> Any:
        record = Record.of(obj, self.keys)
        if record.phase != "waiting":
            return None
        need, wanted = state.replicas(kind, obj), state.selector(kind, obj)
        have = sum(1 for n in nodes.values() if state.schedulable(n, self.keys, wanted))
        now = datetime.now(UTC)
        if have >= need:
            return self._restart(kind, obj, record, need, have, now)
        if state.age_s(record.since, now) > self.settings.wait_timeout_s:
            return self._give_up(kind, obj, record, f"fewer than {need} Schedulable nodes ({have}) for "
                                 f"{self.settings.wait_timeout_s:.0f} s; left suspended")
        status = f"waiting for {need} Schedulable nodes ({have} now) since {record.since}"
        if ((obj.get("metadata") or {}).get("annotations") or {}).get(self.keys.status) == status:
            return None
        return state.record_patch(self.keys, record, status), lambda: None

    def _restart(self, kind: Kind, obj: dict[str, Any], record: Record, need: int, have: int, now: datetime) -> Any:
        record.retries, record.phase, interrupted = record.retries + 1, "running", record.since
        record.since = iso(now)
        limit, _ = state.max_retries(obj, self.keys, self.settings.default_max_retries)
        status = f"resumed: restart {record.retries} of {limit} at {record.since}"
        change = state.merge(state.record_patch(self.keys, record, status), state.suspend_patch(kind, False))
        meta = obj["metadata"]

        def after() -> None:
            with self.lock:
                self.tally["resumed"] += 1
                first = record.interruptions[-1]["at"] if record.interruptions else interrupted
                self.resuming[(kind.kind, meta["namespace"], meta["name"])] = parse(first) or now
            self._event(kind, obj, "JobResumed", f"{have} Schedulable nodes for {need} pods: restart "
                        f"{record.retries} of {limit}", False)
        return change, after

    def _give_up(self, kind: Kind, obj: dict[str, Any], record: Record, why: str) -> Any:
        record.phase = "given-up"
        status = f"gave up: {why}; interruptions: {record.named()}"
        change = state.merge(state.record_patch(self.keys, record, status), state.suspend_patch(kind, True)
                             if not state.finished(obj) else {})

        def after() -> None:
            with self.lock:
                self.tally["given-up"] += 1
            self._event(kind, obj, "JobAutoResumeGaveUp", f"no further restart ({why}); every interruption: "
                        f"{record.named()}", True)
        return change, after

    def _running_again(self, jobs: dict[tuple[str, str, str], tuple[Kind, dict[str, Any]]]) -> None:
        """Restarted jobs whose pods all run again: their time from interruption goes to the histogram."""
        with self.lock:
            for key, interrupted in list(self.resuming.items()):
                if key not in jobs:
                    self.resuming.pop(key)  # deleted meanwhile
                    continue
                kind, obj = jobs[key]
                running = sum(1 for p in self.pods.values() if (p.get("status") or {}).get("phase") == "Running"
                              and (p["metadata"].get("labels") or {}).get(kind.pod_label) == key[2]
                              and p["metadata"].get("namespace") == key[1])
                if running >= state.replicas(kind, obj):
                    self.resuming.pop(key)
                    self.recoveries.append((datetime.now(UTC) - interrupted).total_seconds())

    def _event(self, kind: Kind, obj: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        try:
            workloads.event(self.kube, kind, obj, reason, message, warning)
        except K8sError as exc:  # the annotation carries the same facts
            log.warning("event %s on %s %s: %s", reason, kind.kind, obj["metadata"]["name"], exc)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"tally": dict(self.tally), "waiting": self.waiting, "recoveries": list(self.recoveries)}
