"""Helpers for tests that run ``dhc`` in a subprocess as a user does: its environment, the call, a
folder of our own checks, and waiting for a check to start (a positive signal, never a sleep)."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PASSING = """
    import pytest

    @pytest.mark.check("stress.inventory")
    def test_inventory(dhc_check, dhc_devices):
        dhc_check.record("cpu_cores", 2, "count", dhc_devices[0])
"""


def dhc_env(**extra):
    """This environment without the caller's dhc, fake NVML and pytest settings; IMDS off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_NVML", "PYTEST_"))}
    return env | {"DHC_IMDS": "off", "PYTHONUNBUFFERED": "1"} | extra


def dhc(*args, env=None, timeout=120, cwd=None):
    return subprocess.run([sys.executable, "-m", "dhc", *args], capture_output=True, text=True,
                          env=env or dhc_env(), timeout=timeout, cwd=cwd)


def no_traceback(proc):
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


def suites_maker(tmp_path: Path):
    """``make(name=source, ...)`` writes a suites folder (for DHC_SUITES) holding those checks."""
    def make(**checks):
        folder = tmp_path / "suites"
        folder.mkdir(exist_ok=True)
        (folder / "conftest.py").write_text('pytest_plugins = ["dhc.plugin"]\n')
        for name, body in checks.items():
            (folder / f"test_{name}.py").write_text(textwrap.dedent(body))
        return folder
    return make


def wait_for_start(out: Path, check: str, deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        journal = out / "journal.jsonl"
        if journal.exists() and f'"check":"{check}"' in journal.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{check} never started")
