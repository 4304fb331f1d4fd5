"""``dhc run`` as a process among others: inherited signals, dying parents and children, closed stdout,
the caller's pytest setup, a reused --out, and a CPU type on a host with GPUs. Each in a subprocess."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dhc_process import PASSING, dhc, dhc_env, no_traceback, suites_maker, wait_for_start

pytestmark = pytest.mark.slow

FAKES = Path(__file__).parent / "fakes"
P5_RECORDING = Path(__file__).parent / "data" / "nvml_p5_h100.json"
SLEEPY = """
    import time, pytest

    @pytest.mark.check("stress.gemm")
    def test_gemm(dhc_check):
        time.sleep(600)
"""
FAILING = PASSING.replace('"cpu_cores", 2', '"cpu_cores", 0')
BOTH = ("--check", "stress.inventory", "--check", "stress.gemm")


@pytest.fixture
def suites(tmp_path):
    """A suites folder (DHC_SUITES) holding the given check files."""
    return suites_maker(tmp_path)


def start(out, *args, env, ignore_sigint=False, **popen):
    """``dhc run`` started as a script's ``dhc run &`` starts it: SIGINT ignored when asked."""
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    popen.setdefault("stdout", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", "dhc", "run", "--out", str(out), *args], text=True,
                            stderr=subprocess.PIPE, env=env, preexec_fn=preexec, **popen)


def wait_for_file(path: Path, deadline_s: float = 60) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if path.exists():
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


# -- signals -------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_run_started_with_sigint_ignored_still_stops_with_a_report(tmp_path, suites, validate_report, sig):
    env = dhc_env(DHC_SUITES=str(suites(a=PASSING, b=SLEEPY)))
    out = tmp_path / "r"
    proc = start(out, *BOTH, env=env, ignore_sigint=True)
    wait_for_start(out, "stress.gemm")
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=45)  # the old way: SIGINT ignored, the check ran its 600 s
    assert proc.returncode == 3, stderr
    report = validate_report(out / "report.json")
    assert report["run"]["ended_by"].startswith(f"interrupted by {sig.name}")
    assert [c["status"] for c in report["checks"]] == ["Passed", "Incomplete"]
    log = (out / "pytest.log").read_text()
    assert "KeyboardInterrupt" in log and "dhc verdict: Incomplete" in log  # the child answered the interrupt


def test_sigterm_after_every_check_finished_never_reads_as_passed(tmp_path, suites, validate_report):
    # the last check has finished (its result is journaled) but the run has not ended: SIGTERM now.
    # Started with SIGINT ignored, the old child never heard the interrupt, finished its teardown
    # and wrote Passed with ended_by null, which dhc run then returned as the verdict (exit 0).
    waiting = PASSING + """
    import time

    def teardown_module():
        time.sleep(20)
    """
    env = dhc_env(DHC_SUITES=str(suites(a=waiting)))
    out = tmp_path / "r"
    proc = start(out, "--check", "stress.inventory", env=env, ignore_sigint=True)
    end = time.monotonic() + 30
    while '"event":"result"' not in ((out / "journal.jsonl").read_text() if (out / "journal.jsonl").exists() else ""):
        assert time.monotonic() < end, "the check never finished"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=45)
    report = validate_report(out / "report.json")
    assert proc.returncode == 3 and report["verdict"]["status"] == "Incomplete"
    assert report["run"]["ended_by"].startswith("interrupted by SIGTERM")
    assert report["checks"][0]["status"] == "Passed"  # finished work is kept, the verdict is not a pass


