"""dhc run's supervision pieces, below the CLI: stop signals, how the child starts, how an exit reads."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from dhc.cli.supervise import Stopped, StopSignals, child_start, describe_exit, stop_reason


def test_stop_signals_raise_while_supervising_and_are_noted_once_the_verdict_stands():
    with StopSignals() as stops:
        with pytest.raises(Stopped) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode; never reached
        assert caught.value.signal_name == "SIGTERM" and isinstance(caught.value, KeyboardInterrupt)
        stops.settle()
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):
            if len(stops.late) == 2:
                break
            time.sleep(0.01)
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
