"""stress.dcgm: the parser and judge on NVIDIA's real captures and on each layout and failure shape;
the host engine found, started and always stopped with fake dcgmi / nv-hostengine; dhc run end to end."""

import json
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from waiting import wait_ended

from dhc.errors import UsageError
from dhc.model import Action
from dhc.probes import dcgm, dcgm_hostengine, environment
from dhc.settings import Settings

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "dcgm"
DATA = Path(__file__).parent / "data" / "dcgm"
FAKES = Path(__file__).parent / "fakes"
P5_RECORDING = Path(__file__).parent / "data" / "nvml_p5_h100.json"
R, B, N = Action.REPLACE, Action.REBOOT, Action.NONE


def capture(name: str) -> str:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared capture {path} is not beside this checkout")
    return path.read_text()


def data(name: str) -> str:
    return (DATA / name).read_text()


# -- NVIDIA's captures ----------------------------------------------------------------------------
def test_dcgm4_capture_persistence_mode_off_is_a_configuration_problem_not_a_fault():
    faults, undecided, run = dcgm.assess(capture("diag_r2_fail_dcgm4.5.2.json"), dcgm.EXIT_TEST_FAILED)
    assert (run.layout, run.version, run.driver) == ("4.x", "4.5.2", "580.82.09")
    assert [(r.test, r.gpu, r.status) for r in run.results] == [("software", 0, "Fail"), ("memory", 0, "Pass"),
                                                                  ("pcie", 0, "Pass")]
    assert faults == []
    [reason] = undecided
    assert reason.startswith("configuration: DCGM software on GPU 0 failed on a setting, not the hardware")
    assert "Persistence mode for GPU 0 is disabled" in reason and "severity CONFIG" in reason
    assert "nvidia-smi -pm 1" in reason


def test_dcgm3_capture_passes_with_eud_skipped():
    run = dcgm.parse_diag(capture("diag_r3_pass_dcgm3_legacy.json"), 0)
    assert run.layout == "3.x" and len(run.results) == 16
    assert {r.gpu for r in run.results} == {None, 0}
    assert [r.gpu for r in run.results if r.category == "Deployment"] == [None] * 9  # node-level, not GPU 0
    assert dcgm.judge(run) == ([], [])


# -- each layout variant and failure shape (hand-written in dcgmi's formats, tests/data/dcgm) ----------
@pytest.mark.parametrize(("name", "code", "faults", "reasons"), [
    ("r2_4x_pass_4gpu.json", 0, [], []),
    ("text_before_json.txt", 0, [], []),
    ("r2_4x_nulls_info16.json", 0, [], []),
    ("r3_4x_isolate_gpu1_reset_gpu3.json", 226, [(1, R), (3, B)], []),
    ("r3_4x_isolate_gpu1_reset_gpu3.json", 205, [(1, R), (3, R)], []),  # dcgmi's own verdict: isolate
    ("r2_33_gpu_id.json", 226, [(2, B)], []),
    ("r2_32_gpu_ids_warning_string.json", 226, [(0, R), (1, R), (2, R), (3, R)], []),
    ("r1_4x_node_config.json", 226, [], ["configuration: DCGM software failed on a setting, not the hardware: "
                                         "Environment Variables: Found CUDA performance-limiting"]),
    ("r2_4x_gpu_persistence_config.json", 226, [], [f"configuration: DCGM software on GPU {i} failed on a setting, "
                                                    "not the hardware: Persistence Mode: Persistence mode for GPU "
                                                    f"{i} is disabled" for i in range(4)]),
    ("r3_4x_pcie_skip.json", 0, [], ["required test 'pcie' reported Skip on GPU 0"]),
    ("r2_4x_all_skip.json", 0, [], ["required test 'memory' reported Skip on GPU 0",
                                    "required test 'diagnostic' reported Skip on GPU 0",
                                    "required test 'pcie' reported Skip on GPU 0",
                                    "no DCGM test ran to completion: all 3 results were skipped or not run"]),
    ("r2_4x_summary_only_fail.json", 226, [(None, R)], []),  # a failure DCGM attached to no entity
    ("r2_4x_pass_4gpu.json", 226, [], ["dcgmi exited 226 (a test failed) but its JSON shows no failure"]),
    ("r2_4x_pass_4gpu.json", 1, [], ["dcgmi exited 1 although its JSON reports results"]),
])
def test_variant(name, code, faults, reasons):
    found, undecided, run = dcgm.assess(data(name), code)
    assert [(f.gpu, f.action) for f in found] == faults
    assert len(undecided) == len(reasons) and all(u.startswith(r) for u, r in zip(undecided, reasons, strict=True))


