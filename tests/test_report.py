"""Report files: atomic writes, the journal, completing a plan, the schema, log lines, progress."""

import io
import json
import os

import pytest

from dhc import report
from dhc.cli.progress import Progress
from dhc.errors import ReportError
from dhc.model import CheckResult, PlannedCheck, Status
from dhc.sinks.logline import verdict_lines


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    report.write_json_atomic(path, {"v": 1})

    def torn(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", torn)
    with pytest.raises(ReportError, match="No space left on device"):
        report.write_json_atomic(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left behind


def test_atomic_write_refuses_nan(tmp_path):
    with pytest.raises(ValueError):
        report.write_json_atomic(tmp_path / "r.json", {"v": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_journal_drops_a_torn_last_line(tmp_path):
    journal = report.Journal(tmp_path / "journal.jsonl")
    journal.append({"event": "start", "n": 1})
    with open(journal.path, "a") as handle:
        handle.write('{"event": "res')  # the writer died mid-line
    assert journal.events() == [{"event": "start", "n": 1}]
    assert report.Journal(tmp_path / "none.jsonl").events() == []


def test_read_json_errors_name_the_file(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{not json")
    with pytest.raises(ReportError, match="r.json: not a readable JSON"):
        report.read_json(bad)


def test_complete_results_marks_the_unfinished_incomplete():
    plan = [PlannedCheck("a::x", "stress.inventory", "InstanceStress", 1, 2),
            PlannedCheck("a::y", "stress.gemm", "InstanceStress", 1, 2)]
    done = CheckResult("stress.inventory", "InstanceStress", Status.PASSED, nodeid="a::x")
    extra = CheckResult("stress.memtest", "InstanceStress", Status.PASSED, nodeid="b::z")
    results = report.complete_results(plan, [extra, done], "interrupted")
    assert [(r.check, r.status) for r in results] == [
        ("stress.inventory", Status.PASSED), ("stress.gemm", Status.INCOMPLETE), ("stress.memtest", Status.PASSED)]
    assert results[1].reason == "did not finish: interrupted"


def make_document(results, ended_by=None):
    run = report.RunInfo("r1", "2026-11-29T10:00:00.000000Z", "quick", ended_by=ended_by)
    identity = {k: {"value": None, "source": "unknown"} for k in
                ("instance_id", "instance_type", "node_name", "region", "availability_zone", "cluster")}
    identity["instance_type"] = {"value": "p5.48xlarge", "source": "cli"}
    thresholds = {"file": "t.yaml", "sha256": "0" * 64, "profile": "quick", "instance_type": "ml.p5.48xlarge",
                  "requested_as": "p5.48xlarge", "gpus": 8, "efa": 32, "checks": {}}
    return report.build_report(run, identity | {"notes": []}, thresholds, {"dhc": "0", "python": "3"}, [], results)


def test_schema_rejects_a_passed_verdict_with_reasons(validate_report):
    document = make_document([CheckResult("stress.inventory", "InstanceStress", Status.PASSED)])
    validate_report(document)
    document["verdict"]["reasons"] = [{"check": "x", "status": "Failed", "message": "m", "action": "None"}]
    with pytest.raises(Exception, match="should be non-empty|expected to be empty|is too long"):
        validate_report(document)


def test_schema_requires_a_reason_for_incomplete(validate_report):
    document = make_document([CheckResult("stress.gemm", "InstanceStress", Status.INCOMPLETE, "timeout")])
    validate_report(document)
    document["checks"][0]["reason"] = ""
    with pytest.raises(Exception, match="short|minLength|should be non-empty"):
        validate_report(document)


def test_incomplete_verdict_log_line():
    document = make_document([CheckResult("stress.dcgm", "InstanceStress", Status.INCOMPLETE, "dcgmi missing")])
    [line] = verdict_lines(document)
    assert line["level"] == "warning"
    assert line["msg"] == ("Deep health check incomplete. Region: unknown, InstanceType: p5.48xlarge. "
                           "REASON:dcgmi missing")


def test_progress_on_a_terminal_redraws_one_line():
    stream = io.StringIO()
    progress = Progress(stream, "8 GPU(s)", live=True)
    progress.planned([{"expected_s": 60}, {"expected_s": 3600}])
    progress.started({"check": "stress.dcgm", "expected_s": 3600, "timeout_s": 7200})
    progress.tick()
    progress.finished({"check": "stress.dcgm", "status": "Failed", "duration_s": 12.5, "reason": "GPU 3"})
    text = stream.getvalue()
    assert "2 check(s) planned on 8 GPU(s), expected ~1:01:00" in text
    assert "\r\x1b[K[1/2] stress.dcgm on 8 GPU(s)  00:00 / ~1:00:00" in text
    assert text.endswith("dhc: [1/2] Failed     stress.dcgm in 12.5 s: GPU 3\n")


def test_plain_progress_counts_concurrent_starts():
    stream = io.StringIO()
    progress = Progress(stream, "the CPU", live=False)
    progress.planned([{"expected_s": 1}, {"expected_s": 1}])
    for check in ("stress.gemm", "stress.memtest"):
        progress.started({"check": check, "expected_s": 1, "timeout_s": 2})
    assert "[1/2] stress.gemm started" in stream.getvalue()
    assert "[2/2] stress.memtest started" in stream.getvalue() and "\r" not in stream.getvalue()
