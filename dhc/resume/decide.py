"""Job auto-resume's decisions on one job: interrupt it, keep it waiting, restart it, give up, let it go.

Each decision reads the job's record (dhc.resume.state) and returns ``(change, after)`` or None: the one
write (a merge patch, or JSON patch ops for a JobSet's list of templates) that moves the record and the
job's suspension together, and what to do once the API server accepted it, given its answer. The loop
(dhc.resume.loop) applies it guarded by the job's resourceVersion and decides again on a conflict.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from dhc.k8s.workloads import JOB, JOBSET, Kind
from dhc.resume import state
from dhc.resume.capacity import Capacity
from dhc.resume.state import Candidate, Record, before, iso, parse

log = logging.getLogger("dhc.resume")
_OWN_END = {"PyTorchJob": "its replicas' restartPolicy ended it (OnFailure, the operator's default, restarts a "
                          "failed container in place; Never or a permanent ExitCode ends the job)",
            "Job": "its backoffLimit was spent: a podFailurePolicy that ignores DisruptionTarget keeps it alive",
            "JobSet": "its failurePolicy.maxRestarts was spent"}


class Decisions:
    """The decisions of dhc.resume.loop.Resumer (its keys, settings, tally, lock, _event, _guarded)."""

    keys: Any
    settings: Any
    tally: Any
    lock: Any
    unsupported: set[str]

    def _interrupt(self, cand: Candidate, obj: dict[str, Any], fault: str) -> Any:
        record, kind = Record.of(obj, self.keys), cand.kind
        if state.finished(obj) in state.SUCCEEDED:
            return None  # it finished its work: a pod lost afterwards interrupts nothing, and it is never suspended
        started = record.restarted or str((obj.get("metadata") or {}).get("creationTimestamp") or "")
        if record.phase == "given-up" or record.seen(cand.uid) or before(cand.at, started) or \
                (cand.created is not None and before(cand.created, record.restarted)):
            return None  # already recorded, or older than the job's last (re)start: no news
        if record.phase == "waiting" and (cand.deletion or any(i.get("pod") == cand.pod and i.get("node") == cand.node
                                                                for i in record.interruptions)):
            return None  # the suspend deletes every pod: only a new failure elsewhere is news while it waits
        record.interruptions.append({"at": iso(cand.at), "pod": cand.pod, "pod_uid": cand.uid, "node": cand.node,
                                     "reason": f"{cand.reason}; {fault}"})
        said = f"pod {cand.pod} on node {cand.node}: {cand.reason}; {fault}"
        if record.phase == "waiting":  # one more node lost while it waits: recorded, the restart count unchanged
            status = ((obj.get("metadata") or {}).get("annotations") or {}).get(self.keys.status, "")
            return state.record_patch(self.keys, record, status), lambda _: self._event(
                kind, obj, "JobInterruptedByNodeFault", f"{said}, while it waits (recorded)", True)
        limit, bad_limit = state.max_retries(obj, self.keys, self.settings.default_max_retries)
        ended = state.finished(obj)
        if record.retries >= limit or ended == "Failed":
            why = f"{record.retries} of {limit} restarts used; left to its own restartPolicy" \
                if record.retries >= limit else self._own_end(kind, obj, "before dhc could suspend it")
            return self._give_up(kind, obj, record, why)
        record.phase, record.since = "waiting", iso(datetime.now(UTC))
        need = state.replicas(kind, obj)
        status = f"interrupted by a node fault; waiting for Schedulable nodes for {need} pods"
        change: Any = state.merge(state.record_patch(self.keys, record, status), state.suspend_patch(kind, True),
                                  self._selector_change(kind, obj))
        if kind is JOBSET:
            change = state.as_ops(change) + (state.selector_ops(kind, obj, self.keys) if self._may_add(kind, obj)
                                             else [])
        notes = [bad_limit] + ([f"add nodeSelector {self.keys.health}: Schedulable to the Job's manifest: a "
                                "started Job's pod template cannot change"] if kind is JOB and
                               state.missing_selector(kind, obj, self.keys) else [])
        message = (f"{said}. Suspended; waiting for Schedulable nodes for {need} pods, then restart "
                   f"{record.retries + 1} of {limit}") + "".join(f" ({note})" for note in notes if note)

        def after(answer: dict[str, Any]) -> None:
            if not state.suspended(kind, answer):
                return self._suspend_unsupported(kind, answer, record)
            self._event(kind, obj, "JobInterruptedByNodeFault", message, True)
        return change, after

    def _may_add(self, kind: Kind, obj: dict[str, Any]) -> bool:
        asked = str(((obj.get("metadata") or {}).get("annotations") or {}).get(self.keys.add_selector, "")).lower()
        return kind is not JOB and (self.settings.add_node_selector or asked == "true") and \
            state.missing_selector(kind, obj, self.keys)  # a started Job's pod template is immutable

    def _selector_change(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        return state.selector_patch(kind, obj, self.keys) if kind is not JOBSET and self._may_add(kind, obj) else {}

    def _suspend_unsupported(self, kind: Kind, answer: dict[str, Any], record: Record) -> None:
        """The API server dropped the suspend (a training-operator before v1.7 has no runPolicy.suspend): the job
        runs on, so it is not waiting; said once per kind in the log, and on the job."""
        why = f"suspend unsupported by this {kind.kind}'s API (the write was accepted without it)"
        if kind.kind not in self.unsupported:
            self.unsupported.add(kind.kind)
            log.warning("job auto-resume: %s; %s jobs are left to their own restartPolicy", why, kind.kind)
        record.phase, record.since = "running", ""
        status = f"{why}; left to its own restartPolicy"
        self._guarded(kind, answer, lambda o: (state.record_patch(self.keys, record, status), lambda _: self._event(
            kind, o, "JobAutoResumeUnsupported", f"{why}: the interruption is recorded, the job is not restarted "
            "by dhc", True)))

    def _wait_or_restart(self, kind: Kind, obj: dict[str, Any], capacity: Capacity) -> Any:
        record = Record.of(obj, self.keys)
        if record.phase != "waiting" or state.finished(obj) in state.SUCCEEDED:
            return None  # a job that succeeded is never touched
        if state.finished(obj) == "Failed":  # first: a Failed job is never resumed
            return self._give_up(kind, obj, record, self._own_end(kind, obj, "while it waited"))
        need, now = state.replicas(kind, obj), datetime.now(UTC)
        if parse(record.since) is None:
            return self._give_up(kind, obj, record, f"its record's wait start {record.since!r} is unreadable, so "
                                 "its wait counts as expired", resume=True)
        enough, have = capacity.claim(kind, obj)
        if enough:
            return self._restart(kind, obj, record, need, have, now)
        if state.age_s(record.since, now) > self.settings.wait_timeout_s:
            return self._give_up(kind, obj, record, f"Schedulable nodes for only {have} of its {need} pods after "
                                 f"{self.settings.wait_timeout_s:.0f} s", resume=True)
        status = f"waiting for Schedulable nodes for {need} pods ({have} fit now) since {record.since}"
        if ((obj.get("metadata") or {}).get("annotations") or {}).get(self.keys.status) == status:
            return None
        return state.record_patch(self.keys, record, status), lambda _: None

    def _restart(self, kind: Kind, obj: dict[str, Any], record: Record, need: int, have: int, now: datetime) -> Any:
        record.retries, record.phase, interrupted = record.retries + 1, "running", record.since
        record.since = record.restarted = iso(now)
        limit, _ = state.max_retries(obj, self.keys, self.settings.default_max_retries)
        status = f"resumed: restart {record.retries} of {limit} at {record.since}"
        change = state.merge(state.record_patch(self.keys, record, status), state.suspend_patch(kind, False))
        meta = obj["metadata"]

        def after(_: dict[str, Any]) -> None:
            with self.lock:
                self.tally["resumed"] += 1
                first = record.interruptions[-1]["at"] if record.interruptions else interrupted
                self.resuming[(kind.kind, meta["namespace"], meta["name"])] = parse(first) or now
            self._event(kind, obj, "JobResumed", f"free Schedulable nodes for all {need} pods: restart "
                        f"{record.retries} of {limit}", False)
        return change, after

    def _give_up(self, kind: Kind, obj: dict[str, Any], record: Record, why: str, resume: bool = False) -> Any:
        """Never suspends: a job at its limit fails or restarts as it would without dhc. ``resume``: a job whose
        wait ran out is un-suspended in the same write and left to its own mechanics, never suspended forever."""
        record.phase = "given-up"
        why += "; un-suspended and left to its own restartPolicy" if resume else ""
        status = f"gave up: {why}; interruptions: {record.named()}"
        change = state.merge(state.record_patch(self.keys, record, status),
                             state.suspend_patch(kind, False) if resume else {})

        def after(_: dict[str, Any]) -> None:
            with self.lock:
                self.tally["given-up"] += 1
            self._event(kind, obj, "JobAutoResumeGaveUp", f"no further restart ({why}); every interruption: "
                        f"{record.named()}", True)
        return change, after

    def _opted_out(self, kind: Kind, obj: dict[str, Any]) -> Any:
        """A waiting job whose opt-in annotation was removed: un-suspended, its record removed, said on it."""
        if Record.of(obj, self.keys).phase != "waiting" or state.opted_in(obj, self.keys):
            return None
        change = state.merge({"metadata": {"annotations": {self.keys.state: None, self.keys.status: None}}},
                             state.suspend_patch(kind, False))
        return change, lambda _: self._event(kind, obj, "JobAutoResumeOptedOut", f"{self.keys.enabled} was removed "
                                             "while the job waited: un-suspended, and dhc forgets it", False)

    def _own_end(self, kind: Kind, obj: dict[str, Any], when: str) -> str:
        ended = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Failed"
                      and c.get("status") == "True"), {})
        said = ": ".join(str(p) for p in (ended.get("reason"), ended.get("message")) if p)
        return f"the {kind.kind} ended Failed on its own {when} (its Failed condition: {said or 'no reason given'}; " \
            f"{_OWN_END[kind.kind]})"

    # supplied by the loop
    resuming: dict[Any, datetime]

    def _event(self, kind: Kind, obj: dict[str, Any], reason: str, message: str, warning: bool) -> None:
        raise NotImplementedError

    def _guarded(self, kind: Kind, obj: dict[str, Any], decide: Any) -> None:
        raise NotImplementedError
