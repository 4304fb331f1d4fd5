"""The pytest plugin end to end (pytester): outcomes map to statuses, the report is always valid."""

import json
import re
import textwrap
from pathlib import Path

import pytest

from dhc.thresholds import CATALOGUE

CONFTEST = 'pytest_plugins = ["dhc.plugin"]\n'


def selection_for(files: dict[str, str], args: tuple[str, ...]) -> list[str]:
    """--dhc-check for each check the files implement, unless the test selects itself: a run's plan
    must cover its selection, and these tests are about one check at a time, not a whole suite."""
    if any(a.startswith(("--dhc-check", "--dhc-suite", "--no-auto-selection")) for a in args):
        return []
    checks = re.findall(r"mark\.check\(['\"]([^'\"]+)['\"]\)", "".join(files.values()))
    return [f"--dhc-check={c}" for c in dict.fromkeys(checks) if c in CATALOGUE]


@pytest.fixture
def suite(pytester, thresholds_file, validate_report):
    """Write check files, run them through the plugin on the cpu type, return (outcome, report)."""
    def shorten(doc):
        for check in doc["profiles"]["quick"].values():
            check.update(expected_s=0.5, timeout_s=2)
        doc["instance_types"]["cpu"].pop("profiles")

    thresholds = thresholds_file(shorten)
    pytester.makeconftest(CONFTEST)

    def run(files: dict[str, str], *args: str, instance_type: str = "cpu", inprocess: bool = True):
        pytester.makepyfile(**{name: textwrap.dedent(body) for name, body in files.items()})
        out = pytester.path / "out"
        argv = ["-p", "no:cacheprovider", f"--dhc-out={out}", f"--dhc-thresholds={thresholds}",
                f"--dhc-instance-type={instance_type}", *selection_for(files, args),
                *[a for a in args if a != "--no-auto-selection"]]
        outcome = (pytester.runpytest_inprocess if inprocess else pytester.runpytest_subprocess)(*argv)
        path = out / "report.json"
        return outcome, (validate_report(path) if path.exists() else None)

    return run


PASSING = """
    import pytest

    @pytest.mark.check("stress.inventory")
    def test_inventory(dhc_check, dhc_devices):
        dhc_check.record("cpu_cores", 2, "count", dhc_devices[0])
"""


def statuses(report):
    return {c["check"]: c["status"] for c in report["checks"]}


def test_a_passing_check(suite):
    outcome, report = suite({"test_a": PASSING})
    assert outcome.ret == 0
    assert report["verdict"] == {"status": "Passed", "action": "None", "exit_code": 0, "reasons": []}
    check = report["checks"][0]
    assert check["measurements"][0]["judgement"] == "within"
    assert check["measurements"][0]["limit"]["value"] == 1
    assert report["devices"][0]["kind"] == "cpu"
    outcome.stdout.fnmatch_lines(["*dhc verdict: Passed*"])


def test_a_limit_missed_fails_naming_everything(suite):
    outcome, report = suite({"test_a": PASSING.replace('"cpu_cores", 2', '"cpu_cores", 0')})
    assert outcome.ret == 1
    assert report["verdict"]["status"] == "Failed" and report["verdict"]["action"] == "Replace"
    reason = report["verdict"]["reasons"][0]
    assert (reason["metric"], reason["value"], reason["limit"], reason["unit"], reason["comparison"]) == \
        ("cpu_cores", 0, 1, "count", "min")
    assert reason["device"]["kind"] == "cpu"
    outcome.stdout.fnmatch_lines(["*stress.inventory cpu_cores on cpu: measured 0 count, expected minimum 1 count*"])


@pytest.mark.parametrize(("body", "reason"), [
    ("raise RuntimeError('dcgmi crashed')", "check error: RuntimeError: dcgmi crashed"),
    ("assert 1 == 2, 'sloppy'", "check error: AssertionError: sloppy"),
    ("pytest.skip('no dcgmi')", "skipped, but not marked not-applicable: no dcgmi"),
    ("raise CheckIncomplete('dcgmi not on PATH')", "dcgmi not on PATH"),
    ("pass", "recorded no measurement"),
])
def test_what_cannot_decide_is_incomplete(suite, body, reason):
    source = f"""
        import pytest
        from dhc.errors import CheckIncomplete

        @pytest.mark.check("stress.dcgm")
        def test_dcgm(dhc_check):
            {body}
    """
    outcome, report = suite({"test_a": source}, instance_type="p5.48xlarge")
    assert outcome.ret == 3
    assert report["checks"][0]["status"] == "Incomplete"
    assert reason in report["checks"][0]["reason"]
    assert report["verdict"]["status"] == "Incomplete" and report["verdict"]["action"] == "None"


