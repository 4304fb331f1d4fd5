"""The verdict a check pod hands to the controller through its termination message.

Kubernetes copies the file at the container's ``terminationMessagePath`` (default
``/dev/termination-log``) into ``status.containerStatuses[].state.terminated.message`` when the
container ends, keeping at most 4096 bytes (and 12 KiB for all containers of a pod together). With
``terminationMessagePolicy: File`` an empty or missing file gives an empty message; with
``FallbackToLogsOnError`` the last log lines would stand in for it, which is why the check pod uses
``File`` and why ``decode`` accepts only a document that says it is a dhc verdict.

The message is compact JSON: status, action, stage, run id, instance, and short reasons, cut to fit.
Pure functions, no API calls: the node-side sink writes it, the controller reads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dhc.k8s.scheme import gpu_ids, reasons_annotation
from dhc.model import Action, Finding, Status
from dhc.model.choices import STAGES, not_one_of
from dhc.model.codec import ModelError, load, non_finite
from dhc.model.report import Report

MAX_BYTES = 4096
VERSION = 1
STATUSES = (Status.PASSED, Status.FAILED, Status.INCOMPLETE)  # a node verdict is never Skipped
ACTIONS = tuple(Action)
EXIT_CODES = {"Passed": 0, "Failed": 1, "Incomplete": 3}  # what `dhc run` exits with for each verdict
_REASON_KEYS = ("check", "status", "action", "metric", "value", "limit", "unit")
_MESSAGE_CHARS = 240


class MessageError(ValueError):
    """The termination message is not a dhc verdict: says what was expected and what was seen."""


@dataclass(frozen=True)
class PodVerdict:
    status: str
    action: str
    stage: str
    run_id: str
    instance_id: str
    instance_type: str
    reasons: tuple[Finding, ...]  # typed as a report's (a GPU's ids as its device)
    truncated: int = 0  # reasons left out to fit in 4096 bytes

    def reasons_text(self, instance_id: str | None = None) -> str:
        """The node annotation's JSON, as the node-side sink writes it for a report (``scheme.reasons_annotation``)."""
        return reasons_annotation(self.status, self.action, instance_id or self.instance_id, self.instance_type,
                                  self.run_id, self.reasons, self.truncated)


def encode(report: Report | dict[str, Any], stage: str) -> str:
    """The compact verdict of a run's report, at most MAX_BYTES of UTF-8."""
    typed = Report.of(report)
    verdict, instance = typed.verdict, typed.instance
    head = {"dhc": VERSION, "status": verdict.status.value, "action": verdict.action.value, "stage": stage,
            "run_id": typed.run.run_id, "instance_id": instance.instance_id.value,
            "instance_type": instance.instance_type.value}
    reasons = [_short(r) for r in verdict.reasons]
    for kept in range(len(reasons), -1, -1):
        left_out = len(reasons) - kept
        text = json.dumps(head | {"reasons": reasons[:kept]} | ({"truncated": left_out} if left_out else {}),
                          separators=(",", ":"))
        if len(text.encode()) <= MAX_BYTES:
            return text
    raise AssertionError("a verdict without reasons always fits")


def _short(reason: Finding) -> dict[str, Any]:
    value = None if non_finite(reason.value) else reason.value
    fields = (reason.check, reason.status.value, reason.action.value, reason.metric, value, reason.limit, reason.unit)
    out = {k: v for k, v in zip(_REASON_KEYS, fields, strict=True) if v is not None}
    message = reason.message
    out["message"] = message if len(message) <= _MESSAGE_CHARS else message[: _MESSAGE_CHARS - 3] + "..."
    gpu = gpu_ids(reason.device)
    if gpu:
        out["gpu"] = {k: v for k, v in gpu.items() if v is not None}
    return out


def decode(text: str | None) -> PodVerdict:
    """The verdict in a termination message; MessageError names what is wrong and the first bytes seen."""
    if not text or not text.strip():
        raise MessageError("the termination message is empty (the run wrote no verdict)")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise MessageError(f"expected a JSON dhc verdict, got {text[:60]!r}") from exc
    if not isinstance(doc, dict) or doc.get("dhc") != VERSION:
        raise MessageError(f"expected a dhc verdict (\"dhc\": {VERSION}), got {text[:60]!r}")
    return PodVerdict(status=_one_of(doc, "status", STATUSES), action=_one_of(doc, "action", ACTIONS),
                      stage=_one_of(doc, "stage", STAGES), run_id=_text(doc, "run_id"),
                      instance_id=_text(doc, "instance_id"), instance_type=_text(doc, "instance_type"),
                      reasons=_reasons(doc), truncated=doc.get("truncated", 0) if isinstance(doc.get("truncated"), int)
                      else 0)


def _one_of(doc: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = doc.get(key)
    if (problem := not_one_of(allowed, value)) is not None:
        raise MessageError(f"verdict {key}: {problem}")
    return str(value)


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise MessageError(f"verdict {key}: expected a non-empty string, got {value!r}")
    return value


def _reasons(doc: dict[str, Any]) -> tuple[Finding, ...]:
    reasons = doc.get("reasons")
    if not isinstance(reasons, list) or not all(isinstance(r, dict) for r in reasons):
        raise MessageError(f"verdict reasons: expected a list of objects, got {str(reasons)[:60]!r}")
    return tuple(_finding(r, i) for i, r in enumerate(reasons))


def _finding(reason: dict[str, Any], index: int) -> Finding:
    """A short reason read back as the model's Finding; MessageError names the key that does not fit."""
    data = {k: v for k, v in reason.items() if k in (*_REASON_KEYS, "message")}
    gpu = reason.get("gpu")
    if gpu is not None:
        data["device"] = {"kind": "gpu", **gpu} if isinstance(gpu, dict) else gpu
    try:
        return load(Finding, data, f"verdict reasons[{index}]")  # type: ignore[no-any-return]
    except ModelError as exc:
        raise MessageError(str(exc)) from exc
