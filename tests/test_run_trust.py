"""dhc run stands behind its child's report only when it is whole and its verdict follows from its checks; a
refused report is rebuilt and the refusal said, and only the report dhc run stands behind reaches the
sinks, each once, a stop notwithstanding; a child
that died before collecting still leaves a row for every selected check."""

import json
import os
import signal
import subprocess
import sys

import pytest
from dhc_process import PASSING, dhc, dhc_env, suites_maker
from test_report_model import a_report, failed_gemm
from waiting import wait_for

from dhc.cli.trust import childs_report
from dhc.model import CheckResult, Status

FAILING = PASSING.replace('"cpu_cores", 2', '"cpu_cores", 0')


def written(tmp_path, document):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(document))
    return path


# -- unit: what is refused, by name ------------------------------------------------------------------------
def test_a_whole_report_of_this_run_is_trusted(tmp_path):
    document = a_report([failed_gemm(512.0)])
    typed, refused = childs_report(written(tmp_path, document), "r1")
    assert refused is None and typed.verdict.exit_code == 1 and typed.to_dict() == document


def test_a_stored_verdict_its_checks_contradict_is_refused(tmp_path):
    """A Failed check under a Passed verdict (and exit 0): the model would read it, dhc run must not."""
    document = a_report([failed_gemm(512.0)])
    document["verdict"] = {"status": "Passed", "action": "None", "reasons": [], "exit_code": 0}
    typed, refused = childs_report(written(tmp_path, document), "r1")
    assert typed is None
    assert refused == "verdict: it says Passed (exit 0), but its checks make it Failed (exit 1)"


def test_a_computed_field_that_disagrees_is_refused_by_key(tmp_path):
    document = a_report([failed_gemm(512.0)])
    document["verdict"]["exit_code"] = 0  # the model computes 1 from Failed and would drop this silently
    assert childs_report(written(tmp_path, document), "r1") == (
        None, "verdict.exit_code: it says 0, the model makes it 1")
    document = a_report([failed_gemm(512.0)])
    document["checks"][0]["action"] = "None"
    assert childs_report(written(tmp_path, document), "r1")[1] == \
        'checks[0].action: it says "None", the model makes it "Replace"'


def test_an_unknown_key_or_a_value_outside_its_enum_is_refused_by_key(tmp_path):
    document = a_report([failed_gemm(512.0)])
    document["verdict"]["override"] = "Passed"
    assert childs_report(written(tmp_path, document), "r1")[1] == \
        "verdict.override: a key the report model does not have"
    document = a_report([failed_gemm(512.0)])
    document["checks"][0]["status"] = "Pass"
    refused = childs_report(written(tmp_path, document), "r1")[1]
    assert refused.startswith("report.json: checks[0].status: expected one of Passed, Failed, Incomplete, Skipped")


def test_a_report_that_drops_or_contradicts_a_journaled_result_is_refused(tmp_path):
    """Its own verdict may follow from its checks, yet a Failed row left out turns it into a pass."""
    passed = CheckResult("stress.inventory", "InstanceStress", Status.PASSED, nodeid="a.py::test_inventory")
    path = written(tmp_path, a_report([passed]))
    assert childs_report(path, "r1", [passed], ["stress.inventory"]) == (childs_report(path, "r1")[0], None)
    gemm = failed_gemm(512.0)
    assert childs_report(path, "r1", [passed, gemm], ["stress.inventory"])[1] == \
        "checks: stress/test_gemm.py::test_gemm is Failed in the run's journal but not in the report"
    flipped = CheckResult("stress.inventory", "InstanceStress", Status.FAILED, "x", nodeid="a.py::test_inventory")
    assert childs_report(path, "r1", [flipped], [])[1] == \
        "checks: a.py::test_inventory is Failed in the run's journal but Passed in the report"
    assert childs_report(path, "r1", [passed], ["stress.inventory", "stress.gemm"])[1] == \
        "checks: no row for the selected stress.gemm"


def test_another_runs_report_or_none_at_all(tmp_path):
    document = a_report([CheckResult("stress.inventory", "InstanceStress", Status.PASSED)])
    assert childs_report(written(tmp_path, document), "r2")[1] == "run.run_id: it is run 'r1''s report, not this run's ('r2')"
    assert childs_report(tmp_path / "none.json", "r1") == (None, None)


# -- real processes ----------------------------------------------------------------------------------------
TAMPERING = '''
import json
import pytest

pytest_plugins = ["dhc.plugin"]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    """After the plugin wrote its Failed report: claim it passed."""
    path = session.config.stash[__import__("dhc.plugin", fromlist=["RUN_KEY"]).RUN_KEY].out / "report.json"
    document = json.loads(path.read_text())
    document["verdict"] = {"status": "Passed", "action": "None", "reasons": [], "exit_code": 0}
    path.write_text(json.dumps(document))
    session.exitstatus = 0
'''


@pytest.mark.slow
def test_a_child_report_whose_verdict_its_checks_contradict_never_exits_0(tmp_path, validate_report):
    suites = suites_maker(tmp_path)(a=FAILING)
    (suites / "conftest.py").write_text(TAMPERING)
    proc = dhc("run", "--check", "stress.inventory", "--out", str(tmp_path / "r"),
               env=dhc_env(DHC_SUITES=str(suites)), timeout=300)
    assert proc.returncode == 1, proc.stderr  # rebuilt from the journal: the Failed result stands
    assert "dhc: the child's report.json was refused, so dhc rebuilt the report from the journal: verdict: it " \
           "says Passed (exit 0), but its checks make it Failed (exit 1)" in proc.stderr
    report = validate_report(tmp_path / "r" / "report.json")
    assert report["verdict"]["status"] == "Failed"
    assert report["run"]["ended_by"] == ("pytest ended (exit status 0) and its report was refused: verdict: it says "
                                         "Passed (exit 0), but its checks make it Failed (exit 1)")