def test_a_check_that_does_not_use_the_recorder_cannot_pass(suite):
    source = """
        import pytest

        @pytest.mark.check("stress.inventory")
        def test_inventory():
            pass
    """
    outcome, report = suite({"test_a": source})
    assert outcome.ret == 3 and "does not use the dhc_check fixture" in report["checks"][0]["reason"]


def test_hardware_fault_raised_by_a_check_names_device_and_action(suite):
    source = """
        import pytest
        from dhc.errors import HardwareFault
        from dhc.model import Action, Device

        @pytest.mark.check("stress.gemm")
        def test_gemm(dhc_check):
            gpu = Device("gpu", 5, "H100", "GPU-5d7b", None, "00000000:A8:00.0")
            dhc_check.fault("result differs from the first run: 3 elements", gpu, Action.REPLACE)
    """
    outcome, report = suite({"test_a": source})
    assert outcome.ret == 1
    reason = report["verdict"]["reasons"][0]
    assert reason["device"]["uuid"] == "GPU-5d7b" and reason["action"] == "Replace"
    assert "3 elements" in reason["message"]


def test_not_applicable_and_threshold_skips_are_skipped(suite):
    source = PASSING + """
    from dhc.errors import NotApplicable

    @pytest.mark.check("stress.gemm")
    def test_gemm(dhc_check):
        raise NotApplicable("no tensor cores on this part")

    @pytest.mark.check("stress.dcgm")
    def test_dcgm(dhc_check):
        raise RuntimeError("must not run: thresholds skip it on cpu")
    """
    outcome, report = suite({"test_a": source})
    assert outcome.ret == 0
    assert statuses(report) == {"stress.inventory": "Passed", "stress.gemm": "Skipped", "stress.dcgm": "Skipped"}
    dcgm = next(c for c in report["checks"] if c["check"] == "stress.dcgm")
    assert "DCGM" in dcgm["reason"]


def test_uncalibrated_limit_is_incomplete(suite):
    source = """
        import pytest

        @pytest.mark.check("stress.gemm")
        def test_gemm(dhc_check):
            dhc_check.record("tflops_bf16", 120.0, "TFLOP/s")
    """
    outcome, report = suite({"test_a": source}, instance_type="g5.xlarge")
    assert outcome.ret == 3 and "not calibrated for ml.g5.xlarge" in report["checks"][0]["reason"]


def test_a_check_past_its_timeout_is_incomplete(suite):
    source = """
        import time, pytest

        @pytest.mark.check("stress.inventory")
        def test_inventory(dhc_check):
            time.sleep(30)
    """
    outcome, report = suite({"test_a": source})
    assert outcome.ret == 3
    assert "timed out running after 2 s" in report["checks"][0]["reason"]


def test_teardown_error_spoils_a_pass(suite):
    source = PASSING.replace("def test_inventory(dhc_check, dhc_devices):", """@pytest.fixture
    def broken():
        yield
        raise OSError("could not release the GPU")

    @pytest.mark.check("stress.inventory")
    def test_inventory(dhc_check, dhc_devices, broken):""").replace('\n    @pytest.mark.check("stress.inventory")\n    @pytest.fixture', "\n    @pytest.fixture", 1)
    outcome, report = suite({"test_a": source})
    assert report["checks"][0]["status"] == "Incomplete"
    assert "teardown failed" in report["checks"][0]["reason"] and outcome.ret == 3


def test_gpu_type_without_nvml_is_incomplete(suite):
    source = """
        import pytest

        @pytest.mark.check("stress.inventory")
        def test_inventory(dhc_check, dhc_devices):
            dhc_check.record("gpu_count", len(dhc_devices), "count")
    """
    outcome, report = suite({"test_a": source}, instance_type="p5.48xlarge")
    assert outcome.ret == 3
    assert "expects GPUs, but" in report["checks"][0]["reason"]


