"""What the controller should do for one node, from the node and its Jobs alone (pure, no API calls).

A node without dhc's status label has just joined: taint it, mark it InProgress, start a Job. So has
one with any status but without dhc's generation annotation (a status dhc never wrote), and a node
labelled Passed without the controller's record of the run that earned it in its current generation (a launch
template's ``--node-labels``, a hand edit). An InProgress node needs its current Job; a Job that
ended (``ENDED``) is read for its pods' verdict by the controller, and without one it is a try that
came out Incomplete: another try, up to the limit, then Failed (``next_try``). A Passed, Failed or
Incomplete (cannot be judged) node is left alone until someone labels it for a re-check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dhc.controller.jobs import ATTEMPT_LABEL, NODE_ANNOTATION, NODE_LABEL, node_label
from dhc.controller.verdicts import earned
from dhc.k8s.scheme import Keys

JOIN, START, RETRY, GIVE_UP, RECHECK, NOTHING = "join", "start", "retry", "give-up", "recheck", "nothing"
AWAIT_BATCH, REBATCH = "await-batch", "rebatch"  # the connectivity stage: wait for a batch; try it again
ENDED = "ended"  # the node's Job ended: read its verdict from the pods, then next_try if there is none
UNEARNED = "unearned"  # labelled Passed without dhc's record: check it as if it had just joined


@dataclass(frozen=True)
class Decision:
    kind: str
    generation: int = 1
    attempt: int = 1
    reason: str = ""
    job: str = ""  # ENDED: the Job that ended
    again: str = ""  # ENDED: RETRY or REBATCH when no verdict comes of it


def job_state(job: dict[str, Any]) -> tuple[str, str]:
    """("running" | "succeeded" | "failed", why it failed)."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "succeeded", ""
        if condition.get("type") == "Failed":
            return "failed", f"{condition.get('reason', 'Failed')}: {condition.get('message', '')}".strip(": ")
    if status.get("succeeded"):
        return "succeeded", ""
    if status.get("failed"):
        return "failed", "the check pod failed (evicted, OOM-killed or crashed)"
    return "running", ""


def decide(node: dict[str, Any], jobs: list[dict[str, Any]], keys: Keys, max_attempts: int,
           batches: dict[str, dict[str, Any]] | None = None) -> Decision:
    meta = node.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    status = labels.get(keys.check_status)
    generation, attempt = _int(annotations.get(keys.generation), 1), _int(annotations.get(keys.attempts), 1)
    if status is None or (status != "Passed" and keys.generation not in annotations):
        return Decision(JOIN, 1, 1)  # new, or registered with a status dhc did not write (Failed, Incomplete too)
    if status == "Passed" and (why := earned(node, keys)):
        return Decision(UNEARNED, generation + 1 if keys.generation in annotations else 1, 1, why)
    if status in ("Passed", "Failed", "Incomplete"):
        if labels.get(keys.request) == "recheck":
            return Decision(RECHECK, generation + 1, 1)
        return Decision(NOTHING, generation, attempt)
    stage = annotations.get(keys.stage)
    if stage == "stress-passed":
        return Decision(AWAIT_BATCH, generation, attempt)
    if stage == "connectivity":
        return _connectivity(annotations.get(keys.batch), batches or {}, generation, attempt, max_attempts)
    job = next((j for j in jobs if (j["metadata"].get("labels") or {}).get(ATTEMPT_LABEL) == f"g{generation}-a{attempt}"),
               None)
    if job is None:
        return Decision(START, generation, attempt)
    state, why = job_state(job)
    if state == "running":
        return Decision(NOTHING, generation, attempt)
    return Decision(ENDED, generation, attempt, why, job["metadata"]["name"], RETRY)


def _connectivity(batch: str | None, batches: dict[str, dict[str, Any]], generation: int, attempt: int,
                  max_attempts: int) -> Decision:
    job = batches.get(batch or "")
    if job is None:
        return next_try(Decision(ENDED, generation, attempt, "its connectivity Job is gone", "", REBATCH), "",
                        max_attempts)
    state, why = job_state(job)
    if state == "running":
        return Decision(NOTHING, generation, attempt)
    return Decision(ENDED, generation, attempt, why, job["metadata"]["name"], REBATCH)


def next_try(ended: Decision, note: str, max_attempts: int) -> Decision:
    """An ended Job without a verdict for the node: another try, or Failed once the tries are spent.

    ``note`` says why its pods gave no verdict; the Job's own failure reason comes first.
    """
    stage = "connectivity " if ended.again == REBATCH else ""
    reason = "; ".join(filter(None, (ended.reason, note))) or \
        f"the {stage}check Job ended without a verdict for the node (Incomplete)"
    if ended.attempt < max_attempts:
        return Decision(ended.again, ended.generation, ended.attempt + 1,
                        f"{stage}try {ended.attempt} of {max_attempts}: {reason}")
    return Decision(GIVE_UP, ended.generation, ended.attempt,
                    f"no {stage}verdict after {max_attempts} tries; last: {reason}")


def jobs_of(node_name: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The node's Jobs: its hashed label to find them, its full name on the Job to be sure."""
    key = node_label(node_name)
    return [j for j in jobs if (j["metadata"].get("labels") or {}).get(NODE_LABEL) == key
            and (j["metadata"].get("annotations") or {}).get(NODE_ANNOTATION) == node_name]


def _int(value: str | None, default: int) -> int:
    try:
        return max(1, int(value)) if value is not None else default
    except ValueError:
        return default
