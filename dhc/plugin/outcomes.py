"""Turn what happened to a pytest item into a check status (DESIGN.md, Verdict model).

Passed only when the body returned and the recorder concluded cleanly. A HardwareFault is Failed;
a not-applicable marker is Skipped; everything else that went wrong (an exception, a timeout, a
plain pytest.skip, a crashed worker) is Incomplete: the check could not decide. Except that faults
already recorded are never dropped: a check that recorded a fault (or a value outside its limit)
and then could not finish is Failed on those findings, the reason it stopped kept beside them.
"""

from __future__ import annotations

from typing import Any

import pytest

from dhc.errors import CheckIncomplete, CheckTimeout, HardwareFault
from dhc.model import Action, CheckResult, Finding, Status
from dhc.plugin.recorder import CheckRecorder

RESULT_PROPERTY = "dhc.result"


def result_from_call(check: str, suite: str, excinfo: pytest.ExceptionInfo[BaseException] | None,
                     recorder: CheckRecorder | None, not_applicable: str | None,
                     started_at: str, duration_s: float, nodeid: str) -> CheckResult:
    status, reason, findings = _classify(check, excinfo, recorder, not_applicable)
    return CheckResult(
        check=check, suite=suite, status=status, reason=reason,
        devices=tuple(recorder.devices) if recorder else (),
        measurements=tuple(recorder.measurements) if recorder else (),
        findings=tuple(findings), started_at=started_at, duration_s=round(duration_s, 3), nodeid=nodeid,
    )


def _classify(check: str, excinfo: Any, recorder: CheckRecorder | None,
              not_applicable: str | None) -> tuple[Status, str, list[Finding]]:
    if excinfo is None:
        return Status.PASSED, "", []
    status, reason, findings = _undecided(check, excinfo.value, recorder, not_applicable)
    recorded = recorder.findings() if recorder and status is not Status.FAILED else []
    if not recorded:
        return status, reason, findings
    stopped = Finding(check, Status.INCOMPLETE, f"the check then stopped before it finished: {reason}")
    findings = [*recorded, stopped]
    return Status.FAILED, "; ".join(f.message for f in findings)[:1000], findings


def _undecided(check: str, exc: BaseException, recorder: CheckRecorder | None,
               not_applicable: str | None) -> tuple[Status, str, list[Finding]]:
    """The status the exception alone gives, before the faults recorded so far are counted."""
    if isinstance(exc, pytest.skip.Exception):
        if not_applicable is not None:
            return Status.SKIPPED, not_applicable, []
        return _incomplete(check, f"skipped, but not marked not-applicable: {exc.msg}")
    if isinstance(exc, HardwareFault):
        findings = recorder.findings() if recorder else []
        if not findings:  # raised by the check itself rather than through the recorder
            findings = [Finding(check, Status.FAILED, str(exc) or "hardware fault",
                                exc.action if isinstance(exc.action, Action) else Action.REPLACE,
                                exc.device)]
        return Status.FAILED, "; ".join(f.message for f in findings)[:1000], findings
    if isinstance(exc, CheckTimeout):
        return _incomplete(check, str(exc))
    if isinstance(exc, CheckIncomplete):
        return _incomplete(check, str(exc) or "the check could not decide")
    return _incomplete(check, f"check error: {type(exc).__name__}: {_first_line(str(exc))}")


def _incomplete(check: str, reason: str) -> tuple[Status, str, list[Finding]]:
    return Status.INCOMPLETE, reason, [Finding(check, Status.INCOMPLETE, reason)]


def without_result(check: str, suite: str, nodeid: str, longrepr: str) -> CheckResult:
    """A report that carries no dhc result: the worker crashed or pytest itself broke."""
    reason = f"no result from the check (worker crashed?): {_first_line(longrepr)[:300]}"
    return CheckResult(check, suite, Status.INCOMPLETE, reason,
                       findings=(Finding(check, Status.INCOMPLETE, reason),), nodeid=nodeid)


def after_teardown_error(result: CheckResult, longrepr: str) -> CheckResult:
    if result.status is not Status.PASSED:
        return result
    reason = f"teardown failed: {_first_line(longrepr)[:300]}"
    return CheckResult(result.check, result.suite, Status.INCOMPLETE, reason, result.devices,
                       result.measurements, (Finding(result.check, Status.INCOMPLETE, reason),),
                       result.started_at, result.duration_s, result.nodeid)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