def test_4x_layout_details():
    run = dcgm.parse_diag(data("r2_4x_pass_4gpu.json"))
    software = [r for r in run.results if r.test == "software"]
    assert [(r.gpu, r.entity) for r in software] == [(None, ""), (0, "GPU 0"), (1, "GPU 1"), (2, "GPU 2"), (3, "GPU 3")]
    assert run.serials[2] == "1652023020002" and run.version == "4.2.3" and run.driver == "570.133.20"
    nulls = dcgm.parse_diag(data("r2_4x_nulls_info16.json"))
    assert len(nulls.results[1].info) == 16 and nulls.results[2].status == "Warn"
    assert nulls.results[2].warnings[0].message.startswith("Clocks for GPU 1 were optimized")


def test_fault_messages_name_the_gpu_error_category_and_severity():
    faults, _, _ = dcgm.assess(data("r3_4x_isolate_gpu1_reset_gpu3.json"), 226)
    assert faults[0].message == ("DCGM memory on GPU 1 failed: A memory mismatch was detected on GPU 1, but no error "
                                 "was reported by CUDA or NVML. (error 52, hardware memory, severity ISOLATE)")
    assert "(error 85, hardware memory, severity RESET)" in faults[1].message
    old, _, run = dcgm.assess(data("r2_32_gpu_ids_warning_string.json"), 226)
    assert run.layout == "3.x" and {r.status for r in run.results} == {"Pass", "Fail"}  # PASS / FAIL read as such
    assert old[2].message.startswith("DCGM PCIe on GPU 2 failed: Bandwidth of GPU 2") and "(error 30)" in old[2].message


def test_per_gpu_persistence_mode_off_is_configuration_never_a_replace():
    faults, undecided, run = dcgm.assess(data("r2_4x_gpu_persistence_config.json"), dcgm.EXIT_TEST_FAILED)
    assert faults == [] and [r.gpu for r in run.results if r.status == "Fail"] == [0, 1, 2, 3]
    assert all("(error 29, software other, severity CONFIG); fix the node's configuration" in u for u in undecided)
    assert all("`nvidia-smi -pm 1` as root" in u for u in undecided)


def test_a_real_fault_beside_persistence_mode_off_fails_only_its_gpu():
    document = json.loads(data("r2_4x_gpu_persistence_config.json"))
    memory = document["DCGM Diagnostic"]["test_categories"][1]["tests"][0]
    memory["results"][1].update(status="Fail", warnings=[{"error_category": 10, "error_id": 52, "error_severity": 2,
                                                          "warning": "A memory mismatch was detected on GPU 1"}])
    faults, undecided, _ = dcgm.assess(json.dumps(document), dcgm.EXIT_TEST_FAILED)
    assert [(f.gpu, f.action) for f in faults] == [(1, R)] and "severity ISOLATE" in faults[0].message
    assert len(undecided) == 4 and all(u.startswith("configuration: DCGM software on GPU") for u in undecided)


def test_33_deployment_row_names_its_gpu_and_its_text_key():
    [fault], _, _ = dcgm.assess(data("r2_33_gpu_id.json"), 226)
    assert fault.message.startswith("DCGM Page Retirement/Row Remap on GPU 2 failed: GPU 2 had uncorrectable")


@pytest.mark.parametrize(("name", "words"), [
    ("shape_results_string.json", "expected a list under 'DCGM Diagnostic'.test_categories[0].tests[2].results, "
                                  'got a string "Pass"; first bytes: '),
    ("shape_categories_lists.json", "expected an object under 'DCGM Diagnostic'.test_categories[0], got a list"),
    ("shape_root_list.json", "expected an object under 'DCGM Diagnostic', got a list"),
    ("shape_bad_gpu.json", "expected a GPU index (an integer or digits) under "
                           "'DCGM GPU Diagnostic'.test_categories[0].tests[0].results[0].gpu_ids, got a string \"GPU-0\""),
    ("shape_no_status.json", "expected a status string under 'DCGM Diagnostic'.test_categories[0].tests[0]"
                             ".results[0].status, got null"),
])
def test_unexpected_shape_is_undecided_with_the_path_never_an_exception(name, words):
    faults, undecided, run = dcgm.assess(data(name), 0)
    assert faults == [] and run is None
    [reason] = undecided
    assert reason.startswith("dcgmi exited 0: ") and words in reason and "first bytes: '{" in reason