FLIPPING = TAMPERING.replace('    document["verdict"] =', '    document["checks"][0].update(status="Passed", reason="", findings=[], action="None")\n'
                                                        '    document["verdict"] =')


@pytest.mark.slow
def test_a_child_report_that_flips_its_failed_check_never_exits_0(tmp_path):
    """Row and verdict agree (both Passed), but the run journaled the check Failed."""
    suites = suites_maker(tmp_path)(a=FAILING)
    (suites / "conftest.py").write_text(FLIPPING)
    proc = dhc("run", "--check", "stress.inventory", "--out", str(tmp_path / "r"),
               env=dhc_env(DHC_SUITES=str(suites)), timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "checks: test_a.py::test_inventory is Failed in the run's journal but Passed in the report" in proc.stderr
    lines = [json.loads(x) for x in (tmp_path / "r" / "dhc.log.jsonl").read_text().splitlines()]
    assert sorted(x["check"] for x in lines) == ["run", "stress.inventory"], lines  # the rebuilt report's, once


LYING_BEFORE_THE_REPORT = '''
import dataclasses
import pytest
from dhc.model import Status
from dhc.plugin import RUN_KEY

pytest_plugins = ["dhc.plugin"]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    """Before the plugin writes (and, before the fix, delivered) its report: every result Passed; the journal keeps Failed."""
    run = session.config.stash[RUN_KEY]
    run.results = {k: dataclasses.replace(r, status=Status.PASSED, reason="", findings=()) for k, r in run.results.items()}
'''


@pytest.mark.slow
def test_a_refused_child_report_never_reaches_a_sink_the_rebuilt_one_does(tmp_path):
    """The child's report is whole and self-consistent (Passed) but contradicts its journal (Failed): dhc run
    refuses it, and the termination message the controller reads carries the rebuilt Failed, not Passed."""
    suites = suites_maker(tmp_path)(a=FAILING)
    (suites / "conftest.py").write_text(LYING_BEFORE_THE_REPORT)
    proc = dhc("run", "--check", "stress.inventory", "--sink", "termination", "--out", str(tmp_path / "r"),
               env=dhc_env(DHC_SUITES=str(suites), DHC_TERMINATION_LOG=str(tmp_path / "term.log")), timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "is Failed in the run's journal but Passed in the report" in proc.stderr
    assert json.loads((tmp_path / "term.log").read_text())["status"] == "Failed"
    assert proc.stderr.count("handed to the controller") == 1
    journal = [json.loads(x) for x in (tmp_path / "r" / "journal.jsonl").read_text().splitlines()]
    assert sorted(e["sink"] for e in journal if e["event"] == "delivered") == ["dhc-sink-log", "dhc-sink-termination"]


@pytest.mark.slow
def test_a_child_that_died_collecting_leaves_a_row_for_each_selected_check(tmp_path, validate_report):
    dying = "import os, signal\n\nos.kill(os.getpid(), signal.SIGKILL)\n"
    suites = suites_maker(tmp_path)(a=dying)
    proc = dhc("run", "--check", "stress.gemm", "--out", str(tmp_path / "r"), env=dhc_env(DHC_SUITES=str(suites)),
               timeout=300)
    assert proc.returncode == 3, proc.stderr
    report = validate_report(tmp_path / "r" / "report.json")
    [row] = report["checks"]
    assert (row["check"], row["status"]) == ("stress.gemm", "Incomplete")
    assert row["reason"].startswith("stress.gemm was selected but never planned, so this run cannot vouch for it: "
                                    "the pytest child was killed by SIGKILL")


@pytest.mark.slow
def test_sigterm_while_dhc_run_delivers_gives_every_sink_the_verdict_once(tmp_path):
    """The termination sink (called first) blocks opening a FIFO. The child delivers nothing under dhc run
    (it hands its report over); SIGTERM once it has: the verdict already stood, so dhc run keeps the child's
    Failed report and delivers it to each sink once (a second delivery would block on the FIFO forever)."""
    fifo = tmp_path / "termination-log"
    os.mkfifo(fifo)
    out = tmp_path / "r"
    env = dhc_env(DHC_SUITES=str(suites_maker(tmp_path)(a=FAILING)), DHC_TERMINATION_LOG=str(fifo))
    proc = subprocess.Popen([sys.executable, "-m", "dhc", "run", "--check", "stress.inventory", "--sink", "termination",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_journal(out, '"event":"report-handed-over"')
        proc.send_signal(signal.SIGTERM)
        handed = fifo.read_text()  # dhc run's delivery: the one writer that ever opens the FIFO
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr  # the child's Failed report stood before the stop
    assert json.loads(handed)["status"] == "Failed"
    assert stderr.count("handed to the controller") == 1
    [line] = (out / "dhc.log.jsonl").read_text().splitlines()
    assert json.loads(line)["metric"] == "cpu_cores"
    journal = [json.loads(x) for x in (out / "journal.jsonl").read_text().splitlines()]
    delivered = sorted(e["sink"] for e in journal if e["event"] == "delivered")
    assert delivered == ["dhc-sink-log", "dhc-sink-termination"]


def wait_for_journal(out, text, deadline_s=120):
    journal = out / "journal.jsonl"
    wait_for(lambda: journal.exists() and text in journal.read_text(), deadline_s, f"the journal to say {text!r}")
