"""stress.dcgm: the parser on NVIDIA's real output captures and on broken output; a fake dcgmi end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dhc.model import Action
from dhc.probes import dcgm

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "dcgm"
FAKES = Path(__file__).parent / "fakes"
P5_RECORDING = Path(__file__).parent / "data" / "nvml_p5_h100.json"


def capture(name: str) -> str:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared capture {path} is not beside this checkout")
    return path.read_text()


def test_dcgm4_capture_fails_gpu0_for_persistence_mode():
    run = dcgm.parse_diag(capture("diag_r2_fail_dcgm4.5.2.json"), dcgm.EXIT_TEST_FAILED)
    assert (run.layout, run.version, run.driver) == ("4.x", "4.5.2", "580.82.09")
    assert [(r.test, r.gpu, r.status) for r in run.results] == [("software", 0, "Fail"), ("memory", 0, "Pass"),
                                                                  ("pcie", 0, "Pass")]
    faults, undecided = dcgm.judge(run)
    [fault] = faults
    assert fault.gpu == 0 and fault.action is Action.NONE  # CONFIG severity: fix the setting, keep the GPU
    assert "Persistence mode for GPU 0 is disabled" in fault.message
    assert "error 29" in fault.message and "severity CONFIG" in fault.message
    assert undecided == []
    assert "memory" in {r.test for r in run.results}


def test_dcgm3_capture_passes_with_eud_skipped():
    run = dcgm.parse_diag(capture("diag_r3_pass_dcgm3_legacy.json"), 0)
    assert run.layout == "3.x" and len(run.results) == 16
    assert {r.gpu for r in run.results} == {None, 0}
    assert dcgm.judge(run) == ([], [])


def test_text_before_the_json_is_tolerated():
    run = dcgm.parse_diag("Successfully ran diagnostic for group.\n" + capture("diag_r3_pass_dcgm3_legacy.json"))
    assert len(run.results) == 16


def test_dcgm33_gpu_id_and_severity_mapping():
    document = {"DCGM GPU Diagnostic": {"version": "3.3.5", "test_categories": [{"category": "Hardware", "tests": [
        {"name": "Memory", "results": [
            {"gpu_id": 2, "status": "Fail", "warnings": [{"warning": "Found 3 faulty memory elements on GPU 2",
                                                          "error_id": 83, "error_category": 10, "error_severity": 2}]},
            {"gpu_id": 3, "status": "Fail", "warnings": [{"warning": "row remap pending", "error_id": 96,
                                                          "error_severity": 6}]},
            {"gpu_id": 4, "status": "Pass"}]}]}]}}
    faults, undecided = dcgm.judge(dcgm.parse_diag(json.dumps(document), 226))
    assert [(f.gpu, f.action) for f in faults] == [(2, Action.REPLACE), (3, Action.REBOOT)]
    assert "hardware memory" in faults[0].message and undecided == []


@pytest.mark.parametrize(("severity", "version", "action"), [
    (2, "4.5.2", Action.REPLACE), (6, "4.5.2", Action.REBOOT), (3, "2.4.6", Action.REBOOT),
    (3, "3.3.5", Action.REPLACE), (5, "4.0.0", Action.NONE), (1, None, Action.NONE), (None, None, Action.REPLACE),
])
def test_action_for_severity(severity, version, action):
    assert dcgm.action_for(severity, version) is action


@pytest.mark.parametrize(("output", "code", "words"), [
    ("", 0, "no JSON document"),
    ("Error: unable to establish a connection to the specified host: localhost", 255, "exited 255"),
    ('{"DCGM Diagnostic": {"test_categories": [', 0, "no JSON document"),
    ('{"something": 1}', 0, "without a DCGM diagnostic document"),
])
def test_unreadable_output_is_undecided(output, code, words):
    faults, undecided, run = dcgm.assess(output, code)
    assert faults == [] and run is None and words in undecided[0]


def test_runtime_error_document():
    output = json.dumps({"DCGM Diagnostic": {"version": "4.2.3",
                                             "runtime_error": "Error: GPU 0 is not supported by this diagnostic"}})
    faults, undecided, _ = dcgm.assess(output, 0)
    assert faults == [] and undecided == ["dcgmi runtime error: Error: GPU 0 is not supported by this diagnostic"]


def test_no_tests_and_all_skipped_are_undecided():
    empty = json.dumps({"DCGM Diagnostic": {"test_categories": []}, "metadata": {"version": "4.5.2"}})
    assert dcgm.assess(empty, 0)[1] == ["dcgmi reported no tests"]
    skipped = json.dumps({"DCGM Diagnostic": {"test_categories": [{"category": "Hardware", "tests": [
        {"name": name, "results": [{"entity_group": "GPU", "entity_group_id": 1, "entity_id": 0, "status": "Skip"}],
         "test_summary": {"status": "Skip"}} for name in ("memory", "pcie", "eud")]}]},
        "metadata": {"version": "4.5.2"}})
    faults, undecided, _ = dcgm.assess(skipped, 0)
    assert faults == [] and undecided == ["required test 'memory' reported Skip on GPU 0",
                                          "required test 'pcie' reported Skip on GPU 0"]


def test_exit_205_without_json_is_a_replace():
    faults, undecided, run = dcgm.assess("", dcgm.EXIT_ISOLATE)
    assert run is None and undecided == [] and faults[0].action is Action.REPLACE and faults[0].gpu is None


def test_exit_226_with_nothing_failed_is_undecided():
    faults, undecided, _ = dcgm.assess(capture("diag_r3_pass_dcgm3_legacy.json"), dcgm.EXIT_TEST_FAILED)
    assert faults == [] and "exited 226" in undecided[0]


def test_run_diag_kills_a_hung_dcgmi(monkeypatch):
    monkeypatch.setenv("FAKE_DCGMI_SLEEP", "30")
    with pytest.raises(dcgm.DcgmTimeout, match="ran past 0.5 s"):
        dcgm.run_diag(str(FAKES / "dcgmi"), 2, 0.5)


# -- end to end: dhc run with a fake dcgmi on PATH -------------------------------------------------
def dhc_run(tmp_path, output_file, exit_code, *args, sleep="0"):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))}
    env.update(PATH=f"{FAKES}{os.pathsep}{env['PATH']}", PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(P5_RECORDING),
               FAKE_DCGMI_OUTPUT=str(output_file), FAKE_DCGMI_EXIT=str(exit_code), FAKE_DCGMI_SLEEP=sleep,
               FAKE_DCGMI_ARGS_LOG=str(tmp_path / "dcgmi-args"), DHC_IMDS="off", DHC_INSTANCE_ID="i-0abc")
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--instance-type", "p5.48xlarge", "--check",
                           "stress.dcgm", "--out", str(tmp_path / "r"), *args], capture_output=True, text=True,
                          env=env, timeout=120)
    return proc, json.loads((tmp_path / "r" / "report.json").read_text())


@pytest.mark.slow
def test_fake_dcgmi_failure_names_the_gpu(tmp_path, validate_report):
    fixture = SHARED / "diag_r2_fail_dcgm4.5.2.json"
    if not fixture.exists():
        pytest.skip(f"shared capture {fixture} is not beside this checkout")
    proc, report = dhc_run(tmp_path, fixture, 226, "--profile", "full")
    validate_report(report)
    assert proc.returncode == 1
    [check] = report["checks"]
    assert check["status"] == "Failed"
    assert check["findings"][0]["device"]["uuid"] == "GPU-2f6a1c1e-8d0b-4e51-9a3c-6c1b0f7d2a01"
    assert (tmp_path / "dcgmi-args").read_text().strip() == "diag -r 4 -j"  # full profile: level 4
    assert (tmp_path / "r" / "dcgm-diag.txt").read_text() == fixture.read_text()


@pytest.mark.slow
def test_fake_dcgmi_pass_and_garbage(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(capture("diag_r3_pass_dcgm3_legacy.json"))
    proc, report = dhc_run(tmp_path, good, 0)
    assert proc.returncode == 0 and report["checks"][0]["status"] == "Passed"
    assert (tmp_path / "dcgmi-args").read_text().strip() == "diag -r 2 -j"  # quick profile: level 2
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("Segmentation fault (core dumped)\n")
    proc, report = dhc_run(tmp_path, garbage, 139)
    assert proc.returncode == 3 and "dcgmi exited 139" in report["checks"][0]["reason"]


@pytest.mark.slow
def test_dcgmi_missing_on_a_gpu_type_is_incomplete(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))}
    env.update(PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(P5_RECORDING), DHC_IMDS="off",
               DHC_DCGMI="dcgmi-not-installed-here")
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--instance-type", "p5.48xlarge", "--check",
                           "stress.dcgm", "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 3 and "'dcgmi-not-installed-here' is not on PATH" in proc.stdout