def test_selection_by_check_and_suite(suite):
    source = PASSING + """
    @pytest.mark.check("connectivity.allreduce")
    def test_allreduce(dhc_check):
        dhc_check.record("busbw_intra_node", 1.0, "GB/s")
    """
    _, report = suite({"test_a": source}, "--dhc-check=stress.inventory")
    assert statuses(report) == {"stress.inventory": "Passed"}
    assert report["run"]["selection"]["checks"] == ["stress.inventory"]
    outcome, report = suite({"test_a": source}, "--dhc-suite=InstanceConnectivity")
    assert statuses(report) == {"connectivity.allreduce": "Passed", "connectivity.efa": "Incomplete",
                                "connectivity.pairwise": "Incomplete"}  # selected, never planned
    assert outcome.ret == 3


@pytest.mark.parametrize(("args", "words"), [
    (["--dhc-check=stress.gmem"], "unknown check id 'stress.gmem'"),
    (["--dhc-suite=Stress"], "--dhc-suite: expected one of"),
    (["--dhc-profile=slow"], "--dhc-profile: expected one of quick, full"),
])
def test_bad_options_are_usage_errors(suite, args, words):
    outcome, report = suite({"test_a": PASSING}, *args)
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR and report is None
    outcome.stderr.fnmatch_lines([f"*{words}*"])


def test_unknown_instance_type_is_a_usage_error(suite):
    outcome, _ = suite({"test_a": PASSING}, instance_type="p9.xlarge")
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR
    outcome.stderr.fnmatch_lines(["*unknown instance type 'p9.xlarge'*"])


def test_unmarked_or_unknown_check_is_refused(suite):
    outcome, _ = suite({"test_a": "def test_x():\n    pass\n"})
    outcome.stderr.fnmatch_lines(["*must be marked @pytest.mark.check*"])
    outcome, _ = suite({"test_a": "import pytest\n@pytest.mark.check('stress.x')\ndef test_x():\n    pass\n"})
    outcome.stderr.fnmatch_lines(["*unknown check id 'stress.x'*"])


def test_collection_error_gives_an_incomplete_report(suite):
    outcome, report = suite({"test_a": PASSING, "test_b": "import torchy_not_installed\n"})
    assert report["verdict"]["status"] == "Incomplete" and outcome.ret == 3
    assert "collecting the checks failed" in report["run"]["ended_by"]
    assert "torchy_not_installed" in report["verdict"]["reasons"][0]["message"]


def test_xdist_workers_ship_measurements_to_the_report(suite, pytester):
    source = PASSING + """
    @pytest.mark.check("stress.gemm")
    def test_gemm(dhc_check, dhc_devices):
        dhc_check.record("tflops_fp32", 0.05, "TFLOP/s", dhc_devices[0])
        dhc_check.record("relative_to_median", 1.0, "ratio", dhc_devices[0])
    """
    outcome, report = suite({"test_a": source}, "-n", "2", inprocess=False)
    assert outcome.ret == 0, outcome.stdout.str()
    assert statuses(report) == {"stress.inventory": "Passed", "stress.gemm": "Passed"}
    gemm = next(c for c in report["checks"] if c["check"] == "stress.gemm")
    assert [m["name"] for m in gemm["measurements"]] == ["tflops_fp32", "relative_to_median"]
    journal = [json.loads(line) for line in (pytester.path / "out/journal.jsonl").read_text().splitlines()]
    assert sorted(e["event"] for e in journal) == ["delivered", "result", "result", "start", "start"]  # the log sink once


def test_a_crashed_xdist_worker_is_incomplete(suite):
    source = PASSING + """
    import os

    @pytest.mark.check("stress.gemm")
    def test_gemm(dhc_check):
        os._exit(9)
    """
    outcome, report = suite({"test_a": source}, "-n", "2", inprocess=False)
    assert outcome.ret == 3
    gemm = next(c for c in report["checks"] if c["check"] == "stress.gemm")
    assert gemm["status"] == "Incomplete" and "crash" in gemm["reason"]


# -- the plan covers the selection -------------------------------------------------------------------
TWO_CHECKS = PASSING + """
    @pytest.mark.check("stress.gemm")
    def test_gemm(dhc_check, dhc_devices):
        dhc_check.record("tflops_fp32", 0.05, "TFLOP/s", dhc_devices[0])
        dhc_check.record("relative_to_median", 1.0, "ratio", dhc_devices[0])
"""


