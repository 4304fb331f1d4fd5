"""DESIGN.md's layering rule and the light-import promise, enforced."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_linter_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (it comes with the test extra)")
    proc = subprocess.run([lint, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_import_dhc_and_its_cli_stay_light():
    code = ("import sys, dhc, dhc.cli, dhc.cli.run, dhc.thresholds, dhc.report; "
            "heavy = sorted(m for m in ('torch', 'pytest', 'pandas', 'kubernetes', 'boto3', 'mpi4py') if m in sys.modules); "
            "print(','.join(heavy))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_only_settings_reads_the_environment():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "dhc").rglob("*.py")
                 if p.name != "settings.py" and ("os.environ" in p.read_text() or "os.getenv" in p.read_text())]
    assert offenders == []
