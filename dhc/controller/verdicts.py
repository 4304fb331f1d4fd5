"""A finished Job's verdict, read from its pods, and written onto the node by the controller alone.

The check pods have no API access: each hands its verdict over in its termination message. The
controller trusts a pod's verdict for a node only when the pod belongs to the Job (owner UID), ran
on that node by the pod's own ``spec.nodeName`` (never by what the pod says), ended with the exit
code its verdict implies, and judged the instance type and stage the Job asked for. Anything else
is no verdict, with the reason a person needs, and the node's try counts as Incomplete.

A Passed label counts only beside the record the controller writes with it (``record``): the Job,
the pod, the node, the run id, the check's generation and a digest of the message it came from; a
record from an earlier generation (the node was re-checked since) earns nothing. The admission policy keeps
everyone but the controller from writing that annotation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from dhc.controller.jobs import CONTAINER, STAGE_ANNOTATION, TYPE_ANNOTATION
from dhc.instance import parse_provider_id
from dhc.k8s import message, scheme
from dhc.k8s.client import Kube

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods (Kubernetes 1.27+)
_SEVERITY = {"Passed": 0, "Incomplete": 1, "Failed": 2}


@dataclass(frozen=True)
class Outcome:
    verdict: message.PodVerdict | None = None
    pod: str = ""
    digest: str = ""
    why: str = ""  # no verdict (or an Incomplete one): what a person needs to know


def read(kube: Kube, job: dict[str, Any], node: str) -> Outcome:
    """The verdict for ``node`` among the pods of ``job``."""
    meta = job["metadata"]
    pods = kube.list_pods(meta["namespace"], f"{JOB_NAME_LABEL}={meta['name']}", f"spec.nodeName={node}")
    return collect(pods, job, node)


def collect(pods: list[dict[str, Any]], job: dict[str, Any], node: str) -> Outcome:
    """The worst trusted verdict of the Job's pods on ``node``; otherwise why there is none."""
    outcomes = [judge_pod(p, job, node) for p in pods if (p.get("spec") or {}).get("nodeName") == node]
    trusted = [o for o in outcomes if o.verdict is not None]
    if trusted:
        worst = max(trusted, key=lambda o: _SEVERITY[o.verdict.status])  # type: ignore[union-attr]
        return worst if worst.verdict.status != "Incomplete" else Outcome(why=_incomplete(worst))  # type: ignore[union-attr]
    whys = [o.why for o in outcomes]
    return Outcome(why="; ".join(whys) if whys else f"no pod of Job {job['metadata']['name']} ran on node {node}")


