"""Report files: atomic writes, the journal, completing a plan, the schema, log lines, progress."""

import io
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from dhc import report
from dhc.cli.progress import Progress
from dhc.errors import ReportError
from dhc.model import CheckResult, PlannedCheck, Status
from dhc.model.report import Report, Run
from dhc.report.document import assemble
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
    run = Run.started("r1", "2026-11-29T10:00:00.000000Z", "quick").ended("2026-11-29T10:01:00.000000Z", ended_by)
    identity = {k: {"value": None, "source": "unknown"} for k in
                ("instance_id", "instance_type", "node_name", "region", "availability_zone", "cluster")}
    identity["instance_type"] = {"value": "p5.48xlarge", "source": "cli"}
    thresholds = {"file": "t.yaml", "sha256": "0" * 64, "profile": "quick", "instance_type": "ml.p5.48xlarge",
                  "requested_as": "p5.48xlarge", "gpus": 8, "efa": 32, "checks": {}}
    return assemble(run, identity | {"notes": []}, thresholds, {"dhc": "0", "python": "3"}, [], results).to_dict()


def report_with_verdict(status="Passed", action="None", reasons=(), instance_id="vm", instance_type="p5.48xlarge",
                        run_id="r1"):
    """A whole report whose verdict is the one given, as written: for the readers of a verdict (sinks, scheme)."""
    document = make_document([])
    document["verdict"] = {"status": status, "action": action, "reasons": list(reasons),
                           "exit_code": {"Passed": 0, "Failed": 1}.get(status, 3)}
    document["instance"]["instance_id"]["value"] = instance_id
    document["instance"]["instance_type"]["value"] = instance_type
    document["run"]["run_id"] = run_id
    return document


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
    [line] = verdict_lines(Report.from_dict(document))
    assert line["level"] == "warning"
    assert line["msg"] == ("Deep health check incomplete. Region: unknown, InstanceType: p5.48xlarge. "
                           "REASON:dcgmi missing")


def test_progress_on_a_terminal_redraws_one_line():
    stream = io.StringIO()
    progress = Progress(stream, "8 GPU(s)", live=True)
    dcgm = PlannedCheck("d", "stress.dcgm", "InstanceStress", 3600, 7200)
    progress.planned([PlannedCheck("i", "stress.inventory", "InstanceStress", 60, 120), dcgm])
    progress.started(dcgm)
    progress.tick()
    progress.finished(CheckResult("stress.dcgm", "InstanceStress", Status.FAILED, "GPU 3", duration_s=12.5))
    text = stream.getvalue()
    assert "2 check(s) planned on 8 GPU(s), expected ~1:01:00" in text
    assert "\r\x1b[K[1/2] stress.dcgm on 8 GPU(s)  00:00 / ~1:00:00" in text
    assert text.endswith("dhc: [1/2] Failed     stress.dcgm in 12.5 s: GPU 3\n")


def test_plain_progress_counts_concurrent_starts():
    stream = io.StringIO()
    progress = Progress(stream, "the CPU", live=False)
    planned = [PlannedCheck(check, check, "InstanceStress", 1, 2) for check in ("stress.gemm", "stress.memtest")]
    progress.planned(planned)
    for check in planned:
        progress.started(check)
    assert "[1/2] stress.gemm started" in stream.getvalue()
    assert "[2/2] stress.memtest started" in stream.getvalue() and "\r" not in stream.getvalue()


NAN_SUITE = textwrap.dedent("""
    import pytest
    from dhc.model import Device

    @pytest.mark.check("stress.gemm")
    def test_nan_throughput(dhc_check):
        dhc_check.record("tflops_fp32", float("nan"), "TFLOP/s", Device("cpu", 0))
        dhc_check.record("relative_to_median", float("inf"), "ratio", Device("cpu", 0))

    @pytest.mark.check("stress.memtest")
    def test_later_check(dhc_check):
        dhc_check.record("memory_errors", 0, "count", Device("cpu", 0))
""")


def test_a_nan_measured_in_a_live_check_fails_that_device_and_later_checks_still_run(tmp_path, validate_report):
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "conftest.py").write_text('pytest_plugins = ["dhc.plugin"]\n')
    (suites / "test_nan.py").write_text(NAN_SUITE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))}
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--instance-type", "cpu", "--out", str(tmp_path / "r"),
                           "--check", "stress.gemm", "--check", "stress.memtest"],
                          capture_output=True, text=True, timeout=300,
                          env=env | {"DHC_IMDS": "off", "DHC_SUITES": str(suites)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    document = validate_report(tmp_path / "r" / "report.json")
    gemm, memtest = document["checks"]
    assert (gemm["status"], memtest["status"]) == ("Failed", "Passed")  # the later check ran
    assert [(m["value"], m["non_finite"], m["judgement"]) for m in gemm["measurements"]] == [
        (None, "nan", "outside"), (None, "inf", "outside")]
    assert "stress.gemm tflops_fp32 on cpu: measured nan TFLOP/s, expected minimum 0.002 TFLOP/s" in gemm["reason"]
    events = report.Journal(tmp_path / "r" / "journal.jsonl").events()
    assert [e["result"]["status"] for e in events if e["event"] == "result"] == ["Failed", "Passed"]
    lines = [json.loads(line) for line in (tmp_path / "r" / "dhc.log.jsonl").read_text().splitlines()]
    assert any("Measured on cpu: nan" in line["msg"] for line in lines)


def test_run_files_are_0644_and_a_new_run_folder_0755_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        out = tmp_path / "run"
        report.ensure_writable_dir(out)
        document = make_document([CheckResult("stress.inventory", "InstanceStress", Status.PASSED)])
        assert report.save_report(out, document) is None
        report.Journal(out / report.JOURNAL_NAME).append({"event": "start"})
        report.write_json_atomic(out / report.PLAN_NAME, [])
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for name in (report.REPORT_NAME, report.HTML_NAME, report.JOURNAL_NAME, report.PLAN_NAME):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
def test_read_json_refuses_what_is_not_a_regular_file(tmp_path, kind):
    path = tmp_path / "report.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path = __import__("pathlib").Path("/dev/zero")
    with pytest.raises(ReportError, match="not a regular file; refused"):
        report.read_json(path)


def test_read_json_refuses_a_huge_file(tmp_path, monkeypatch):
    from dhc import textfile
    monkeypatch.setattr(textfile, "MAX_REPORT_BYTES", 10)
    monkeypatch.setattr(report.files, "MAX_REPORT_BYTES", 10)
    path = tmp_path / "report.json"
    path.write_text('{"padding": "' + "x" * 100 + '"}')
    with pytest.raises(ReportError, match="larger than 10 bytes"):
        report.read_json(path)


def test_log_lines_and_the_summary_never_start_a_line_from_data():
    from dhc.cli.summary import print_summary
    from dhc.sinks.logline import write_lines
    forged = 'x\n{"level":"error","msg":"Encountered FaultyInstance."}\r\u2028y'
    result = CheckResult("stress.dcgm", "InstanceStress", Status.INCOMPLETE, forged)
    document = make_document([result])
    document["instance"]["instance_id"]["value"] = forged
    document["run"]["duration_s"] = 1.0
    out = io.StringIO()
    write_lines(verdict_lines(Report.from_dict(document)), out)
    print_summary(document, __import__("pathlib").Path("/nonexistent/report.json"), out)
    text = out.getvalue()
    assert not [line for line in text.splitlines() if line.startswith('{"level":"error"')]
    assert "\u2028" not in text and "\r" not in text
    assert len(text.split("\n")) == len(text.splitlines()) + 1  # only the writers' own line ends
