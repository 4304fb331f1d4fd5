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

_ACTION_WORDS = {"Replace": "Replace the Instance. ", "Reboot": "Reboot the Instance. ", "None": ""}
_DIRECTION = {"min": ("less", "minimum"), "max": ("more", "maximum"), "equals": ("other", "exact")}


def verdict_lines(document: dict[str, Any]) -> list[dict[str, Any]]:
    instance = document["instance"]
    common = {
        "instance_id": instance["instance_id"]["value"], "instance_type": instance["instance_type"]["value"],
        "region": instance["region"]["value"], "node": instance["node_name"]["value"],
        "run_id": document["run"]["run_id"],
    }
    where = f"Region: {common['region'] or 'unknown'}, InstanceType: {common['instance_type']}."
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = []
    for reason in document["verdict"]["reasons"]:
        failed = reason["status"] == "Failed"
        device = reason.get("device")
        head = (f"Encountered FaultyInstance. {_ACTION_WORDS[reason['action']]}{where}" if failed
                else f"Deep health check incomplete. {where}")
        lines.append({
            "level": "error" if failed else "warning", "ts": ts,
            "msg": f"{head} {'ERROR' if failed else 'REASON'}:{_detail(reason)}",
            **common, "check": reason["check"], "status": reason["status"],
            "device": _device_label(device), "device_uuid": device and device.get("uuid"),
            "device_pci_bus_id": device and device.get("pci_bus_id"),
            "metric": reason.get("metric"), "value": reason.get("value"), "limit": reason.get("limit"),
            "unit": reason.get("unit"), "comparison": reason.get("comparison"), "action": reason["action"],
        })
    return lines


def summary_line(document: dict[str, Any]) -> dict[str, Any]:
    """One ``info`` line with the verdict, for sinks where a passing node should be seen too."""
    instance, verdict = document["instance"], document["verdict"]
    counts = {status: sum(c["status"] == status for c in document["checks"])
              for status in ("Passed", "Failed", "Incomplete", "Skipped")}
    return {
        "level": "info", "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "msg": f"Deep health check {verdict['status']}. Region: {instance['region']['value'] or 'unknown'}, "
               f"InstanceType: {instance['instance_type']['value']}. "
               + ", ".join(f"{n} {s.lower()}" for s, n in counts.items()),
        "instance_id": instance["instance_id"]["value"], "instance_type": instance["instance_type"]["value"],
        "region": instance["region"]["value"], "node": instance["node_name"]["value"],
        "run_id": document["run"]["run_id"], "status": verdict["status"], "action": verdict["action"],
    }


def write_lines(lines: list[dict[str, Any]], stream: TextIO, log_file: Path | None = None) -> None:
    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    stream.write(text)
    stream.flush()
    if log_file is not None and text:
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # as every run file
        with os.fdopen(fd, "a", encoding="utf-8") as handle:
            os.fchmod(fd, 0o644)
            handle.write(text)


def _detail(reason: dict[str, Any]) -> str:
    comparison = reason.get("comparison")
    if reason.get("metric") and comparison in _DIRECTION:
        relation, bound = _DIRECTION[comparison]
        on = f" on {_device_label(reason.get('device'))}" if reason.get("device") else ""
        return (f"{reason['check']} {reason['metric']} has {relation} than threshold: Expected {bound} "
                f"threshold :{_g(reason.get('limit'))} {reason['unit']},Measured{on}: "
                f"{reason.get('non_finite') or _g(reason.get('value'))}")
    return reason["message"]


def _g(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: object) -> str:
    """``text`` with every line break and control character escaped (``\\n``), so data never starts a line."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def _device_label(device: dict[str, Any] | None) -> str | None:
    if not device:
        return None
    return f"GPU {device['index']}" if device["kind"] == "gpu" else device["kind"]
