"""Harness overhead: wall time of `dhc run` with one trivial check vs a bare interpreter start.

Both are measured side by side in one run, interleaved, so machine noise hits both alike.
Prints medians, the ratio, and the overhead in seconds (aim: under 1.5 s).

    python benchmarks/overhead.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRIVIAL_CHECK = '''
import pytest

@pytest.mark.check("stress.inventory")
def test_trivial(dhc_check):
    dhc_check.record("cpu_cores", 1, "count")
'''


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        suites = Path(tmp) / "suites"
        suites.mkdir()
        (suites / "conftest.py").write_text('pytest_plugins = ["dhc.plugin"]\n')
        (suites / "test_trivial.py").write_text(TRIVIAL_CHECK)
        env = {**os.environ, "DHC_SUITES": str(suites), "DHC_IMDS": "off"}
        bare_argv = [sys.executable, "-c", "pass"]
        dhc_argv = [sys.executable, "-m", "dhc", "run", "--instance-type", "cpu", "--out", str(Path(tmp) / "out")]
        timed(dhc_argv, env)  # warm the file cache and .pyc files once
        bare, run = [], []
        for _ in range(args.repeat):
            bare.append(timed(bare_argv, env))
            run.append(timed(dhc_argv, env))
    b, r = statistics.median(bare), statistics.median(run)
    print(f"bare interpreter start : {b * 1000:8.1f} ms (median of {args.repeat})")
    print(f"dhc run, trivial check : {r * 1000:8.1f} ms (median of {args.repeat})")
    print(f"ratio dhc/bare         : {r / b:8.1f} x")
    print(f"harness overhead       : {r - b:8.3f} s  (aim: < 1.5 s) {'OK' if r - b < 1.5 else 'OVER'}")


if __name__ == "__main__":
    main()
