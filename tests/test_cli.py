"""``dhc`` end to end, in a subprocess as a user runs it: exit codes, reports, signals, bad input."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from dhc_process import PASSING, dhc, dhc_env, no_traceback, suites_maker, wait_for_start

ROOT = Path(__file__).resolve().parent.parent
FAKES = Path(__file__).parent / "fakes"
P5_RECORDING = Path(__file__).parent / "data" / "nvml_p5_h100.json"

pytestmark = pytest.mark.slow


@pytest.fixture
def custom_suites(tmp_path):
    """A suites folder of our own checks (DHC_SUITES) for faults the real suites cannot stage."""
    return suites_maker(tmp_path)


@pytest.fixture
def short_thresholds(thresholds_file):
    def shorten(doc):
        for check in doc["profiles"]["quick"].values():
            check.update(expected_s=1, timeout_s=3)
        doc["instance_types"]["cpu"].pop("profiles")  # its own longer timings would win
    return thresholds_file(shorten, "short.yaml")


SLEEPING = """
    import signal, time, pytest

    @pytest.mark.check("stress.gemm")
    def test_gemm(dhc_check):
        {block}
        time.sleep(60)
"""


def test_default_run_on_cpu_passes_with_a_valid_report(tmp_path, validate_report):
    proc = dhc("run", "--out", str(tmp_path / "r"))
    no_traceback(proc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = validate_report(tmp_path / "r" / "report.json")
    assert report["verdict"]["status"] == "Passed"
    assert report["instance"]["instance_type"] == {"value": "cpu", "source": "no-gpu"}
    checks = {c["check"]: c for c in report["checks"]}
    assert {m["name"] for m in checks["stress.inventory"]["measurements"]} >= {"cpu_cores", "memory_gib"}
    assert {m["name"] for m in checks["stress.gemm"]["measurements"]} == {"tflops_fp32", "relative_to_median"}
    assert {m["name"] for m in checks["stress.memtest"]["measurements"]} >= {"copy_bandwidth", "memory_errors"}
    assert all(m["device"]["kind"] == "cpu" for c in ("stress.gemm", "stress.memtest") for m in checks[c]["measurements"])
    assert checks["stress.dcgm"]["status"] == "Skipped" and "DCGM" in checks["stress.dcgm"]["reason"]
    assert proc.stdout.startswith("dhc verdict: Passed")
    assert "stress.inventory started on the CPU" in proc.stderr  # plain progress lines off a terminal
    assert not list((tmp_path / "r").glob(".*.tmp"))


def test_default_out_dir_is_under_reports(tmp_path, validate_report):
    proc = dhc("run", "--check", "stress.inventory", cwd=tmp_path)
    assert proc.returncode == 0
    [report] = list((tmp_path / "reports").glob("*/report.json"))
    validate_report(report)


def test_p5_with_eight_gpus_passes_inventory(tmp_path, validate_report):
    env = dhc_env(PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(P5_RECORDING), DHC_INSTANCE_ID="i-0123456789abcdef0",
                  DHC_REGION="us-east-2")
    proc = dhc("run", "--instance-type", "p5.48xlarge", "--check", "stress.inventory", "--out", str(tmp_path / "r"), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = validate_report(tmp_path / "r" / "report.json")
    gpus = [d for d in report["devices"] if d["kind"] == "gpu"]
    assert len(gpus) == 8 and gpus[7]["pci_bus_id"] == "00000000:CA:00.0"
    assert report["environment"]["driver"] == "550.90.07"


def test_p5_with_a_missing_gpu_fails_with_a_hyperpod_log_line(tmp_path, validate_report):
    recording = json.loads(P5_RECORDING.read_text())
    recording["gpus"].pop(3)
    (tmp_path / "seven.json").write_text(json.dumps(recording))
    env = dhc_env(PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(tmp_path / "seven.json"),
                  DHC_INSTANCE_ID="i-0123456789abcdef0", DHC_REGION="us-east-2")
    proc = dhc("run", "--instance-type", "p5.48xlarge", "--check", "stress.inventory", "--out", str(tmp_path / "r"), env=env)
    assert proc.returncode == 1
    report = validate_report(tmp_path / "r" / "report.json")
    assert (report["verdict"]["status"], report["verdict"]["action"]) == ("Failed", "Replace")
    [line] = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert line["msg"].startswith("Encountered FaultyInstance. Replace the Instance. Region: us-east-2, "
                                  "InstanceType: p5.48xlarge. ERROR:stress.inventory gpu_count has other than threshold")
    assert (line["level"], line["instance_id"], line["metric"], line["value"], line["limit"]) == \
        ("error", "i-0123456789abcdef0", "gpu_count", 7, 8)
    assert (tmp_path / "r" / "dhc.log.jsonl").read_text().strip() == json.dumps(line, separators=(",", ":"))


def test_gpu_type_without_a_driver_is_incomplete(tmp_path):
    proc = dhc("run", "--instance-type", "p5.48xlarge", "--out", str(tmp_path / "r"))
    assert proc.returncode == 3
    assert "dhc verdict: Incomplete" in proc.stdout and "NVML library" in proc.stdout


def test_broken_thresholds_exit_2_with_one_clear_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "thresholds.yaml").read_text().replace("unit: TB/s", "unit: TFLOP/s", 1))
    for args in (["run", "--thresholds", str(bad), "--out", str(tmp_path / "r")], ["thresholds", "validate", str(bad)]):
        proc = dhc(*args)
        no_traceback(proc)
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"dhc: error: {bad}:")
        assert "copy_bandwidth/unit: expected a unit of bandwidth" in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("args", "words"), [
    (["run", "--instance-type", "p9.xlarge"], "unknown instance type 'p9.xlarge'"),
    (["run", "--check", "stress.gmem"], "unknown check id 'stress.gmem'"),
    (["run", "--suite", "Stress"], "--suite: expected one of"),
    (["run", "-n", "-1"], "-n: expected a number of workers >= 0"),
    (["thresholds", "show", "p9.xlarge"], "unknown instance type"),
    (["frobnicate"], "invalid choice"),
])
def test_usage_errors_exit_2(tmp_path, args, words):
    proc = dhc(*args, cwd=tmp_path)
    no_traceback(proc)
    assert proc.returncode == 2 and words in proc.stderr


def test_bad_environment_value_exits_2(tmp_path):
    proc = dhc("run", "--out", str(tmp_path / "r"), env=dhc_env(DHC_IMDS="maybe"))
    no_traceback(proc)
    assert proc.returncode == 2 and "DHC_IMDS" in proc.stderr


def test_unwritable_out_exits_2_before_running(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = dhc("run", "--out", str(blocker / "sub"))
    no_traceback(proc)
    assert proc.returncode == 2 and "is not writable" in proc.stderr


def test_a_failing_check_exits_1_and_a_raising_one_3(tmp_path, custom_suites, validate_report):
    suites = custom_suites(a=PASSING.replace('"cpu_cores", 2', '"cpu_cores", 0'))
    proc = dhc("run", "--out", str(tmp_path / "r"), env=dhc_env(DHC_SUITES=str(suites)))
    assert proc.returncode == 1
    (suites / "test_a.py").write_text(textwrap.dedent(PASSING) + '    int("not a number")\n')
    proc = dhc("run", "--out", str(tmp_path / "r"), env=dhc_env(DHC_SUITES=str(suites)))
    assert proc.returncode == 3
    report = validate_report(tmp_path / "r" / "report.json")
    assert "check error: ValueError" in report["checks"][0]["reason"]
    assert "held an earlier run (report.json, report.html, journal.jsonl, plan.json, dhc.log.jsonl" in proc.stderr


def test_a_check_hung_in_native_code_is_killed_and_reported(tmp_path, custom_suites, short_thresholds,
                                                           validate_report):
    # SIGALRM blocked: the in-process timeout cannot fire, as in a check stuck inside a CUDA call
    suites = custom_suites(a=PASSING, b=SLEEPING.format(block="signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})"))
    env = dhc_env(DHC_SUITES=str(suites), DHC_WATCHDOG_GRACE_S="1")
    proc = dhc("run", "--out", str(tmp_path / "r"), "--thresholds", str(short_thresholds), env=env, timeout=60)
    no_traceback(proc)
    assert proc.returncode == 3
    report = validate_report(tmp_path / "r" / "report.json")
    by_check = {c["check"]: c for c in report["checks"]}
    assert by_check["stress.inventory"]["status"] == "Passed"  # finished work is kept
    assert by_check["stress.gemm"]["status"] == "Incomplete"
    assert "stress.gemm hung" in report["run"]["ended_by"] and "stress.gemm hung" in by_check["stress.gemm"]["reason"]


def test_a_check_hung_in_native_code_leaves_its_stack_in_pytest_log(tmp_path, custom_suites, short_thresholds):
    suites = custom_suites(b=SLEEPING.format(block="signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})"))
    env = dhc_env(DHC_SUITES=str(suites), DHC_WATCHDOG_GRACE_S="5")
    proc = dhc("run", "--out", str(tmp_path / "r"), "--thresholds", str(short_thresholds), env=env, timeout=60)
    assert proc.returncode == 3
    log = (tmp_path / "r" / "pytest.log").read_text()
    assert "Timeout (0:00:03.500000)!" in log
    # faulthandler's own thread wrote where the main thread was stuck, before the watchdog killed it
    assert "most recent call first" in log and "in test_gemm" in log


SETUP_HANG = """
    import signal, time, pytest

    @pytest.fixture
    def nvml_init():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # as a native call the alarm cannot reach
        time.sleep(60)

    @pytest.mark.check("stress.gemm")
    def test_gemm(dhc_check, nvml_init):
        pass
