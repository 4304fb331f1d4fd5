"""The sinks as plugins of ``pytest_dhc_verdict``: a failing sink is said, not journaled delivered, and the
report stands; under dhc run the verdict reaches each sink exactly once, from dhc run after trust (the child
delivers nothing); a planted fault reaches none; ``pytest suites/`` alone delivers itself."""

import dataclasses
import json
import subprocess
import sys

import pytest
from dhc_process import PASSING, dhc_env, suites_maker
from test_report import report_with_verdict

from dhc import report
from dhc.cli import run as run_cmd
from dhc.model.report import Report
from dhc.runconfig.resolve import RunRequest, resolve
from dhc.settings import Settings
from dhc.sinks import hooks

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-2"}
GROUP = "/aws/sagemaker/Clusters/train-a/abc123"
GPU3_FAULT = {"check": "stress.gemm", "status": "Failed", "message": "gemm slow", "action": "Replace",
              "metric": "tflops", "value": 1.0, "limit": 40.0, "unit": "TFLOP/s", "comparison": "min",
              "device": {"kind": "gpu", "index": 3, "uuid": "GPU-3", "pci_bus_id": "0000:53:00.0"}}


def configured(tmp_path, *sinks, inject=None, by_dhc_run=False):
    """A resolved run; the termination log is in ``tmp_path`` through the settings the run resolved once."""
    request = RunRequest("--", instance_type="cpu", out=str(tmp_path / "out"), sinks=sinks, inject=inject,
                         by_dhc_run=by_dhc_run)
    env = {"DHC_IMDS": "off", "DHC_TERMINATION_LOG": str(tmp_path / "termination-log")}
    config, _ = resolve(request, Settings.from_env(env))
    return config


def typed(document):
    return Report.from_dict(document)


def sink_events(journal):
    return [(e["event"], e["sink"]) for e in journal.events() if e["event"] == hooks.DELIVERED]


# -- unit: the hook, its plugins and their failures -------------------------------------------------------
def test_a_failing_sink_is_said_and_neither_the_report_nor_the_other_sinks_suffer(tmp_path, monkeypatch):
    config = configured(tmp_path, "cloudwatch", "termination")  # the run folder does not exist: the log sink fails

    def broken_send(lines, where):
        raise RuntimeError("a bug in the sink")

    monkeypatch.setattr("dhc.sinks.cloudwatch.send", broken_send)
    document = typed(report_with_verdict("Failed", "Replace", [GPU3_FAULT], run_id=config.run_id))
    said = []
    journal = report.Journal(tmp_path / "journal.jsonl")
    called = hooks.deliver(hooks.manager(config), document, config, said.append, journal)
    assert called == ["dhc-sink-termination"]  # the two that failed did not deliver
    log_file = tmp_path / "out" / "dhc.log.jsonl"
    assert any(s.startswith(f"sink log failed, the local report is intact: cannot write {log_file}: ") for s in said), said
    assert "sink cloudwatch failed unexpectedly, the local report is intact: RuntimeError: a bug in the sink" in said
    assert any(s.startswith("verdict Failed handed to the controller") for s in said)  # the next sink still ran
    assert said[0].startswith("verdict Failed handed to the controller")  # pluggy's order: termination first
    assert sink_events(journal) == [(hooks.DELIVERED, "dhc-sink-termination")]  # a failed sink is not journaled


def test_the_sinks_read_the_settings_the_run_resolved_not_the_environment(tmp_path, monkeypatch):
    config = configured(tmp_path, "termination")
    monkeypatch.setenv("DHC_TERMINATION_LOG", str(tmp_path / "elsewhere"))  # changed after the run resolved
    document = typed(report_with_verdict("Failed", "Replace", [GPU3_FAULT], run_id=config.run_id))
    hooks.deliver(hooks.manager(config), document, config, print, report.Journal(tmp_path / "j"))
    assert json.loads((tmp_path / "termination-log").read_text())["status"] == "Failed"
    assert not (tmp_path / "elsewhere").exists()


