"""benchmarks/gpu_check.sh runs once, on a lent GPU, with no second try: its bash and every Python
heredoc in it must at least parse, and the report printer must print what it promises, here first."""

import ast
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import fleetgen
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
HEREDOC = re.compile(r"<<'(?P<tag>[A-Z]+)'\n(?P<body>.*?)\n(?P=tag)\n", re.S)


def heredocs(tag: str) -> list[str]:
    return [m["body"] for m in HEREDOC.finditer(SCRIPT.read_text()) if m["tag"] == tag]


def test_the_script_is_valid_bash():
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the script"
    proc = subprocess.run([bash, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_python_heredoc_parses():
    bodies = heredocs("PY")
    assert len(bodies) >= 3, "the printer, the matmul(out=) check and the NCCL rank script"
    for body in bodies:
        try:
            ast.parse(body)
        except SyntaxError as exc:
            pytest.fail(f"heredoc starting {body[:60]!r} does not parse: {exc}")


def _heredoc_using(marker: str) -> str:
    [body] = [b for b in heredocs("PY") if marker in b]
    return body


def _run(body: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-", *args], input=body, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


@pytest.fixture
def single_h200_thresholds(tmp_path: Path) -> Path:
    """The script's single-h200 thresholds file, made by the script's own lines (its YAML heredoc, its sed)."""
    [yaml] = heredocs("YAML")
    (tmp_path / "single-h200.yaml").write_text(yaml + "\n")
    [sed] = [line for line in SCRIPT.read_text().splitlines() if line.startswith('sed "/^instance_types:')]
    proc = subprocess.run(["bash", "-c", f'set -e; thresholds="$out/thresholds-single-h200.yaml"; {sed}'],
                          env={"out": str(tmp_path), "root": str(ROOT), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "thresholds-single-h200.yaml"
    validate = subprocess.run([sys.executable, "-m", "dhc", "thresholds", "validate", str(path)],
                              capture_output=True, text=True, cwd=ROOT)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    return path


def test_the_report_printer_prints_one_line_per_check_with_its_times(tmp_path, single_h200_thresholds):
    from dhc import thresholds
    report = fleetgen.node_report(3, random.Random(3), incomplete=True)
    report["checks"][1]["duration_s"] = None  # a check that never started has no duration
    (tmp_path / "report.json").write_text(json.dumps(report))
    proc = _run(_heredoc_using("whole run"), str(tmp_path / "report.json"), str(single_h200_thresholds))
    assert proc.returncode == 0, proc.stderr
    limits = thresholds.load(single_h200_thresholds).resolve("single-h200", "quick")
    lines = proc.stdout.splitlines()
    check_lines = [line for line in lines if line.split(" ", 1)[0] in {c["check"] for c in report["checks"]}]
    assert [line.split()[0] for line in check_lines] == [c["check"] for c in report["checks"]]
    for check, line in zip(report["checks"], check_lines, strict=True):
        timing = limits.timing(check["check"])
        duration = "-" if check["duration_s"] is None else f"{check['duration_s']:.1f}"
        assert line.split()[1:3] == [check["status"], duration], line
        assert f"(expected {timing.expected_s:g} s, timeout {timing.timeout_s:g} s)" in line, line
    assert "dcgmi is not on PATH" in check_lines[1]
    assert "    gpu_count" in proc.stdout and "    tflops_bf16" in proc.stdout
    assert lines[-1] == "whole run: 100.0 s"


def test_the_matmul_out_check_runs_and_says_identical_on_the_cpu():
    proc = _run(_heredoc_using("matmul(out=)"), "cpu", "64")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["bf16", "fp16", "tf32", "fp32"]
    assert all(line.endswith("identical bits") for line in lines), proc.stdout