def test_a_selected_check_left_out_by_k_is_incomplete_naming_it(suite):
    outcome, report = suite({"test_a": TWO_CHECKS}, "-k", "inventory")
    assert outcome.ret == 3
    assert statuses(report) == {"stress.inventory": "Passed", "stress.gemm": "Incomplete"}
    [reason] = report["verdict"]["reasons"]
    assert reason["check"] == "stress.gemm" and "selected but not planned" in reason["message"]
    assert report["run"]["selection"]["checks"] == ["stress.inventory", "stress.gemm"]


def test_pytest_addopts_narrowing_a_run_by_hand_is_incomplete(suite, monkeypatch):
    monkeypatch.setenv("PYTEST_ADDOPTS", "-k inventory")
    outcome, report = suite({"test_a": TWO_CHECKS}, inprocess=False)
    assert outcome.ret == 3 and statuses(report)["stress.gemm"] == "Incomplete"


def test_no_selection_means_every_check_must_be_planned(suite):
    outcome, report = suite({"test_a": PASSING}, "--no-auto-selection")
    assert outcome.ret == 3
    missing = {r["check"] for r in report["verdict"]["reasons"]}
    assert missing == {"stress.gemm", "stress.memtest", "stress.dcgm", "connectivity.efa",
                       "connectivity.allreduce", "connectivity.pairwise"}
    outcome.stdout.fnmatch_lines(["*Incomplete: connectivity.pairwise was selected but not planned*"])


def test_plan_coverage_holds_under_xdist(suite):
    outcome, report = suite({"test_a": TWO_CHECKS}, "-n", "2", "-k", "inventory", inprocess=False)
    assert outcome.ret == 3, outcome.stdout.str()
    assert statuses(report) == {"stress.inventory": "Passed", "stress.gemm": "Incomplete"}


# -- checks that use the devices never run at once -----------------------------------------------------
DEVICE_CHECKS = """
    import os, pathlib, pytest

    def note(name, dhc_check, dhc_devices):
        pathlib.Path(name).write_text(os.environ["PYTEST_XDIST_WORKER"])
        dhc_check.record("relative_to_median", 1.0, "ratio", dhc_devices[0])

    @pytest.mark.check("stress.gemm")
    def test_gemm_a(dhc_check, dhc_devices):
        note("gemm_a", dhc_check, dhc_devices)

    @pytest.mark.check("stress.gemm")
    def test_gemm_b(dhc_check, dhc_devices):
        note("gemm_b", dhc_check, dhc_devices)

    @pytest.mark.check("stress.gemm")
    def test_gemm_c(dhc_check, dhc_devices):
        note("gemm_c", dhc_check, dhc_devices)
"""


@pytest.mark.parametrize("dist", ["load", "loadgroup", "worksteal"])
def test_device_checks_share_one_worker_under_xdist(suite, pytester, dist):
    outcome, report = suite({"test_a": DEVICE_CHECKS}, "-n", "3", "--dist", dist, inprocess=False)
    workers = {(pytester.path / name).read_text() for name in ("gemm_a", "gemm_b", "gemm_c")}
    assert len(workers) == 1, workers  # one after another on one worker, never side by side
    assert [c["status"] for c in report["checks"]] == ["Passed"] * 3


def test_scope_of_an_unknown_node_is_the_device_group():
    from dhc.plugin.schedule import DEVICE_GROUP, scope_of

    assert scope_of("t.py::test_efa", "connectivity.efa") == "t.py::test_efa"  # reads the network only
    assert scope_of("t.py::test_gemm", "stress.gemm") == scope_of("t.py::test_x", None) == DEVICE_GROUP
    assert scope_of("t.py::test_inventory", "stress.inventory") == DEVICE_GROUP  # reads the GPUs idle


ORDERED = {
    "test_a_gemm": """
        import pytest

        @pytest.mark.check("stress.gemm")
        def test_gemm(dhc_check, dhc_devices):
            dhc_check.record("relative_to_median", 1.0, "ratio", dhc_devices[0])
    """,
    "test_b_memtest": """
        import pytest

        @pytest.mark.check("stress.memtest")
        def test_memtest(dhc_check, dhc_devices):
            dhc_check.record("copy_bandwidth", 5.0, "GB/s", dhc_devices[0])
    """,
    "test_z_inventory": PASSING,  # sorts last: collected after the checks that heat the GPUs
}


