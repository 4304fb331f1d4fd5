"""Whether ``dhc run`` may stand behind the report its pytest child wrote, and if not, why.

The child's ``report.json`` is trusted only when it is this run's, and exactly what the typed model
writes: read with ``Report.from_dict`` and written again, it is the same document (so an unknown key,
a value outside an enum, or a computed ``exit_code`` or ``action`` that disagrees with its status is
refused by name), and its verdict is the one ``dhc.model.node_verdict`` reaches from its own checks (a
Failed check under a stored Passed verdict is refused). The model itself reads later minor versions'
extra keys, since a reader of reports must; a report dhc is about to stand behind must be whole. Nor
may it leave out or contradict a result the run journaled, or a check the run selected.
A refused report is rebuilt from the journal by the caller, and the refusal is said.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dhc.errors import DhcError
from dhc.model import CheckResult, node_verdict
from dhc.model.codec import ModelError
from dhc.model.report import Report
from dhc.report import read_json


def childs_report(path: Path, run_id: str, journaled: list[CheckResult] | None = None,
                  selected: list[str] | None = None) -> tuple[Report | None, str | None]:
    """(the child's typed report, None) when it can be trusted; else (None, why it was refused), and
    (None, None) when the child wrote none. ``journaled``: the results the run journaled, each of which
    the report must hold with the same status; ``selected``: the check ids each of which must have a row."""
    if not path.exists():
        return None, None
    try:
        document = read_json(path)
        typed = Report.from_dict(document)
    except (DhcError, ModelError) as exc:
        return None, f"{path.name}: {exc}"
    refusal = _refusal(document, typed, run_id) or _disagreement(typed, journaled or [], selected or [])
    return (None, refusal) if refusal else (typed, None)


def _refusal(document: Any, typed: Report, run_id: str) -> str | None:
    if typed.run.run_id != run_id:
        return f"run.run_id: it is run {typed.run.run_id!r}'s report, not this run's ({run_id!r})"
    difference = first_difference(document, typed.to_dict())
    if difference:
        return difference
    derived = node_verdict(list(typed.checks), typed.run.ended_by)
    if derived.to_dict() != typed.verdict.to_dict():
        return (f"verdict: it says {typed.verdict.status} (exit {typed.verdict.exit_code}), but its checks make it "
                f"{derived.status} (exit {derived.exit_code})")
    return None


def _disagreement(typed: Report, journaled: list[CheckResult], selected: list[str]) -> str | None:
    """Where the report leaves out or contradicts what the run journaled, or leaves a selected check out."""
    rows = {row.nodeid or row.check: row for row in typed.checks}
    for key, result in {r.nodeid or r.check: r for r in journaled}.items():  # the last result of each wins
        row = rows.get(key)
        if row is None or row.status is not result.status:
            said = f"{row.status} in the report" if row else "not in the report"
            return f"checks: {key} is {result.status} in the run's journal but {said}"
    missing = [check for check in selected if check not in {row.check for row in typed.checks}]
    return f"checks: no row for the selected {', '.join(missing)}" if missing else None


def first_difference(seen: Any, written: Any, path: str = "") -> str | None:
    """Where ``seen`` (a document read) differs from ``written`` (what the model writes of it), named by key."""
    where = path or "the document"
    if isinstance(seen, dict) and isinstance(written, dict):
        for key in [*seen, *(k for k in written if k not in seen)]:
            inner = f"{path}.{key}" if path else str(key)
            if key not in written:
                return f"{inner}: a key the report model does not have"
            if key not in seen:
                return f"{inner}: missing (the model writes {_short(written[key])})"
            found = first_difference(seen[key], written[key], inner)
            if found:
                return found
        return None
    if isinstance(seen, list) and isinstance(written, list) and len(seen) == len(written):
        return next((d for i, (a, b) in enumerate(zip(seen, written, strict=True))
                     if (d := first_difference(a, b, f"{path}[{i}]"))), None)
    if type(seen) is not type(written) or seen != written:
        return f"{where}: it says {_short(seen)}, the model makes it {_short(written)}"
    return None


def _short(value: Any) -> str:
    return json.dumps(value)[:80]
