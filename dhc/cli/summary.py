"""The short human summary printed at the end of ``dhc run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from dhc.sinks.logline import one_line


def print_summary(document: dict[str, Any], report_path: Path, stream: TextIO) -> None:
    verdict, run, instance = document["verdict"], document["run"], document["instance"]
    action = f" (action: {verdict['action']})" if verdict["action"] != "None" else ""
    lines = [
        f"dhc verdict: {verdict['status']}{action}",
        f"instance {instance['instance_id']['value']} ({document['thresholds']['instance_type']}, "
        f"region {instance['region']['value'] or 'unknown'}), profile {run['profile']}, "
        f"{len(document['checks'])} check(s) in {run['duration_s']:.1f} s",
    ]
    if run["ended_by"]:
        lines.append(f"run ended early: {run['ended_by']}")
    for check in document["checks"]:
        why = f"  {check['reason']}" if check["status"] != "Passed" and check["reason"] else ""
        lines.append(f"  {check['status']:<10} {check['check']:<24} {check['duration_s']:>7.1f} s{why}")
    for reason in verdict["reasons"]:
        if reason["status"] == "Failed":
            lines.append(f"  fault: {reason['message']} -> {reason['action']}")
    lines.append(f"report: {report_path}")
    page = report_path.with_name("report.html")
    if page.exists():
        lines.append(f"page:   {page}")
    stream.write("\n".join(one_line(line) for line in lines) + "\n")  # data never starts a line
    stream.flush()