"""


def test_a_fixture_hung_in_setup_leaves_its_stack_in_pytest_log(tmp_path, custom_suites, short_thresholds):
    env = dhc_env(DHC_SUITES=str(custom_suites(b=SETUP_HANG)), DHC_WATCHDOG_GRACE_S="5")
    proc = dhc("run", "--out", str(tmp_path / "r"), "--thresholds", str(short_thresholds), env=env, timeout=60)
    assert proc.returncode == 3
    log = (tmp_path / "r" / "pytest.log").read_text()
    assert "most recent call first" in log and "in nvml_init" in log  # the hang's place, not only the call's


def test_a_check_past_its_timeout_in_python_is_incomplete(tmp_path, custom_suites, short_thresholds):
    suites = custom_suites(a=PASSING, b=SLEEPING.format(block="pass"))
    proc = dhc("run", "--out", str(tmp_path / "r"), "--thresholds", str(short_thresholds),
               env=dhc_env(DHC_SUITES=str(suites)), timeout=60)
    assert proc.returncode == 3
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["run"]["ended_by"] is None  # the run itself went on to the end
    assert "timed out running after 3 s" in report["checks"][1]["reason"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_interrupt_mid_run_writes_an_incomplete_report(tmp_path, custom_suites, validate_report, sig):
    suites = custom_suites(a=PASSING, b=SLEEPING.format(block="pass").replace("sleep(60)", "sleep(600)"))
    out = tmp_path / "r"
    proc = subprocess.Popen([sys.executable, "-m", "dhc", "run", "--out", str(out), "--check", "stress.inventory",
                             "--check", "stress.gemm"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dhc_env(DHC_SUITES=str(suites)),
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))  # even under nohup
    wait_for_start(out, "stress.gemm")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert proc.returncode == 3
    report = validate_report(out / "report.json")
    assert report["run"]["ended_by"].startswith(f"interrupted by {sig.name} (")
    assert [c["status"] for c in report["checks"]] == ["Passed", "Incomplete"]
    assert f"{sig.name}: letting the running check stop" in stderr and "dhc verdict: Incomplete" in stdout
    # the child stopped the check itself and wrote its verdict: it was not killed after a long wait
    assert "dhc verdict: Incomplete" in (out / "pytest.log").read_text()


def test_xdist_workers(tmp_path, custom_suites, validate_report):
    suites = custom_suites(a=PASSING, b=PASSING.replace("stress.inventory", "stress.memtest").replace(
        '"cpu_cores", 2, "count"', '"copy_bandwidth", 5.0, "GB/s"').replace("test_inventory", "test_memtest"))
    proc = dhc("run", "-n", "2", "--out", str(tmp_path / "r"), "--check", "stress.inventory", "--check", "stress.memtest",
               env=dhc_env(DHC_SUITES=str(suites)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = validate_report(tmp_path / "r" / "report.json")
    assert sorted(c["check"] for c in report["checks"]) == ["stress.inventory", "stress.memtest"]


def test_pytest_directly_gives_the_same_report(tmp_path, validate_report):
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "suites"), f"--dhc-out={tmp_path}",
                           "-p", "no:xdist", "--dhc-check=stress.inventory", "--dhc-check=stress.dcgm"], capture_output=True, text=True, env=dhc_env(), timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert validate_report(tmp_path / "report.json")["verdict"]["status"] == "Passed"


def test_thresholds_commands():
    proc = dhc("thresholds", "validate")
    assert proc.returncode == 0 and "valid (" in proc.stdout
    proc = dhc("thresholds", "show", "p5.48xlarge")
    assert proc.returncode == 0 and "min 460 GB/s" in proc.stdout and "ml.p5.48xlarge" in proc.stdout
    proc = dhc("thresholds", "show", "p5en.48xlarge", "--json", "--profile", "full")
    data = json.loads(proc.stdout)
    assert data["efa"] == 16 and data["checks"]["stress.dcgm"]["settings"]["level"] == 4


def test_collection_that_hangs_is_stopped(tmp_path, custom_suites, validate_report):
    suites = custom_suites(a=PASSING)
    (suites / "conftest.py").write_text('import time\ntime.sleep(60)\npytest_plugins = ["dhc.plugin"]\n')
    env = dhc_env(DHC_SUITES=str(suites), DHC_COLLECT_TIMEOUT_S="1")
    proc = dhc("run", "--out", str(tmp_path / "r"), env=env, timeout=60)
    assert proc.returncode == 3
    report = validate_report(tmp_path / "r" / "report.json")
    assert report["verdict"]["reasons"][0]["message"] == \
        "run ended early: collecting the checks took longer than 1 s; dhc stopped the run"


def test_a_verdict_command_that_loses_its_reader_never_reads_as_a_pass(monkeypatch):
    from dhc import cli
    from dhc.cli import nccl_cmd, thresholds_cmd

    def reader_left(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(nccl_cmd, "nccl_command", reader_left)
    monkeypatch.setattr(thresholds_cmd, "thresholds_command", reader_left)
    monkeypatch.setattr(os, "dup2", lambda *fds: None)  # leave pytest's own stdout where it is
    assert cli.main(["nccl-tests", "some.log", "--instance-type", "p5.48xlarge"]) == 3
    assert cli.main(["thresholds", "validate"]) == 0  # `dhc thresholds show T | head`: nothing was judged