def test_when_dhc_run_dies_its_pytest_child_stops_and_says_why(tmp_path, suites, validate_report):
    env = dhc_env(DHC_SUITES=str(suites(a=PASSING, b=SLEEPY)))
    out = tmp_path / "r"
    proc = start(out, *BOTH, env=env)
    wait_for_start(out, "stress.gemm")
    proc.kill()  # SIGKILL: dhc run cannot pass anything on; the kernel tells the child (PR_SET_PDEATHSIG)
    proc.communicate(timeout=30)
    wait_for_file(out / "report.json")  # the old way: the orphan ran its 600 s check, then wrote Passed
    report = validate_report(out / "report.json")
    assert report["verdict"]["status"] == "Incomplete"
    assert "the process that started pytest" in report["run"]["ended_by"] and "died" in report["run"]["ended_by"]
    assert [c["status"] for c in report["checks"]] == ["Passed", "Incomplete"]


def test_a_child_that_crashes_is_recorded(tmp_path, suites, validate_report):
    crashing = PASSING + """
    import os, signal

    @pytest.mark.check("stress.gemm")
    def test_gemm(dhc_check):
        os.kill(os.getpid(), signal.SIGKILL)
    """
    proc = dhc("run", "--out", str(tmp_path / "r"), *BOTH, env=dhc_env(DHC_SUITES=str(suites(a=crashing))))
    no_traceback(proc)
    assert proc.returncode == 3
    report = validate_report(tmp_path / "r" / "report.json")
    assert report["run"]["ended_by"].startswith("the pytest child was killed by SIGKILL without a report")
    assert [c["status"] for c in report["checks"]] == ["Passed", "Incomplete"]


# -- stdout that goes away -----------------------------------------------------------------------
def test_a_failed_run_whose_reader_left_still_exits_1_and_logs_the_fault(tmp_path, suites):
    env = dhc_env(DHC_SUITES=str(suites(a=FAILING)))
    out = tmp_path / "r"
    proc = start(out, "--check", "stress.inventory", env=env)
    proc.stdout.close()  # `dhc run | head` after head has gone
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 1, stderr
    assert "Traceback" not in stderr and "stdout did not take the answer" in stderr
    [line] = [json.loads(x) for x in (out / "dhc.log.jsonl").read_text().splitlines()]
    assert line["msg"].startswith("Encountered FaultyInstance.") and line["metric"] == "cpu_cores"


def test_a_full_stdout_never_turns_a_verdict_into_a_crash(tmp_path, suites):
    incomplete = PASSING.replace('dhc_check.record("cpu_cores", 2, "count", dhc_devices[0])',
                                 'raise ValueError("cannot read the tool")')
    env = dhc_env(DHC_SUITES=str(suites(a=incomplete)))
    out = tmp_path / "r"
    with open("/dev/full", "w") as full:
        proc = start(out, "--check", "stress.inventory", env=env, stdout=full)
        stderr = proc.communicate(timeout=120)[1]
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr and "No space left on device" in stderr
    [line] = [json.loads(x) for x in (out / "dhc.log.jsonl").read_text().splitlines()]
    assert line["level"] == "warning" and "cannot read the tool" in line["msg"]


def test_a_full_stderr_costs_neither_the_progress_nor_the_verdict(tmp_path, suites):
    incomplete = PASSING.replace('dhc_check.record("cpu_cores", 2, "count", dhc_devices[0])',
                                 'raise ValueError("cannot read the tool")')
    out = tmp_path / "r"
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--out", str(out), "--check", "stress.inventory"],
                              stdout=subprocess.PIPE, stderr=full, text=True, timeout=120,
                              env=dhc_env(DHC_SUITES=str(suites(a=incomplete))))
    assert proc.returncode == 3
    assert proc.stdout.startswith("dhc verdict: Incomplete") and "cannot read the tool" in proc.stdout


