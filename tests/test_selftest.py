"""dhc selftest: every planted fault is caught and named on its device, end to end on CPU."""

import os
import subprocess
import sys

import pytest

from dhc.cli.selftest import judge


@pytest.fixture
def quick_cpu_thresholds(thresholds_file):
    def shrink(doc):
        quick = doc["instance_types"]["cpu"]["profiles"]["quick"]
        quick["stress.gemm"].update(duration_s=1, matrix_size=256)
        quick["stress.memtest"].update(memory_fraction=0.01, max_bytes=16 * 2**20)
    return thresholds_file(shrink, "quick-cpu.yaml")


@pytest.mark.slow
def test_selftest_catches_every_planted_fault(tmp_path, quick_cpu_thresholds, validate_report):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DHC_")} | {"DHC_IMDS": "off"}
    proc = subprocess.run([sys.executable, "-m", "dhc", "selftest", "--instance-type", "cpu", "--thresholds",
                           str(quick_cpu_thresholds), "--out", str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "selftest: 4 of 4 planted faults caught" in proc.stdout
    for fault, device in (("gemm-bitflip", "cpu 1"), ("gemm-sibling", "cpu 2"), ("gemm-slow", "cpu 0"),
                          ("memtest-word", "cpu 0")):
        assert f"{fault:<14} caught  " in proc.stdout and f" on {device}: " in proc.stdout
        report = validate_report(tmp_path / fault / "report.json")
        assert report["run"]["inject"] == fault and report["verdict"]["status"] == "Failed"
    assert "Encountered FaultyInstance" not in proc.stdout  # planted faults never look like real ones


def document(status, *reasons):
    return {"verdict": {"status": status, "reasons": list(reasons)}}


def reason(index, message, status="Failed"):
    return {"check": "stress.gemm", "status": status, "message": message, "device": {"kind": "gpu", "index": index}}


def test_judge_requires_the_right_device_and_words():
    assert judge("gemm-bitflip", document("Failed", reason(1, "silent data corruption: x")))[0]
    assert not judge("gemm-bitflip", document("Failed", reason(0, "silent data corruption: x")))[0]
    assert not judge("gemm-sibling", document("Failed", reason(2, "too slow")))[0]
    missed, detail = judge("gemm-slow", document("Passed"))
    assert not missed and "verdict Passed" in detail
    assert not judge("memtest-word", document("Incomplete", reason(0, "read back wrong", "Incomplete")))[0]
