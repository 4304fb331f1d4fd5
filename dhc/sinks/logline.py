"""JSON log lines for a verdict, in the shape HyperPod users already parse.

Every line is one JSON object on one physical line: ``json.dumps`` escapes newlines and, with
``ensure_ascii``, U+2028/U+2029, so no value (an instance ID, a reason) can start a forged line.
One ``error`` line per failure (``Encountered FaultyInstance. Replace the Instance. ...``), one
``warning`` line per reason a check could not decide, plus machine-readable fields.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from dhc.model import Finding, Status
from dhc.model.codec import non_finite
from dhc.model.report import Report

_ACTION_WORDS = {"Replace": "Replace the Instance. ", "Reboot": "Reboot the Instance. ", "None": ""}
_DIRECTION = {"min": ("less", "minimum"), "max": ("more", "maximum"), "equals": ("other", "exact")}


def verdict_lines(typed: Report) -> list[dict[str, Any]]:
    common = _common(typed)
    where = f"Region: {common['region'] or 'unknown'}, InstanceType: {common['instance_type']}."
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = []
    for reason in typed.verdict.reasons:
        failed = reason.status is Status.FAILED
        device = reason.device
        head = (f"Encountered FaultyInstance. {_ACTION_WORDS[reason.action]}{where}" if failed
                else f"Deep health check incomplete. {where}")
        lines.append({
            "level": "error" if failed else "warning", "ts": ts,
            "msg": f"{head} {'ERROR' if failed else 'REASON'}:{_detail(reason)}",
            **common, "check": reason.check, "status": reason.status.value,
            "device": device and device.label(ids=False), "device_uuid": device and device.uuid,
            "device_pci_bus_id": device and device.pci_bus_id, "metric": reason.metric,
            "value": None if non_finite(reason.value) else reason.value, "limit": reason.limit, "unit": reason.unit,
            "comparison": reason.comparison and reason.comparison.value, "action": reason.action.value,
        })
    return lines


def _common(typed: Report) -> dict[str, Any]:
    instance = typed.instance
    return {"instance_id": instance.instance_id.value, "instance_type": instance.instance_type.value,
            "region": instance.region.value, "node": instance.node_name.value, "run_id": typed.run.run_id}


def summary_line(typed: Report) -> dict[str, Any]:
    """One ``info`` line with the verdict, for sinks where a passing node should be seen too."""
    common, verdict = _common(typed), typed.verdict
    counts = ", ".join(f"{typed.count(s)} {s.value.lower()}" for s in Status)
    return {
        "level": "info", "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "msg": f"Deep health check {verdict.status}. Region: {common['region'] or 'unknown'}, "
               f"InstanceType: {common['instance_type']}. {counts}",
        **common, "status": verdict.status.value, "action": verdict.action.value,
    }


def write_lines(lines: list[dict[str, Any]], stream: TextIO | None, log_file: Path | None = None) -> None:
    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    if stream is not None:
        stream.write(text)
        stream.flush()
    if log_file is not None and text:
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # as every run file
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            os.fchmod(fd, 0o644)
            handle.write(text)


def _detail(reason: Finding) -> str:
    if reason.metric and reason.comparison is not None:
        relation, bound = _DIRECTION[reason.comparison]
        on = f" on {reason.device.label(ids=False)}" if reason.device else ""
        return (f"{reason.check} {reason.metric} has {relation} than threshold: Expected {bound} "
                f"threshold :{_g(reason.limit)} {reason.unit},Measured{on}: "
                f"{non_finite(reason.value) or _g(reason.value)}")
    return reason.message


def _g(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: object) -> str:
    """``text`` with every line break and control character escaped (``\\n``), so data never starts a line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))