def journal_sequence(out):
    events = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    return [(e["event"], e.get("check") or e["result"]["check"]) for e in events if e["event"] in ("start", "result")]


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["one process", "xdist"])
def test_inventory_reads_the_gpus_before_any_check_heats_them(suite, pytester, workers):
    # before: inventory was collected (and, under -n, run on a free worker beside GEMM) after the burn,
    # so its idle temperature_c limit could fail on heat dhc itself caused
    outcome, report = suite(ORDERED, *workers, inprocess=not workers)
    assert outcome.ret == 0, outcome.stdout.str()
    assert journal_sequence(pytester.path / "out") == [
        ("start", "stress.inventory"), ("result", "stress.inventory"), ("start", "stress.gemm"),
        ("result", "stress.gemm"), ("start", "stress.memtest"), ("result", "stress.memtest")]


def test_xdist_each_is_refused(suite):
    outcome, report = suite({"test_a": PASSING}, "-n", "2", "--dist", "each", inprocess=False)
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR and report is None
    outcome.stderr.fnmatch_lines(["*-n 2 with --dist each would run dhc's checks that use the devices*"])


# -- before anything runs: GPUs a GPU-less type would pass unseen, a reused folder ------------------
P5_RECORDING = Path(__file__).parent / "data" / "nvml_p5_h100.json"


@pytest.mark.parametrize(("how", "named"), [("flag", "--dhc-instance-type cpu"),
                                            ("env", "instance type cpu (from env:DHC_INSTANCE_TYPE)")])
def test_a_cpu_type_on_a_host_with_gpus_is_refused(pytester, monkeypatch, how, named):
    # before: `pytest suites/ --dhc-instance-type cpu` on a P5 passed its 8 GPUs unseen (only dhc run refused)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent / "fakes"))
    monkeypatch.setenv("FAKE_NVML_FILE", str(P5_RECORDING))
    monkeypatch.setenv("DHC_IMDS", "off")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_a=textwrap.dedent(PASSING))
    args = ["--dhc-instance-type=cpu"] if how == "flag" else []
    if how == "env":
        monkeypatch.setenv("DHC_INSTANCE_TYPE", "cpu")
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--dhc-out={pytester.path / 'out'}",
                                            "--dhc-check=stress.inventory", *args)
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR
    outcome.stderr.fnmatch_lines([f"*{named} names no GPUs, but NVML sees 8 GPU(s) on this host; a run would "
                                  f"pass them unseen*"])
    assert not (pytester.path / "out" / "report.json").exists()


def test_a_reused_out_starts_clean_and_says_so(suite, pytester):
    # before: a second `pytest suites/ --dhc-out DIR` appended to the earlier run's journal, and kept its
    # fault log lines and DCGM output beside the new verdict
    out = pytester.path / "out"
    suite({"test_a": PASSING.replace('"cpu_cores", 2', '"cpu_cores", 0')})
    for name, text in {"dhc.log.jsonl": '{"msg":"Encountered FaultyInstance."}\n', "dcgm-diag.txt": "old\n",
                       "nv-hostengine.log": "old\n", "notes.txt": "the operator's own file"}.items():
        (out / name).write_text(text)
    outcome, report = suite({"test_a": PASSING})
    assert outcome.ret == 0 and report["verdict"]["status"] == "Passed"
    assert journal_sequence(out) == [("start", "stress.inventory"), ("result", "stress.inventory")]
    outcome.stdout.fnmatch_lines([f"{out} held an earlier run (report.json, report.html, journal.jsonl, plan.json, "
                                  f"dhc.log.jsonl, dcgm-diag.txt, nv-hostengine.log): removed them; one run, one folder"])
    assert sorted(p.name for p in out.iterdir()) == ["fleet-row.json", "journal.jsonl", "notes.txt", "plan.json",
                                                     "report.html", "report.json"]


