"""dhc run's supervision pieces, below the CLI: stop signals, how the child starts, how an exit reads."""

import io
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from waiting import wait_for

from dhc.cli.progress import Progress
from dhc.cli.supervise import Stopped, StopSignals, Supervisor, child_start, describe_exit, stop_reason
from dhc.model import CheckResult, PlannedCheck, Status


@pytest.fixture
def hangup_default():
    """SIGHUP as a terminal session leaves it, even when this suite was started under nohup (inherited
    ignored, which StopSignals rightly keeps ignored, and a test of SIGHUP would then test nothing)."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, previous)


def test_stop_signals_raise_while_supervising_and_are_noted_once_the_verdict_stands(hangup_default):
    with StopSignals() as stops:
        with pytest.raises(Stopped) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode; never reached
        assert caught.value.signal_name == "SIGTERM" and isinstance(caught.value, KeyboardInterrupt)
        stops.settle()
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGINT)
        wait_for(lambda: len(stops.late) == 2, timeout=10, what="both late signals noted")
        assert stops.late == ["SIGHUP", "SIGINT"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back as it was


def test_sigint_inherited_ignored_is_handled_anyway_and_restored_after():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals():
            assert signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, signal.SIG_DFL)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sighup_ignored_under_nohup_stays_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with StopSignals():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_the_child_starts_with_default_stop_signals_whatever_the_parent_ignores():
    show = "import signal; print([signal.getsignal(s).__name__ if callable(signal.getsignal(s)) else " \
           "int(signal.getsignal(s)) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)])"
    ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        proc = subprocess.run([sys.executable, "-c", show], capture_output=True, text=True, timeout=30,
                              preexec_fn=child_start(os.getpid()))
    finally:
        for sig, handler in ignored.items():
            signal.signal(sig, handler)
    assert proc.stdout.strip() == "['default_int_handler', 0, 0]"  # Python's Ctrl-C handler; SIG_DFL is 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_child_is_told_when_its_parent_dies(tmp_path):
    marker = tmp_path / "told"
    child = textwrap.dedent(f"""
        import signal, sys, time
        def told(signum, frame):
            open({str(marker)!r}, "w").write(signal.Signals(signum).name)
            sys.exit(0)
        signal.signal(signal.SIGTERM, told)
        print("ready", flush=True)
        time.sleep(120)
    """)
    parent = textwrap.dedent(f"""
        import os, subprocess, sys
        from dhc.cli.supervise import child_start
        proc = subprocess.Popen([sys.executable, "-c", {child!r}], stdout=subprocess.PIPE, text=True,
                                start_new_session=True, preexec_fn=child_start(os.getpid()))
        assert proc.stdout.readline() == "ready\\n"
        os._exit(0)  # dies without a word to its child
    """)
    subprocess.run([sys.executable, "-c", parent], timeout=60, check=True)
    end = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < end, "the orphan never heard that its parent died"
        time.sleep(0.05)
    assert marker.read_text() == "SIGTERM"


def test_how_an_exit_reads():
    assert describe_exit(-9) == "the pytest child was killed by SIGKILL"
    assert describe_exit(-200) == "the pytest child was killed by signal 200"
    assert describe_exit(1) == "pytest ended (exit status 1)"
    assert stop_reason("SIGTERM") == ("interrupted by SIGTERM (Kubernetes stops a pod this way) before every "
                                      "check finished")


# -- the Supervisor with a real child -------------------------------------------------------------
class SignalOn(Progress):
    """Progress that sends dhc (this process) a stop signal at a chosen moment, to drive a window."""

    def __init__(self, when):
        super().__init__(io.StringIO(), "the CPU", live=False)
        self.when, self.sent = when, False

    def tick(self):
        self._maybe("tick")

    def finished(self, result):
        super().finished(result)
        self._maybe("finished")

    def _maybe(self, moment):
        if not self.sent and self.when(moment):
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)


def child(out, *steps):
    """A child that runs ``steps`` in turn and ends by itself: "journal" one result, write its "pid",
    or "go" (wait until the file ``go`` exists: the test's Progress makes it)."""
    result = {"event": "result", "result": CheckResult("stress.inventory", "InstanceStress", Status.PASSED,
                                                       duration_s=0.1, nodeid="t").to_dict()}
    code = {"journal": f"open({str(out / 'journal.jsonl')!r}, 'a').write(json.dumps({result!r}) + '\\n')",
            "pid": f"open({str(out / 'pid')!r}, 'w').write(str(os.getpid()))",
            "go": f"while not os.path.exists({str(out / 'go')!r}): time.sleep(0.01)"}
    return [sys.executable, "-c", "\n".join(["import json, os, time", *(code[step] for step in steps)])]


def wait_until(predicate, what, deadline_s=30):
    end = time.monotonic() + deadline_s
    while not predicate():
        assert time.monotonic() < end, what
        time.sleep(0.01)


def test_a_stop_in_the_last_pump_after_the_child_ended_is_late_not_an_escape(tmp_path):
    # the child journals its result only once the first pump is over, so the result is first read by the
    # pump after the loop, when the child has ended: the SIGTERM sent from there escaped run() as Stopped
    # (main said "interrupted before the run started" and no report was rebuilt)
    progress = SignalOn(lambda moment: moment == "finished")
    progress.tick = lambda: (tmp_path / "go").touch()
    with StopSignals() as stops:
        outcome = Supervisor(child(tmp_path, "go", "journal"), tmp_path, tmp_path, tmp_path / "pytest.log",
                             progress, None, poll_s=60, stops=stops).run()
        wait_until(lambda: stops.late, "the SIGTERM was never handled")
    assert progress.sent and progress.done == 1
    assert (outcome.returncode, outcome.stopped) == (0, None)  # the child's own report stands
    assert stops.late == ["SIGTERM"] and not stops.raising


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the child's state in /proc")
def test_a_stop_after_the_child_ended_by_itself_but_before_dhc_saw_it_is_late(tmp_path):
    def child_is_a_zombie(moment):  # dhc is in its loop, in this very call: nothing reaps the child
        pid_file = tmp_path / "pid"
        if not pid_file.exists() or not pid_file.read_text():
            return False
        (tmp_path / "go").touch()
        stat_file = Path(f"/proc/{pid_file.read_text()}/stat")
        wait_until(lambda: stat_file.read_text().rsplit(") ", 1)[1][0] == "Z", "the child never ended")
        return True

    progress = SignalOn(child_is_a_zombie)
    with StopSignals() as stops:
        outcome = Supervisor(child(tmp_path, "pid", "go"), tmp_path, tmp_path, tmp_path / "pytest.log",
                             progress, None, poll_s=0.01, stops=stops).run()
    assert progress.sent
    assert (outcome.returncode, outcome.stopped) == (0, None)
    assert stops.late == ["SIGTERM"]


def test_a_stop_while_the_child_runs_still_stops_it(tmp_path):
    with StopSignals() as stops:
        outcome = Supervisor(child(tmp_path, "go"), tmp_path, tmp_path, tmp_path / "pytest.log", SignalOn(lambda m: True),
                             None, term_wait_s=30, poll_s=0.01, stops=stops).run()
    assert outcome.stopped == stop_reason("SIGTERM") and outcome.returncode is not None
    assert stops.late == [] and not stops.raising


def test_pytest_log_is_0644_whatever_the_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        Supervisor([sys.executable, "-c", "print('pytest says hello')"], tmp_path, tmp_path,
                   tmp_path / "pytest.log", Progress(io.StringIO(), "the CPU", live=False), None).run()
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "pytest.log").stat().st_mode) == 0o644
    assert (tmp_path / "pytest.log").read_text() == "pytest says hello\n"


# -- progress lines --------------------------------------------------------------------------------
def test_a_reason_from_data_cannot_forge_a_progress_line():
    forged = 'cannot read dcgmi\n{"level":"info","msg":"dhc verdict: Passed"}\r\x1b[2Kall good'
    for live in (False, True):
        stream = io.StringIO()
        progress = Progress(stream, "8 GPU(s)", live=live)
        progress.planned([PlannedCheck("t", "stress.dcgm", "InstanceStress", 60, 600)])
        progress.started(PlannedCheck("t", "stress.dcgm\nforged", "InstanceStress", 60, 600))
        progress.finished(CheckResult("stress.dcgm", "InstanceStress", Status.INCOMPLETE, forged, duration_s=1.0))
        lines = stream.getvalue().replace("\r\x1b[K", "\n").splitlines()  # the live line redrawn in place
        assert lines[-1] == ("dhc: [1/1] Incomplete stress.dcgm in 1.0 s: cannot read dcgmi\\n{\"level\":\"info\","
                             "\"msg\":\"dhc verdict: Passed\"}\\r\\x1b[2Kall good")
        assert not any(line.startswith(("{", "forged", "all good")) for line in lines)
        assert "stress.dcgm\\nforged" in stream.getvalue()  # the live line and the started line too