@pytest.mark.parametrize(("output", "code", "words"), [
    ("", 0, "dcgmi exited 0: expected a JSON object in dcgmi's output, found none; first bytes: (empty output)"),
    ('{"DCGM Diagnostic": {"test_categories": [', 0, "found none; first bytes: '{\"DCGM Diagnostic\""),
    ('{"something": 1}', 0, "expected a 'DCGM Diagnostic' or 'DCGM GPU Diagnostic' object"),
    ("Segmentation fault (core dumped)", 139, "dcgmi exited 139: expected a JSON object"),
    ("", -9, "dcgmi was killed by signal 9"),
    ('{"DCGM Diagnostic": ' + "[" * 100000 + "]" * 100000 + "}", 0, "beyond what dhc reads (RecursionError"),
    ('{"DCGM GPU Diagnostic": {"test_categories": [{"tests": [{"name": "PCIe", "results": [{"status": "Pass", '
     '"gpu_ids": "' + "9" * 5000 + '"}]}]}]}}', 0, "beyond what dhc reads (ValueError"),
])
def test_unreadable_output_is_undecided(output, code, words):
    faults, undecided, run = dcgm.assess(output, code)
    assert faults == [] and run is None and words in undecided[0]


@pytest.mark.parametrize(("name", "code", "words"), [
    ("runtime_error_in_use.json", 222, "GPU in use by another DCGM client (dcgmi exit 222: Error: Unable to complete "
                                       "diagnostic for group 2. Return: (-34) : The requested operation could not be "
                                       "completed because the affected resource is in use); levels 3-4 need the GPUs"),
    ("runtime_error_already_running.json", 217, "GPU in use by another DCGM client (dcgmi exit 217: "),
    ("runtime_error_no_gpu.json", 227, "dcgmi runtime error (exit 227): Error: Unable to complete diagnostic for group "
                                       "2. Return: (-29) : No GPUs on the node are supported by DCGM"),
    ("no_host_engine.txt", 235, "dcgmi could not reach a DCGM host engine (exit 235): Error: unable to establish a "
                                "connection to the specified host: localhost Error: Unable to connect"),
])
def test_runs_that_did_not_happen_say_why(name, code, words):
    faults, undecided, _ = dcgm.assess(data(name), code)
    assert faults == [] and undecided[0].startswith(words)


@pytest.mark.parametrize("code", [222, 217, 202, 219])
def test_in_use_exit_codes_without_json(code):
    faults, undecided, _ = dcgm.assess("Error: Unable to complete diagnostic.\n", code)
    assert faults == [] and undecided[0].startswith(f"GPU in use by another DCGM client (dcgmi exit {code}: Error: ")
    assert "pause dcgm-exporter and any other DCGM client" in undecided[0]


def test_exit_205_without_json_is_a_replace():
    faults, undecided, run = dcgm.assess("", dcgm.EXIT_ISOLATE)
    assert run is None and undecided == [] and faults[0].action is Action.REPLACE and faults[0].gpu is None


def test_no_tests_is_undecided():
    empty = json.dumps({"DCGM Diagnostic": {"test_categories": []}, "metadata": {"version": "4.5.2"}})
    assert dcgm.assess(empty, 0)[1] == ["dcgmi reported no tests"]


@pytest.mark.parametrize(("severity", "action"), [
    (0, N), (1, N), (2, R), (3, R), (4, R), (5, None), (6, B), (None, R), (17, R)])
def test_action_for_severity_follows_dcgm_errors_h(severity, action):
    assert dcgm.action_for(severity) is action


def test_severity_table_is_dcgms():
    assert {k: v[0] for k, v in dcgm.SEVERITIES.items()} == {0: "NONE", 1: "MONITOR", 2: "ISOLATE", 3: "UNKNOWN",
                                                            4: "TRIAGE", 5: "CONFIG", 6: "RESET"}