# -- faults recorded before the check stops are kept ------------------------------------------------
@pytest.mark.parametrize(("stop", "why"), [
    ("raise CheckIncomplete('NCCL wrote no debug log (nccl-main-*.log)')", "NCCL wrote no debug log"),
    ("raise RuntimeError('rank 3 exited with 1')", "check error: RuntimeError: rank 3 exited with 1"),
    ("time.sleep(30)", "timed out running after 2 s"),
])
def test_a_fault_recorded_before_the_check_stops_still_fails_it(suite, stop, why):
    source = f"""
        import time, pytest
        from dhc.errors import CheckIncomplete
        from dhc.model import Action, Device

        @pytest.mark.check("stress.gemm")
        def test_gemm(dhc_check):
            dhc_check.fault("all-reduce over 8 ranks returned wrong values: 12 elements at 1024 B",
                            Device("gpu", 3, "H100", "GPU-3c1f"), Action.REPLACE)
            {stop}
    """
    outcome, report = suite({"test_a": source})
    assert outcome.ret == 1
    check = report["checks"][0]
    assert (check["status"], check["action"]) == ("Failed", "Replace")
    assert "returned wrong values: 12 elements" in check["reason"] and why in check["reason"]
    reasons = [(r["status"], r["action"], r["device"] and r["device"]["uuid"]) for r in report["verdict"]["reasons"]]
    assert reasons == [("Failed", "Replace", "GPU-3c1f"), ("Incomplete", "None", None)]
    assert why in report["verdict"]["reasons"][1]["message"]
    assert (report["verdict"]["status"], report["verdict"]["action"]) == ("Failed", "Replace")


def test_a_value_outside_its_limit_before_the_check_stops_still_fails_it(suite):
    source = """
        import pytest
        from dhc.errors import CheckIncomplete

        @pytest.mark.check("stress.inventory")
        def test_inventory(dhc_check, dhc_devices):
            dhc_check.record("cpu_cores", 0, "count", dhc_devices[0])
            dhc_check.record("memory_gib", 64, "GiB", dhc_devices[0])  # within: not a finding
            raise CheckIncomplete("kernel log unreadable")
    """
    outcome, report = suite({"test_a": source})
    assert outcome.ret == 1
    assert report["checks"][0]["status"] == "Failed"
    reasons = report["verdict"]["reasons"]
    assert [(r["status"], r["metric"]) for r in reasons] == [("Failed", "cpu_cores"), ("Incomplete", None)]
    assert "kernel log unreadable" in reasons[1]["message"]


def test_a_check_that_stops_with_only_values_within_limits_stays_incomplete(suite):
    source = PASSING.replace('dhc_devices[0])', 'dhc_devices[0])\n        raise RuntimeError("boom")')
    outcome, report = suite({"test_a": source})
    assert outcome.ret == 3
    assert (report["checks"][0]["status"], report["checks"][0]["reason"]) == ("Incomplete", "check error: RuntimeError: boom")


def test_a_metric_the_catalogue_does_not_declare_is_refused_never_passed(pytester):
    """A typo in a check's metric name is a value no limit can fail: record() refuses it, the check is Incomplete."""
    pytester.makeconftest('pytest_plugins = ["dhc.plugin"]\n')
    pytester.makepyfile(test_typo="""
        import pytest

        @pytest.mark.check("stress.inventory")
        def test_inventory(dhc_check, dhc_devices):
            dhc_check.record("cpu_cores", 2, "count", dhc_devices[0])
            dhc_check.record("temprature_c", 99, "C", dhc_devices[0])
    """)
    out = pytester.path / "out"
    result = pytester.runpytest("--dhc-instance-type", "cpu", "--dhc-out", str(out), "-p", "no:xdist")
    assert result.ret == 3
    check = json.loads((out / "report.json").read_text())["checks"][0]
    assert check["status"] == "Incomplete"
    assert "stress.inventory recorded 'temprature_c', a metric its catalogue entry does not declare" in check["reason"]


def test_informational_metrics_are_declared_by_pattern():
    from dhc.thresholds import CATALOGUE
    allreduce = CATALOGUE["connectivity.allreduce"]
    assert allreduce.declares("busbw_intra_node") and allreduce.declares("busbw_inter_node_ranks")
    assert allreduce.declares("busbw_nvlink_only_at_largest_size") and not allreduce.declares("busbw_intra_nod")
    assert CATALOGUE["stress.dcgm"].declares("results_skip") and not CATALOGUE["stress.dcgm"].declares("result_skip")
