"""What the controller should do for one node, from the node and its Jobs alone (pure, no API calls).

A node without dhc's status label has just joined: taint it, mark it InProgress, start a Job. An
InProgress node needs its current Job; a Job that ended without a verdict on the node is a try
that came out Incomplete: another try, up to the limit, then Failed. A Passed or Failed node is
left alone until someone labels it for a re-check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dhc.controller.jobs import ATTEMPT_LABEL, NODE_LABEL
from dhc.k8s.scheme import Keys, label_value

JOIN, START, RETRY, GIVE_UP, RECHECK, NOTHING = "join", "start", "retry", "give-up", "recheck", "nothing"
AWAIT_BATCH, REBATCH = "await-batch", "rebatch"  # the connectivity stage: wait for a batch; try it again


@dataclass(frozen=True)
class Decision:
    kind: str
    generation: int = 1
    attempt: int = 1
    reason: str = ""


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
    if status is None:
        return Decision(JOIN, 1, 1)
    if status in ("Passed", "Failed"):
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
    return _after(state, why, "", RETRY, generation, attempt, max_attempts)


def _connectivity(batch: str | None, batches: dict[str, dict[str, Any]], generation: int, attempt: int,
                  max_attempts: int) -> Decision:
    job = batches.get(batch or "")
    state, why = job_state(job) if job is not None else ("gone", "its connectivity Job is gone")
    return _after(state, why, "connectivity ", REBATCH, generation, attempt, max_attempts)


def _after(state: str, why: str, stage: str, again: str, generation: int, attempt: int, max_attempts: int) -> Decision:
    """A Job that ended without a verdict on the node: another try, or Failed once the tries are spent."""
    if state == "running":
        return Decision(NOTHING, generation, attempt)
    reason = why or f"the {stage}check Job ended without writing a verdict on the node (Incomplete)"
    if attempt < max_attempts:
        return Decision(again, generation, attempt + 1, f"{stage}try {attempt} of {max_attempts}: {reason}")
    return Decision(GIVE_UP, generation, attempt, f"no {stage}verdict after {max_attempts} tries; last: {reason}")


def jobs_of(node_name: str, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    key = label_value(node_name)
    return [j for j in jobs if (j["metadata"].get("labels") or {}).get(NODE_LABEL) == key]


def _int(value: str | None, default: int) -> int:
    try:
        return max(1, int(value)) if value is not None else default
    except ValueError:
        return default