def judge_pod(pod: dict[str, Any], job: dict[str, Any], node: str) -> Outcome:
    name = pod["metadata"]["name"]
    uid = job["metadata"].get("uid")
    owners = [r.get("uid") for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")]
    if uid and uid not in owners:
        return Outcome(why=f"pod {name} is not owned by Job {job['metadata']['name']}: ignored")
    status = next((c for c in (pod.get("status") or {}).get("containerStatuses") or [] if c.get("name") == CONTAINER),
                  {})
    ended = (status.get("state") or {}).get("terminated")
    if not ended:
        return Outcome(why=f"pod {name} on {node} has not ended (phase {(pod.get('status') or {}).get('phase')})")
    text, code = ended.get("message") or "", ended.get("exitCode")
    exited = f"exited {code} ({ended.get('reason') or 'no reason given'})"
    try:
        verdict = message.decode(text)
    except message.MessageError as exc:
        return Outcome(why=f"pod {name} on {node} {exited} without a verdict: {exc}")
    doubt = _doubt(verdict, code, job)
    if doubt:
        return Outcome(why=f"pod {name} on {node} {exited}: {doubt}; its verdict is not used")
    return Outcome(verdict, name, "sha256:" + hashlib.sha256(text.encode()).hexdigest())


def _doubt(verdict: message.PodVerdict, code: Any, job: dict[str, Any]) -> str:
    annotations = job["metadata"].get("annotations") or {}
    if code != message.EXIT_CODES[verdict.status]:
        return f"it says {verdict.status}, which exits {message.EXIT_CODES[verdict.status]}"
    asked = annotations.get(TYPE_ANNOTATION)
    if asked and _plain(verdict.instance_type) != _plain(asked):
        return f"it judged instance type {verdict.instance_type!r}, the Job asked for {asked!r}"
    stage = {"connectivity": "final"}.get(annotations.get(STAGE_ANNOTATION, ""), annotations.get(STAGE_ANNOTATION))
    if stage and verdict.stage != stage:
        return f"it is a {verdict.stage!r} verdict, the Job asked for {stage!r}"
    return ""


def _plain(instance_type: str) -> str:
    return instance_type.removeprefix("ml.")


def _incomplete(outcome: Outcome) -> str:
    verdict = outcome.verdict
    assert verdict is not None
    reasons = "; ".join(r.message for r in verdict.reasons[:3]) or "no reason given"
    return f"the check in pod {outcome.pod} came out Incomplete: {reasons}"


def record(job: str, outcome: Outcome, node: str, generation: int) -> str:
    """The controller's record of the run behind a verdict: what makes a Passed label count."""
    verdict = outcome.verdict
    assert verdict is not None
    return json.dumps({"status": verdict.status, "stage": verdict.stage, "node": node, "job": job, "pod": outcome.pod,
                       "run_id": verdict.run_id, "generation": generation, "digest": outcome.digest},
                      separators=(",", ":"))


def earned(node: dict[str, Any], keys: scheme.Keys) -> str:
    """'' when the node's Passed label stands on the controller's record of a final pass; else why not."""
    meta = node.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(keys.record)
    if not text:
        return "labelled Passed without dhc's record of a check that earned it"
    try:
        rec = json.loads(text)
    except ValueError:
        return f"labelled Passed, but dhc's record is not JSON: {text[:60]!r}"
    if not isinstance(rec, dict) or (rec.get("status"), rec.get("stage"), rec.get("node")) != ("Passed", "final",
                                                                                                 meta.get("name")):
        return f"labelled Passed, but dhc's record is of another verdict or node: {text[:120]!r}"
    current = (meta.get("annotations") or {}).get(keys.generation)
    if current is None or str(rec.get("generation")) != current:
        # a pass from an earlier check: the node has been re-checked since (and may have failed it)
        return f"labelled Passed, but dhc's record is of check generation {rec.get('generation')!r}, " \
               f"the node's check is at generation {current!r}: a stale pass"
    return ""


def state_of(verdict: message.PodVerdict, final: bool, instance_id: str | None) -> scheme.NodeState:
    """The node state a trusted verdict asks for: the scheme's one mapping, as for a report written on the node."""
    return scheme.state_for(verdict.status, verdict.action, final, verdict.reasons_text(instance_id))


def apply(kube: Kube, keys: scheme.Keys, node: str, job: dict[str, Any], outcome: Outcome, generation: int,
          events_namespace: str) -> dict[str, Any]:
    """Write a trusted verdict onto the node, with the record, and say so in an Event."""
    verdict = outcome.verdict
    assert verdict is not None
    final = (job["metadata"].get("annotations") or {}).get(STAGE_ANNOTATION) != "stress"
    extra = {keys.record: record(job["metadata"]["name"], outcome, node, generation)}
    if not final and verdict.status == "Passed":
        extra[keys.stage] = "stress-passed"

    def change(current: dict[str, Any]) -> list[dict[str, Any]]:
        state = state_of(verdict, final, _instance_id(current))
        return scheme.node_ops(current, keys, state, extra)

    patched = kube.patch_node(node, change)
    summary = f"deep health check {verdict.status} on {_instance_id(patched) or verdict.instance_id} " \
              f"(run {verdict.run_id}, pod {outcome.pod})"
    if verdict.reasons:
        summary += ": " + "; ".join(r.message for r in verdict.reasons[:3])
    if (mark := scheme.agent_mark(patched, keys)) and verdict.status == "Passed":
        summary += f"; the node stays {mark}: dhc agent marked it during the check ({keys.agent_reasons})"
    reason = f"DeepHealthCheck{verdict.status}" if final else f"DeepHealthCheckStress{verdict.status}"
    kube.node_event(patched, reason, summary, warning=verdict.status != "Passed", namespace=events_namespace)
    return patched


def _instance_id(node: dict[str, Any]) -> str | None:
    provider_id = (node.get("spec") or {}).get("providerID")
    try:
        return parse_provider_id(provider_id)[0] if provider_id else None
    except ValueError:
        return None