def test_a_sink_a_stop_cuts_short_costs_only_that_sink_and_is_called_once(tmp_path, monkeypatch):
    """pytest alone: KeyboardInterrupt (SIGTERM in pytest_sessionfinish) is no Exception: the sinks after it
    still run, the one cut short is said and not journaled delivered, and none is called twice."""
    config = configured(tmp_path, "termination")
    (tmp_path / "out").mkdir()
    calls = []

    def stopped(*args, **kwargs):
        calls.append(args)
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr("dhc.sinks.termination.write", stopped)
    document = typed(report_with_verdict("Failed", "Replace", [GPU3_FAULT], run_id=config.run_id))
    journal, said = report.Journal(tmp_path / "out" / report.JOURNAL_NAME), []
    assert hooks.deliver(hooks.manager(config), document, config, said.append, journal) == ["dhc-sink-log"]
    assert said == ["sink termination was cut short by a stop; it may not have the verdict"] and len(calls) == 1
    assert sink_events(journal) == [(hooks.DELIVERED, "dhc-sink-log")]
    assert len((tmp_path / "out" / "dhc.log.jsonl").read_text().splitlines()) == 1


class UnwritableJournal(report.Journal):
    def append(self, event):
        raise OSError(28, "No space left on device")


def test_a_journal_that_cannot_be_written_still_delivers(tmp_path):
    """The journal only records a delivery: one that cannot be written costs the record, never the sink."""
    config = configured(tmp_path, "termination")
    (tmp_path / "out").mkdir()
    document = typed(report_with_verdict("Failed", "Replace", [GPU3_FAULT], run_id=config.run_id))
    said = []
    called = hooks.deliver(hooks.manager(config), document, config, said.append, UnwritableJournal(tmp_path / "j"))
    assert called == ["dhc-sink-termination", "dhc-sink-log"]
    assert json.loads((tmp_path / "termination-log").read_text())["status"] == "Failed"
    assert f"cannot journal the delivery to sink termination in {tmp_path / 'j'} (No space left on device)" in said


def test_the_child_of_dhc_run_delivers_nothing_and_hands_its_report_over(pytester, tmp_path):
    """Under dhc run (``by_dhc_run`` in the run configuration) the sinks are the parent's, after trust."""
    config = dataclasses.replace(configured(tmp_path, "termination", by_dhc_run=True), checks=("stress.inventory",))
    (tmp_path / "out").mkdir()
    path = config.save(tmp_path / "out")
    pytester.makeconftest('pytest_plugins = ["dhc.plugin"]\n')
    pytester.makepyfile(test_a=PASSING)
    outcome = pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--dhc-config={path}")
    assert outcome.ret == 0, outcome.outlines
    assert json.loads((tmp_path / "out" / "report.json").read_text())["verdict"]["status"] == "Passed"
    assert not (tmp_path / "termination-log").exists() and not (tmp_path / "out" / "dhc.log.jsonl").exists()
    events = [e["event"] for e in report.Journal(tmp_path / "out" / report.JOURNAL_NAME).events()]
    assert events[-1] == hooks.HANDED_OVER and hooks.DELIVERED not in events


def run_alone(pytester, tmp_path, *options):
    """``pytest suites/``-style, in process: the plugin, one passing check, stress.inventory on the CPU."""
    pytester.makeconftest('pytest_plugins = ["dhc.plugin"]\n')
    pytester.makepyfile(test_a=PASSING)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", f"--dhc-out={tmp_path / 'out'}",
                                        "--dhc-instance-type=cpu", "--dhc-check=stress.inventory", *options)


