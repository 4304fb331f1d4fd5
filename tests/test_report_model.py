"""The typed report model: one codec, a schema generated from it, and one way a run's report is made."""

import json
import math
import subprocess
import sys

import pytest

from dhc import report
from dhc.instance import InstanceIdentity, Sourced
from dhc.model import Action, CheckResult, Comparison, Device, Finding, Limit, Measurement, PlannedCheck, Status
from dhc.model.codec import ModelError
from dhc.model.report import Report, Run
from dhc.report.schema import SCHEMA_PATH, generate, render
from dhc.thresholds import load

GPU = Device("gpu", 3, uuid="GPU-abc", serial="1650", pci_bus_id="00000000:53:00.0")


def failed_gemm(value=float("nan")):
    m = Measurement("stress.gemm", "tflops", value, "TFLOP/s", GPU, Limit(Comparison.MIN, 600, "TFLOP/s", "baseline"))
    return CheckResult("stress.gemm", "InstanceStress", Status.FAILED, "below its limit", (GPU,), (m,),
                       (Finding.from_measurement(m),), nodeid="stress/test_gemm.py::test_gemm")


def a_report(results, ended_by=None):
    from test_report import make_document

    return make_document(results, ended_by)


def test_the_checked_in_schema_is_the_generated_one():
    """They cannot drift: a model change without `python -m dhc.report.schema` fails here."""
    assert json.loads(SCHEMA_PATH.read_text()) == generate()
    assert SCHEMA_PATH.read_text() == render()


def test_the_regeneration_script_says_whether_the_file_is_current():
    done = subprocess.run([sys.executable, "-m", "dhc.report.schema", "--check"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "current" in done.stdout


def test_the_generated_schema_is_strict_where_the_verdict_is_concerned():
    schema = generate()
    defs = schema["$defs"]
    assert set(schema["required"]) == {"schema_version", "run", "instance", "thresholds", "environment", "devices",
                                       "checks", "verdict"}
    assert defs["node_verdict"]["properties"]["status"]["enum"] == ["Passed", "Failed", "Incomplete"]
    assert defs["node_verdict"]["properties"]["exit_code"]["enum"] == [0, 1, 3]
    assert "judgement" in defs["measurement"]["required"] and "action" in defs["check_result"]["required"]
    assert all(d.get("additionalProperties") is False for d in defs.values() if d.get("type") == "object")


def test_a_report_round_trips_through_the_typed_model(validate_report):
    document = a_report([failed_gemm(), failed_gemm(512.0)])
    validate_report(document)
    typed = Report.from_dict(document)
    assert typed.verdict.status is Status.FAILED and typed.verdict.action is Action.REPLACE
    assert math.isnan(typed.checks[0].measurements[0].value)  # "non_finite": "nan" read back as NaN
    assert typed.faults[0].device == GPU and typed.faults[0].device.label(ids=False) == "GPU 3"
    assert typed.to_dict() == document


def test_a_malformed_report_names_the_key_and_what_was_expected():
    document = a_report([failed_gemm(512.0)])
    document["checks"][0]["status"] = "Fine"
    with pytest.raises(ModelError, match=r"checks\[0\]\.status: expected one of Passed, Failed, Incomplete, "
                                         r"Skipped, got 'Fine'"):
        Report.from_dict(document)
    document["checks"][0]["status"] = "Failed"
    del document["verdict"]
    with pytest.raises(ModelError, match="^verdict: missing$"):
        Report.from_dict(document)
    with pytest.raises(ModelError, match="the document: expected an object"):
        Report.from_dict(["not", "a", "report"])


def identity():
    unknown = Sourced(None, "unknown")
    return InstanceIdentity(instance_id=Sourced("i-0abc", "cli"), instance_type=Sourced("cpu", "cli"),
                            node_name=unknown, region=unknown, availability_zone=unknown, cluster=unknown)


def test_finish_report_completes_the_plan_and_saves_a_valid_report(tmp_path, validate_report):
    """The one function both processes use: an unfinished planned check is Incomplete, saying why."""
    plan = [PlannedCheck("s::inv", "stress.inventory", "InstanceStress", 1, 2),
            PlannedCheck("s::gemm", "stress.gemm", "InstanceStress", 1, 2)]
    done = CheckResult("stress.inventory", "InstanceStress", Status.PASSED, nodeid="s::inv")
    run = Run.started("r1", report.utc_now(), "quick")
    limits = load(None).resolve("cpu", "quick")
    typed, problem = report.finish_report(tmp_path, run, identity(), limits, {"dhc": "0", "python": "3"}, plan,
                                          [done], "stopped by SIGTERM")
    assert problem is None
    saved = validate_report(tmp_path / "report.json")
    assert Report.from_dict(saved) == typed
    assert typed.verdict.status is Status.INCOMPLETE and typed.run.ended_by == "stopped by SIGTERM"
    assert typed.checks[1].reason == "did not finish: stopped by SIGTERM"
    assert typed.verdict.reasons[0].message == "run ended early: stopped by SIGTERM"


def test_a_run_that_ends_by_itself_without_running_a_planned_check_never_passes(tmp_path):
    plan = [PlannedCheck("s::inv", "stress.inventory", "InstanceStress", 1, 2)]
    run = Run.started("r1", report.utc_now(), "quick")
    typed, _ = report.finish_report(tmp_path, run, identity(), load(None).resolve("cpu", "quick"),
                                    {"dhc": "0", "python": "3"}, plan, [], None)
    assert typed.verdict.status is Status.INCOMPLETE
    assert typed.checks[0].reason == "did not finish: pytest finished without running it"


def test_journal_results_skip_a_line_that_is_no_result(tmp_path):
    """A result the model cannot read leaves its check unfinished (Incomplete), never passed or a traceback."""
    journal = report.Journal(tmp_path / report.JOURNAL_NAME)
    journal.append({"event": "result", "result": failed_gemm(512.0).to_dict()})
    journal.append({"event": "result", "result": {"check": "stress.inventory", "status": "Passed"}})  # no suite
    journal.append({"event": "start", "nodeid": "x"})
    assert [r.check for r in report.journal_results(tmp_path)] == ["stress.gemm"]
    assert report.read_plan(tmp_path) == []


def test_dhc_run_trusts_only_a_child_report_the_model_reads(tmp_path):
    """A report.json that is JSON but not a whole report (a torn or foreign file) is rebuilt, never delivered."""
    from dhc.cli.trust import childs_report

    path = tmp_path / "report.json"
    document = a_report([failed_gemm(512.0)])
    path.write_text(json.dumps(document))
    assert childs_report(path, "r1")[0].to_dict() == document
    assert childs_report(path, "another-run")[0] is None
    del document["verdict"]
    path.write_text(json.dumps(document))
    assert childs_report(path, "r1") == (None, "report.json: verdict: missing")


def test_a_runs_section_is_the_models_run_from_start_to_end():
    started = Run.started("r1", "2026-11-29T10:00:00.000000Z", "full", ("InstanceStress",), ("stress.gemm",), ("dhc",))
    ended = started.ended("2026-11-29T10:01:40.250000Z", "stopped by SIGTERM")
    assert (ended.duration_s, ended.ended_by, ended.selection.checks) == (100.25, "stopped by SIGTERM", ("stress.gemm",))
    assert (started.finished_at, started.duration_s) == (started.started_at, 0.0)