# -- the caller's pytest setup has no say --------------------------------------------------------
def test_pytest_addopts_cannot_narrow_the_run(tmp_path, validate_report):
    env = dhc_env(PYTEST_ADDOPTS="-k inventory", PYTEST_PLUGINS="no_such_plugin_module")
    proc = dhc("run", "--check", "stress.inventory", "--check", "stress.dcgm", "--out", str(tmp_path / "r"), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = validate_report(tmp_path / "r" / "report.json")
    assert {c["check"]: c["status"] for c in report["checks"]} == {"stress.inventory": "Passed",
                                                                   "stress.dcgm": "Skipped"}


def test_a_pytest_configuration_above_the_suites_has_no_say(tmp_path, suites, validate_report):
    folder = suites(a=PASSING)
    (tmp_path / "pyproject.toml").write_text('[tool.pytest.ini_options]\naddopts = "-k nothing_matches"\n')
    proc = dhc("run", "--check", "stress.inventory", "--out", str(tmp_path / "r"), cwd=tmp_path,
               env=dhc_env(DHC_SUITES=str(folder)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert validate_report(tmp_path / "r" / "report.json")["checks"][0]["status"] == "Passed"


def test_a_broken_pytest_plugin_installed_beside_dhc_does_not_spoil_the_run(tmp_path, validate_report):
    site = tmp_path / "site"
    dist_info = site / "broken_plugin-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (site / "broken_plugin.py").write_text('raise RuntimeError("broken_plugin cannot start")\n')
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text("[pytest11]\nbroken = broken_plugin\n")
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    probe = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path / "test_nothing.py")],
                           capture_output=True, text=True, env=dhc_env(PYTHONPATH=str(site)), timeout=60)
    assert "broken_plugin cannot start" in probe.stdout + probe.stderr  # it does break an ordinary pytest
    proc = dhc("run", "--check", "stress.inventory", "--out", str(tmp_path / "r"), env=dhc_env(PYTHONPATH=str(site)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert validate_report(tmp_path / "r" / "report.json")["verdict"]["status"] == "Passed"


# -- one run, one folder -------------------------------------------------------------------------
def test_reusing_out_starts_clean_and_says_so(tmp_path, suites, validate_report):
    out = tmp_path / "r"
    failed = dhc("run", "--check", "stress.inventory", "--out", str(out), env=dhc_env(DHC_SUITES=str(suites(a=FAILING))))
    assert failed.returncode == 1 and "FaultyInstance" in (out / "dhc.log.jsonl").read_text()
    (out / "notes.txt").write_text("the operator's own file")
    (out / "nv-hostengine.log").write_text("an earlier run's host engine")
    passed = dhc("run", "--check", "stress.inventory", "--out", str(out))
    assert passed.returncode == 0, passed.stderr
    assert f"{out} held an earlier run (report.json, report.html, journal.jsonl, plan.json, dhc.log.jsonl, " \
           f"run-config.json, pytest.log, nv-hostengine.log): removed them" in passed.stderr
    assert not (out / "dhc.log.jsonl").exists()  # a Passed run writes no fault lines, and the old ones are gone
    assert validate_report(out / "report.json")["verdict"]["status"] == "Passed"
    assert (out / "notes.txt").read_text() == "the operator's own file"  # only dhc's own files go


# -- a CPU type where NVML shows GPUs ------------------------------------------------------------
def test_cpu_type_on_a_host_with_gpus_is_refused(tmp_path):
    env = dhc_env(PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(P5_RECORDING))
    proc = dhc("run", "--instance-type", "cpu", "--out", str(tmp_path / "r"), env=env)
    no_traceback(proc)
    assert proc.returncode == 2
    assert "--instance-type cpu names no GPUs, but NVML sees 8 GPU(s) on this host" in proc.stderr
    assert not (tmp_path / "r" / "report.json").exists()


def test_cpu_type_where_nvml_cannot_count_is_refused(tmp_path):
    recording = json.loads(P5_RECORDING.read_text())
    recording["errors"] = {"nvmlDeviceGetCount": "UNKNOWN"}
    (tmp_path / "odd.json").write_text(json.dumps(recording))
    env = dhc_env(PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(tmp_path / "odd.json"))
    proc = dhc("run", "--instance-type", "cpu", "--out", str(tmp_path / "r"), env=env)
    no_traceback(proc)
    assert proc.returncode == 2 and "could not count its GPUs" in proc.stderr