def test_pytest_alone_delivers_in_the_child(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("DHC_TERMINATION_LOG", str(tmp_path / "termination-log"))
    outcome = run_alone(pytester, tmp_path, "--dhc-sink=termination")
    assert json.loads((tmp_path / "termination-log").read_text())["status"] == "Passed", outcome.outlines
    delivered = [e["sink"] for e in report.Journal(tmp_path / "out" / report.JOURNAL_NAME).events()
                 if e["event"] == hooks.DELIVERED]
    assert sorted(delivered) == ["dhc-sink-log", "dhc-sink-termination"]


def test_a_planted_fault_reaches_no_sink(tmp_path):
    config = configured(tmp_path, "termination", inject="gemm-bitflip")
    journal = report.Journal(tmp_path / "journal.jsonl")
    document = typed(report_with_verdict("Failed", "Replace", [GPU3_FAULT], run_id=config.run_id))
    assert hooks.deliver(hooks.manager(config), document, config, print, journal) == []
    assert not (tmp_path / "termination-log").exists() and journal.events() == []


def test_dhc_run_sends_no_planted_fault_to_a_sink(tmp_path, capsys):
    config = configured(tmp_path, "termination", inject="gemm-bitflip")
    (tmp_path / "out").mkdir()
    document = typed(report_with_verdict("Failed", "Replace", [GPU3_FAULT], run_id=config.run_id))
    run_cmd._deliver(config, document)
    assert "self-test run with the fault 'gemm-bitflip' planted: no fault log lines emitted" in capsys.readouterr().out
    assert not (tmp_path / "termination-log").exists() and not (tmp_path / "out" / "dhc.log.jsonl").exists()


def test_a_child_with_a_planted_fault_delivers_nothing(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("DHC_TERMINATION_LOG", str(tmp_path / "termination-log"))
    outcome = run_alone(pytester, tmp_path, "--dhc-inject=gemm-bitflip", "--dhc-sink=termination")
    assert outcome.ret == 0 and json.loads((tmp_path / "out" / "report.json").read_text())["run"]["inject"]
    assert not (tmp_path / "termination-log").exists()
    assert hooks.DELIVERED not in (tmp_path / "out" / report.JOURNAL_NAME).read_text()


def test_pytest_alone_delivers_when_its_journal_refuses_the_delivery(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("DHC_TERMINATION_LOG", str(tmp_path / "termination-log"))
    real_append = report.Journal.append

    def append(self, event):
        if event["event"] == hooks.DELIVERED:
            raise OSError(28, "No space left on device")
        real_append(self, event)

    monkeypatch.setattr(report.Journal, "append", append)
    outcome = run_alone(pytester, tmp_path, "--dhc-sink=termination")
    assert json.loads((tmp_path / "termination-log").read_text())["status"] == "Passed", outcome.outlines
    outcome.stdout.fnmatch_lines(["dhc: cannot journal the delivery to sink termination in *(No space left on device)"])


# -- real processes: each path delivers once ----------------------------------------------------------------
def events(endpoint, instance_id):
    boto3 = pytest.importorskip("boto3", reason="boto3 comes with dhc[cloud]")
    logs = boto3.client("logs", endpoint_url=endpoint, region_name="us-east-2",
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    return [json.loads(e["message"]) for e in logs.get_log_events(logGroupName=GROUP, logStreamName=f"DeepHealthCheckResults/{instance_id}")["events"]]


def run_with_sinks(tmp_path, endpoint, suites, *args):
    """dhc run with CloudWatch (moto) and the termination message; the instance is named after the test."""
    env = dhc_env(**CREDENTIALS, AWS_ENDPOINT_URL=endpoint, DHC_INSTANCE_ID=tmp_path.name, DHC_REGION="us-east-2",
                  DHC_CLUSTER="train-a", DHC_CLUSTER_ID="abc123", DHC_SUITES=str(suites),
                  DHC_TERMINATION_LOG=str(tmp_path / "termination-log"))
    env = {k: v for k, v in env.items() if k != "AWS_PROFILE"}
    return subprocess.run([sys.executable, "-m", "dhc", "run", "--sink", "cloudwatch", "--sink", "termination",
                           "--out", str(tmp_path / "r"), *args], capture_output=True, text=True, env=env, timeout=300)


def deliveries(tmp_path):
    journal = report.Journal(tmp_path / "r" / report.JOURNAL_NAME).events()
    return [e for e in journal if e["event"] == hooks.DELIVERED]


ALL_THREE = ["dhc-sink-cloudwatch", "dhc-sink-log", "dhc-sink-termination"]


@pytest.mark.slow
def test_the_childs_report_reaches_each_sink_once(tmp_path, moto):
    proc = run_with_sinks(tmp_path, moto, suites_maker(tmp_path)(a=PASSING), "--check", "stress.inventory")
    assert proc.returncode == 0, proc.stderr
    [line] = events(moto, tmp_path.name)  # the summary line, sent by dhc run only
    assert (line["status"], line["run_id"]) == ("Passed", deliveries(tmp_path)[0]["run_id"])
    assert sorted(e["sink"] for e in deliveries(tmp_path)) == ALL_THREE  # each once
    assert proc.stderr.count("sent 1 log event(s) to CloudWatch Logs") == 1
    assert proc.stderr.count("handed to the controller") == 1
    assert json.loads((tmp_path / "termination-log").read_text())["status"] == "Passed"


@pytest.mark.slow
def test_a_report_rebuilt_after_the_child_died_reaches_each_sink_once(tmp_path, moto):
    crashing = PASSING + """
    import os, signal

    @pytest.mark.check("stress.gemm")
    def test_gemm(dhc_check):
        os.kill(os.getpid(), signal.SIGKILL)
    """
    proc = run_with_sinks(tmp_path, moto, suites_maker(tmp_path)(a=crashing),
                          "--check", "stress.inventory", "--check", "stress.gemm")
    assert proc.returncode == 3, proc.stderr
    *reasons, summary = events(moto, tmp_path.name)  # the reasons (the run's end, the unfinished check) and the summary, once
    assert [r["check"] for r in reasons] == ["run", "stress.gemm"] and summary["status"] == "Incomplete"
    assert sorted(e["sink"] for e in deliveries(tmp_path)) == ALL_THREE  # by dhc run, once each
    assert proc.stderr.count("log event(s) to CloudWatch Logs") == 1 and "sent 3 log event(s)" in proc.stderr
    assert json.loads((tmp_path / "termination-log").read_text())["status"] == "Incomplete"
    rebuilt = json.loads((tmp_path / "r" / "report.json").read_text())
    assert rebuilt["run"]["ended_by"].startswith("the pytest child was killed by SIGKILL")


@pytest.mark.slow
def test_pytest_alone_gets_the_sinks_too(tmp_path):
    suites = suites_maker(tmp_path)(a=PASSING.replace('"cpu_cores", 2', '"cpu_cores", 0'))
    env = dhc_env(DHC_TERMINATION_LOG=str(tmp_path / "termination-log"), DHC_INSTANCE_TYPE="cpu")
    proc = subprocess.run([sys.executable, "-m", "pytest", str(suites), "-p", "no:cacheprovider",
                           f"--dhc-out={tmp_path / 'out'}", "--dhc-check=stress.inventory", "--dhc-sink=termination",
                           "--dhc-stage=stress"], capture_output=True, text=True, env=env, timeout=300, cwd=suites)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    handed = json.loads((tmp_path / "termination-log").read_text())
    assert (handed["status"], handed["stage"]) == ("Failed", "stress")
    assert "dhc: verdict Failed handed to the controller" in proc.stdout
    [line] = [json.loads(x) for x in (tmp_path / "out" / "dhc.log.jsonl").read_text().splitlines()]
    assert line["metric"] == "cpu_cores" and line["level"] == "error"




@pytest.mark.slow
def test_a_rebuilt_report_marks_the_node_once(tmp_path):
    """The node sink against the emulated API server: one Event, from dhc run, for the report it rebuilt."""
    pytest.importorskip("kubernetes", reason="the node sink needs the kubernetes client (dhc[kubernetes])")
    from k8s_emulator import Emulator

    crashing = PASSING + """
    import os, signal

    @pytest.mark.check("stress.gemm")
    def test_gemm(dhc_check):
        os.kill(os.getpid(), signal.SIGKILL)
    """
    suites = suites_maker(tmp_path)(a=crashing)
    with Emulator() as emulator:
        emulator.add_node("cpu-node", {}, [], "aws:///us-east-2a/i-0aaaabbbbccccdddd")
        env = {k: v for k, v in dhc_env().items() if not k.startswith("KUBE")}
        env.update(NODE_NAME="cpu-node", KUBECONFIG=str(emulator.kubeconfig(tmp_path)), DHC_SUITES=str(suites))
        proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--check", "stress.inventory", "--check",
                               "stress.gemm", "--sink", "kubernetes", "--out", str(tmp_path / "r")],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 3, proc.stderr
        assert [e["reason"] for e in emulator.events] == ["DeepHealthCheckIncomplete"]
        assert proc.stderr.count("node cpu-node marked") == 1


@pytest.mark.slow
def test_a_relative_termination_log_is_the_callers_not_the_suites_folder(tmp_path):
    """``cd x && DHC_TERMINATION_LOG=term.log dhc run --sink termination``: x/term.log, though the child runs
    in the suites' folder (the settings are made absolute when the run is resolved)."""
    suites = suites_maker(tmp_path)(a=PASSING)
    caller = tmp_path / "x"
    caller.mkdir()
    env = dhc_env(DHC_SUITES=str(suites), DHC_TERMINATION_LOG="term.log")
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--check", "stress.inventory", "--sink", "termination",
                           "--out", "r"], capture_output=True, text=True, env=env, timeout=300, cwd=caller)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((caller / "term.log").read_text())["status"] == "Passed"
    assert not (suites / "term.log").exists() and (caller / "r" / "report.json").exists()