# -- the host engine: real processes (fake binaries) -----------------------------------------------
@pytest.fixture
def fakes_env(monkeypatch, tmp_path):
    """The fakes first on PATH, their logs in tmp_path, and an empty tmp_path/proc: no other engine seen."""
    (tmp_path / "proc").mkdir()
    for key in [k for k in os.environ if k.startswith(("FAKE_", "DHC_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DCGMI_ARGS_LOG", str(tmp_path / "dcgmi-args"))
    monkeypatch.setenv("FAKE_NV_HOSTENGINE_ARGS_LOG", str(tmp_path / "hostengine-args"))
    return tmp_path


def engine_in(home: Path, configured: str | None, binary: str = "nv-hostengine"):
    """dcgm.host_engine with the fakes, seeing no other engine on the node (no pid file, an empty proc)."""
    return dcgm.host_engine("dcgmi", configured, binary, home, pid_files=(), proc=home / "proc")


def alive(pid: int) -> bool:
    return dcgm_hostengine._alive(pid)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def node_engine(tmp_path):
    """The node's own host engine (as the GPU Operator runs it): the fake, daemonized on a TCP port."""
    port, pid_file = free_port(), tmp_path / "node-engine.pid"
    binary = str(FAKES / "nv-hostengine")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_")}
    subprocess.run([binary, "-p", str(port), "--pid", str(pid_file)], check=True, timeout=30, capture_output=True,
                   env=env)
    yield f"127.0.0.1:{port}", int(pid_file.read_text())
    dcgm_hostengine.stop(binary, pid_file)


def test_configured_engine_that_answers_is_used_and_none_started(fakes_env, node_engine):
    address, pid = node_engine
    with engine_in(fakes_env, address) as engine:
        assert engine.address == address and "DHC_DCGM_HOSTENGINE" in engine.origin
    assert not (fakes_env / "hostengine-args").exists() and alive(pid)  # not ours: left running


def test_no_engine_answers_so_dhc_starts_one_and_stops_it(fakes_env):
    with engine_in(fakes_env, "127.0.0.1:9") as engine:
        socket_path = engine.address.removeprefix("unix://")
        pid = int((Path(socket_path).parent / "nv-hostengine.pid").read_text())
        assert alive(pid) and engine.origin.startswith("the nv-hostengine dhc started")
        assert engine.origin.endswith("; no other engine was visible from this process's /proc and pid files)")
        output, code = dcgm.run_diag("dcgmi", 1, 30, engine)
    assert code == 0 and not alive(pid) and not Path(socket_path).exists()
    probes = (fakes_env / "dcgmi-args").read_text().splitlines()
    assert probes == ["discovery -l --host 127.0.0.1:9",  # configured and local: localhost:5555 is not tried too
                      f"discovery -l --host unix://{socket_path}", f"diag -r 1 -j --host unix://{socket_path}"]
    assert probes[-1] == f"diag -r 1 -j --host unix://{socket_path}"
    assert f"-f {fakes_env / 'nv-hostengine.log'}" in (fakes_env / "hostengine-args").read_text()


@pytest.mark.parametrize(("environ", "start", "in_pod"), [
    ({}, "auto", False), ({"DHC_DCGM_START_HOSTENGINE": "Never "}, "never", False),
    ({"DHC_DCGM_START_HOSTENGINE": "always", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}, "always", True),
    ({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, "auto", True), ({"KUBERNETES_SERVICE_HOST": ""}, "auto", False)])
def test_start_hostengine_setting(environ, start, in_pod):
    settings = Settings.from_env(environ)
    assert (settings.dcgm_start_hostengine, settings.in_kubernetes) == (start, in_pod)


def test_a_bad_start_hostengine_setting_names_the_variable():
    with pytest.raises(UsageError, match=r"DHC_DCGM_START_HOSTENGINE: expected auto, never or always, got 'yes'"):
        Settings.from_env({"DHC_DCGM_START_HOSTENGINE": "yes"})


@pytest.mark.parametrize(("start", "in_pod", "words"), [
    ("auto", True, "dhc does not start one inside a pod, where the node's other host engines (the GPU Operator's, "
                   "dcgm-exporter's embedded one) cannot be seen without hostPID (set DHC_DCGM_HOSTENGINE to the "
                   "node's engine, or DHC_DCGM_START_HOSTENGINE=always to allow starting one)"),
    ("never", False, "dhc does not start one (DHC_DCGM_START_HOSTENGINE=never)"),
    ("never", True, "dhc does not start one (DHC_DCGM_START_HOSTENGINE=never)"),
])
def test_no_engine_answers_and_dhc_may_not_start_one(fakes_env, start, in_pod, words):
    with pytest.raises(dcgm.HostEngineUnavailable) as caught:
        with dcgm.host_engine("dcgmi", "127.0.0.1:9", "nv-hostengine", fakes_env, pid_files=(),
                              proc=fakes_env / "proc", start=start, in_pod=in_pod):
            pytest.fail("no engine answers and none may be started")
    assert str(caught.value) == ("no DCGM host engine answered at 127.0.0.1:9 (Error: Unable to connect to host "
                                 f"engine. Host engine connection invalid/disconnected.); {words}")
    assert not (fakes_env / "hostengine-args").exists()  # nv-hostengine never ran


@pytest.mark.parametrize("start", ["auto", "never", "always"])
def test_an_engine_that_answers_is_used_in_a_pod_whatever_the_mode(fakes_env, node_engine, start):
    address, pid = node_engine
    with dcgm.host_engine("dcgmi", address, "nv-hostengine", fakes_env, pid_files=(), proc=fakes_env / "proc",
                          start=start, in_pod=True) as engine:
        assert engine.address == address
    assert not (fakes_env / "hostengine-args").exists() and alive(pid)


def test_always_starts_one_inside_a_pod_and_stops_it(fakes_env):
    with dcgm.host_engine("dcgmi", None, "nv-hostengine", fakes_env, pid_files=(), proc=fakes_env / "proc",
                          start="always", in_pod=True) as engine:
        pid = int((Path(engine.address.removeprefix("unix://")).parent / "nv-hostengine.pid").read_text())
        assert alive(pid) and engine.origin.startswith("the nv-hostengine dhc started")
    assert not alive(pid)


@pytest.mark.parametrize(("configured", "tried"), [
    (None, ["localhost"]), ("10.0.3.7:5555", ["10.0.3.7:5555", "localhost"]), ("localhost:5556", ["localhost:5556"]),
    ("unix:///run/nvidia/dcgm.sock", ["unix:///run/nvidia/dcgm.sock", "localhost"])])
def test_which_engines_are_tried_before_starting_one(configured, tried):
    assert [address for address, _ in dcgm_hostengine._candidates(configured)] == tried


@pytest.mark.parametrize("ignore_term", ["", "1"])
def test_the_started_engine_is_stopped_on_an_interrupt(fakes_env, monkeypatch, ignore_term):
    monkeypatch.setenv("FAKE_NV_HOSTENGINE_IGNORE_TERM", ignore_term)  # one that ignores SIGTERM gets SIGKILL
    with pytest.raises(KeyboardInterrupt):
        with engine_in(fakes_env, None) as engine:
            pid = int((Path(engine.address.removeprefix("unix://")).parent / "nv-hostengine.pid").read_text())
            raise KeyboardInterrupt
    assert not alive(pid)


def test_another_engine_on_the_node_that_does_not_answer_is_not_joined_by_a_second(fakes_env):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = fakes_env / "nvhostengine.pid"
        pid_file.write_text(f"{sleeper.pid}\n")
        with pytest.raises(dcgm.HostEngineUnavailable) as caught:
            with dcgm.host_engine("dcgmi", None, "nv-hostengine", fakes_env, pid_files=[str(pid_file)],
                                  proc=fakes_env / "proc"):
                pytest.fail("must not run against a second host engine")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert f"another nv-hostengine runs on this node (pid {sleeper.pid}, from {pid_file}) but does not answer (tried " \
           "localhost (Error: Unable to connect to host engine. Host engine connection invalid/disconnected.))" \
        in str(caught.value)
    assert "NVIDIA does not support two host engines on one node" in str(caught.value)
    assert not (fakes_env / "hostengine-args").exists()


def test_another_engine_seen_by_name_in_proc(fakes_env):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        (fakes_env / "proc" / str(sleeper.pid)).mkdir()
        (fakes_env / "proc" / str(sleeper.pid) / "comm").write_text("nv-hostengine\n")
        (fakes_env / "proc" / "1").mkdir()
        (fakes_env / "proc" / "1" / "comm").write_text("systemd\n")
        with pytest.raises(dcgm.HostEngineUnavailable, match=rf"\(pid {sleeper.pid}, seen in {fakes_env}/proc\)"):
            with engine_in(fakes_env, None):
                pytest.fail("must not run against a second host engine")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_nv_hostengine_that_finds_another_running_names_both(fakes_env, node_engine):
    _, other = node_engine
    pid_file = next(fakes_env.glob("node-engine.pid"))
    with pytest.raises(dcgm.HostEngineUnavailable) as caught:
        dcgm_hostengine._start([str(FAKES / "nv-hostengine"), "-d", str(fakes_env / "s"), "--pid", str(pid_file)],
                               "the nv-hostengine dhc started (x)")
    assert str(caught.value).startswith(f"the nv-hostengine dhc started (x) refused to start: another nv-hostengine "
                                        f"already runs (pid {other})")


def test_engine_that_cannot_start_or_is_missing(fakes_env, monkeypatch):
    monkeypatch.setenv("FAKE_NV_HOSTENGINE_FAIL", "1")
    with pytest.raises(dcgm.HostEngineUnavailable, match=r"failed to start \(exit 1\): Err: Failed to start DCGM"):
        with engine_in(fakes_env, None):
            pass
    with pytest.raises(dcgm.HostEngineUnavailable, match="no DCGM host engine answers .*localhost.* dhc cannot start "
                                                         "one: nv-hostengine-missing is not on PATH"):
        with engine_in(fakes_env, None, "nv-hostengine-missing"):
            pass


def test_run_diag_kills_a_hung_dcgmi(fakes_env, monkeypatch, node_engine):
    monkeypatch.setenv("FAKE_DCGMI_SLEEP", "30")
    with pytest.raises(dcgm.DcgmTimeout, match="ran past 0.5 s"):
        dcgm.run_diag(str(FAKES / "dcgmi"), 2, 0.5, dcgm.Endpoint(node_engine[0], "test"))


# -- end to end: dhc run with the fakes on PATH ----------------------------------------------------
def dhc_run(tmp_path, output_file, exit_code, *args, sleep="0", umask=None, **extra):
    """dhc run with the fakes, outside a pod unless ``extra`` says otherwise (so a CI runner in a pod gets the same)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_", "KUBERNETES_"))}
    env.update(PATH=f"{FAKES}{os.pathsep}{env['PATH']}", PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(P5_RECORDING),
               FAKE_DCGMI_OUTPUT=str(output_file), FAKE_DCGMI_EXIT=str(exit_code), FAKE_DCGMI_SLEEP=sleep,
               FAKE_DCGMI_ARGS_LOG=str(tmp_path / "dcgmi-args"), DHC_IMDS="off", DHC_INSTANCE_ID="i-0abc",
               FAKE_NV_HOSTENGINE_ARGS_LOG=str(tmp_path / "hostengine-args"), **extra)
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--instance-type", "p5.48xlarge", "--check",
                           "stress.dcgm", "--out", str(tmp_path / "r"), *args], capture_output=True, text=True,
                          env=env, timeout=120, preexec_fn=None if umask is None else lambda: os.umask(umask))
    return proc, json.loads((tmp_path / "r" / "report.json").read_text())


def started_engine_is_gone(tmp_path) -> bool:
    """dhc started its own engine for the run, and nothing of it is left."""
    lines = (tmp_path / "hostengine-args").read_text().splitlines()
    started = [line for line in lines if not line.startswith(("#", "--term"))]
    [pid] = [int(line.split()[-1]) for line in lines if line.startswith("# daemon pid")]
    pid_file = Path(started[0].split("--pid ")[1].split()[0])
    return len(started) == 1 and not alive(pid) and not pid_file.parent.exists()


@pytest.mark.slow
def test_fake_dcgmi_failure_names_the_gpu(tmp_path, validate_report):
    fixture = DATA / "r3_4x_isolate_gpu1_reset_gpu3.json"
    proc, report = dhc_run(tmp_path, fixture, 205, "--profile", "full")
    validate_report(report)
    assert proc.returncode == 1
    [check] = report["checks"]
    assert check["status"] == "Failed"
    assert [(f["device"]["uuid"], f["action"]) for f in check["findings"]] == [
        ("GPU-7b9e4d22-31f0-4c8a-b6d2-0e5a9c3f4b02", "Replace"), ("GPU-0e4f3b9a-6c71-4d2e-a5b8-9f1c7e2d6a04", "Replace")]
    diag = (tmp_path / "dcgmi-args").read_text().splitlines()[-1]
    assert diag.startswith("diag -r 4 -j --host unix://")  # full profile: level 4, against the engine dhc started
    assert (tmp_path / "r" / "dcgm-diag.txt").read_text() == fixture.read_text()
    assert started_engine_is_gone(tmp_path)


@pytest.mark.slow
def test_fake_dcgmi_pass_config_and_garbage(tmp_path):
    proc, report = dhc_run(tmp_path, DATA / "text_before_json.txt", 0, umask=0o077)
    assert proc.returncode == 0 and report["checks"][0]["status"] == "Passed"
    assert (tmp_path / "dcgmi-args").read_text().splitlines()[-1].startswith("diag -r 2 -j ")  # quick: level 2
    kept = tmp_path / "r" / "dcgm-diag.txt"  # 0644 like every run file, whatever the umask
    assert kept.read_text() == data("text_before_json.txt") and kept.stat().st_mode & 0o777 == 0o644
    proc, report = dhc_run(tmp_path, DATA / "r2_4x_gpu_persistence_config.json", 226)
    [check] = report["checks"]
    assert proc.returncode == 3 and check["status"] == "Incomplete"
    assert check["reason"].startswith("configuration: DCGM software on GPU 0 failed on a setting, not the hardware")
    assert check["reason"].count("configuration: DCGM software on GPU") == 4
    assert not any(f.get("action") == "Replace" for f in check["findings"])
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("Segmentation fault (core dumped)\n")
    proc, report = dhc_run(tmp_path, garbage, 139)
    assert proc.returncode == 3 and "dcgmi exited 139" in report["checks"][0]["reason"]


@pytest.mark.slow
def test_the_nodes_host_engine_is_used_when_configured(tmp_path, node_engine):
    address, pid = node_engine
    proc, report = dhc_run(tmp_path, DATA / "runtime_error_in_use.json", 222, DHC_DCGM_HOSTENGINE=address)
    assert proc.returncode == 3 and report["checks"][0]["status"] == "Incomplete"
    reason = report["checks"][0]["reason"]
    assert reason.startswith("GPU in use by another DCGM client (dcgmi exit 222: ")
    assert reason.endswith(f"[host engine: the node's host engine at {address} (DHC_DCGM_HOSTENGINE)]")
    assert (tmp_path / "dcgmi-args").read_text().splitlines()[-1] == f"diag -r 2 -j --host {address}"
    assert not (tmp_path / "hostengine-args").exists() and alive(pid)


@pytest.mark.slow
def test_no_host_engine_and_none_to_start_is_incomplete(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    proc, report = dhc_run(tmp_path, DATA / "r2_4x_pass_4gpu.json", 0, DHC_DCGM_HOSTENGINE=address,
                           DHC_NV_HOSTENGINE="nv-hostengine-not-installed")
    assert proc.returncode == 3 and report["checks"][0]["status"] == "Incomplete"
    assert report["checks"][0]["reason"].startswith(
        f"no DCGM host engine answers (tried {address} (Error: Unable to connect to host engine. Host engine "
        "connection invalid/disconnected.)), and dhc cannot start one: nv-hostengine-not-installed is not on PATH")
    assert "diag" not in (tmp_path / "dcgmi-args").read_text()


@pytest.mark.slow
def test_a_hung_dcgmi_is_incomplete_and_the_engine_is_stopped(tmp_path, thresholds_file):
    def short(document):
        document["profiles"]["quick"]["stress.dcgm"].update(expected_s=1, timeout_s=12)

    proc, report = dhc_run(tmp_path, DATA / "r2_4x_pass_4gpu.json", 0, "--thresholds", str(thresholds_file(short)),
                           sleep="60")
    assert proc.returncode == 3 and report["checks"][0]["status"] == "Incomplete"
    assert "ran past" in report["checks"][0]["reason"] or "timed out" in report["checks"][0]["reason"]
    assert started_engine_is_gone(tmp_path)


@pytest.mark.slow
def test_dcgmi_missing_on_a_gpu_type_is_incomplete(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_", "KUBERNETES_"))}
    env.update(PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(P5_RECORDING), DHC_IMDS="off",
               DHC_DCGMI="dcgmi-not-installed-here")
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--instance-type", "p5.48xlarge", "--check",
                           "stress.dcgm", "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 3 and "'dcgmi-not-installed-here' is not on PATH" in proc.stdout


@pytest.mark.slow
def test_inside_a_pod_dhc_starts_no_engine_unless_told(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    proc, report = dhc_run(tmp_path, DATA / "r2_4x_pass_4gpu.json", 0, DHC_DCGM_HOSTENGINE=address,
                           KUBERNETES_SERVICE_HOST="10.96.0.1")
    assert proc.returncode == 3 and report["checks"][0]["status"] == "Incomplete"
    assert report["checks"][0]["reason"].startswith(
        f"no DCGM host engine answered at {address} (Error: Unable to connect to host engine. Host engine connection "
        "invalid/disconnected.); dhc does not start one inside a pod")
    assert not (tmp_path / "hostengine-args").exists() and "diag" not in (tmp_path / "dcgmi-args").read_text()
    proc, report = dhc_run(tmp_path, DATA / "r2_4x_pass_4gpu.json", 0, DHC_DCGM_HOSTENGINE=address,
                           KUBERNETES_SERVICE_HOST="10.96.0.1", DHC_DCGM_START_HOSTENGINE="always")
    assert proc.returncode == 0 and report["checks"][0]["status"] == "Passed"
    assert started_engine_is_gone(tmp_path)


@pytest.mark.slow
def test_a_bad_start_hostengine_value_is_a_usage_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_", "KUBERNETES_"))}
    env.update(PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(P5_RECORDING), DHC_IMDS="off", DHC_DCGM_START_HOSTENGINE="on")
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--instance-type", "p5.48xlarge", "--check",
                           "stress.dcgm", "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2 and "DHC_DCGM_START_HOSTENGINE: expected auto, never or always, got 'on'" in proc.stderr
    assert not (tmp_path / "r").exists()


# -- the DCGM version in the report: dcgmi --version through run_tool -------------------------------
def test_dcgm_version_from_dcgmi(fakes_env, monkeypatch):
    monkeypatch.setenv("FAKE_DCGMI_VERSION", "4.6.0")
    assert environment._dcgm_version("dcgmi") == "4.6.0"
    assert environment._dcgm_version("dcgmi-not-installed") is None and environment._dcgm_version(None) is None


def test_a_hung_dcgmi_version_is_unknown_and_killed_with_its_children(tmp_path, monkeypatch):
    hung = tmp_path / "dcgmi"
    hung.write_text(f"#!/bin/sh\nsleep 60 &\necho $! > {tmp_path}/child\nwait\n")
    hung.chmod(0o755)
    monkeypatch.setattr(environment, "VERSION_TIMEOUT_S", 1.0)
    assert environment._dcgm_version(str(hung)) is None
    wait_ended(int((tmp_path / "child").read_text()), what="the hung dcgmi's child")  # the group went, not only dcgmi


@pytest.mark.slow
@pytest.mark.parametrize(("fixture", "code", "status"), [("r2_4x_pass_4gpu.json", 0, "Incomplete"),
                                                         ("r3_4x_isolate_gpu1_reset_gpu3.json", 226, "Failed")])
def test_output_that_cannot_be_kept_never_passes_and_never_hides_a_fault(tmp_path, fixture, code, status):
    """A file size limit (ulimit -f, as a quota would) lets report.json through but not dcgmi's 1 MiB output."""
    output = tmp_path / "big.txt"
    output.write_text("Successfully ran diagnostic for group.\n" * 30000 + data(fixture))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_", "PYTEST_", "KUBERNETES_"))}
    env.update(PATH=f"{FAKES}{os.pathsep}{env['PATH']}", PYTHONPATH=str(FAKES), FAKE_NVML_FILE=str(P5_RECORDING),
               FAKE_DCGMI_OUTPUT=str(output), FAKE_DCGMI_EXIT=str(code), DHC_IMDS="off", DHC_INSTANCE_ID="i-0abc")

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    suites = Path(__file__).resolve().parent.parent / "suites"
    subprocess.run([sys.executable, "-m", "pytest", str(suites), f"--dhc-out={tmp_path / 'r'}", "-p", "no:xdist",
                    "--dhc-instance-type=p5.48xlarge", "--dhc-check=stress.dcgm"], capture_output=True, text=True,
                   env=env, timeout=120, preexec_fn=limit_file_size)
    [check] = json.loads((tmp_path / "r" / "report.json").read_text())["checks"]
    assert check["status"] == status
    if status == "Incomplete":
        assert check["reason"].startswith(f"dcgmi's output could not be kept: cannot write {tmp_path}/r/dcgm-diag.txt: "
                                          "File too large")
    else:
        assert [f["action"] for f in check["findings"]] == ["Replace", "Reboot"]


def test_odd_pid_files_and_process_names_are_never_an_escaping_exception(tmp_path):
    """Any process may name itself in any bytes and any file may sit at a pid file's path: none stops the check."""
    proc = tmp_path / "proc"
    for name, comm in (("4242", b"\xff\xfe-engine\n"), ("1a", b"nv-hostengine\n")):
        (proc / name).mkdir(parents=True)
        (proc / name / "comm").write_bytes(comm)
    pid_files = []
    for i, content in enumerate((b"\xff\xfe", "²".encode(), b"9" * 25, b"0", b"-5")):
        pid_files.append(str(tmp_path / f"engine{i}.pid"))
        Path(pid_files[-1]).write_bytes(content)
    assert dcgm_hostengine._other_engines(pid_files, proc) == []
