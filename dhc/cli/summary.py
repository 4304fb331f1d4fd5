"""The short human summary printed at the end of ``dhc run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

from dhc.model import Action, Status
from dhc.model.report import Report
from dhc.sinks.logline import one_line


def print_summary(document: Report | dict[str, Any], report_path: Path, stream: TextIO) -> None:
    typed = Report.of(document)
    verdict, run, instance = typed.verdict, typed.run, typed.instance
    action = f" (action: {verdict.action})" if verdict.action is not Action.NONE else ""
    lines = [
        f"dhc verdict: {verdict.status}{action}",
        f"instance {instance.instance_id.value} ({typed.thresholds.instance_type}, "
        f"region {instance.region.value or 'unknown'}), profile {run.profile}, "
        f"{len(typed.checks)} check(s) in {run.duration_s:.1f} s",
    ]
    if run.ended_by:
        lines.append(f"run ended early: {run.ended_by}")
    for check in typed.checks:
        why = f"  {check.reason}" if check.status is not Status.PASSED and check.reason else ""
        lines.append(f"  {check.status:<10} {check.check:<24} {check.duration_s:>7.1f} s{why}")
    lines += [f"  fault: {reason.message} -> {reason.action}" for reason in typed.faults]
    lines.append(f"report: {report_path}")
    page = report_path.with_name("report.html")
    if page.exists():
        lines.append(f"page:   {page}")
    stream.write("\n".join(one_line(line) for line in lines) + "\n")  # data never starts a line
    stream.flush()
