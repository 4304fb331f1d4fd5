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
    for fault, device in (("gemm-bitflip", "cpu 1"), ("gemm-sibling", "cpu 2"), ("gemm-slow", "cpu"),
                          ("memtest-word", "cpu")):  # Device.label: device 0 of a kind is the kind
        assert f"{fault:<14} caught  " in proc.stdout and f" on {device}: " in proc.stdout
        report = validate_report(tmp_path / fault / "report.json")
        assert report["run"]["inject"] == fault and report["verdict"]["status"] == "Failed"
    assert "Encountered FaultyInstance" not in proc.stdout  # planted faults never look like real ones


def document(status, *reasons, action="Replace"):
    return {"verdict": {"status": status, "action": action, "reasons": list(reasons)}}


def reason(index, message, status="Failed", check="stress.gemm", action="Replace"):
    device = {"kind": "gpu", "index": index} if index is not None else None
    return {"check": check, "status": status, "message": message, "action": action, "device": device}


def test_judge_requires_the_right_device_and_words():
    assert judge("gemm-bitflip", document("Failed", reason(1, "silent data corruption: x")))[0]
    assert not judge("gemm-bitflip", document("Failed", reason(0, "silent data corruption: x")))[0]
    assert not judge("gemm-sibling", document("Failed", reason(2, "too slow")))[0]
    missed, detail = judge("gemm-slow", document("Passed", action="None"))
    assert not missed and "verdict Passed, expected Failed (Replace) on device 0, saying 'relative_to_median'" in detail
    assert not judge("memtest-word", document("Incomplete", reason(0, "read back wrong", "Incomplete", "stress.memtest"),
                                              action="None"))[0]


def test_judge_requires_the_action_and_the_check_the_catalogue_names():
    assert judge("memtest-word", document("Failed", reason(0, "3 word(s) read back wrong", check="stress.memtest")))[0]
    assert not judge("memtest-word", document("Failed", reason(0, "read back wrong", check="stress.memtest",
                                                               action="Reboot"), action="Reboot"))[0]
    assert not judge("memtest-word", document("Failed", reason(0, "read back wrong", check="stress.gemm")))[0]
    caught, _ = judge("memtest-word", document("Failed", reason(0, "read back wrong", check="stress.memtest"),
                                               action="Reboot"))  # the node's action is weaker than planted
    assert not caught


def test_judge_a_fault_of_the_whole_node():
    message = "node 1 of 3 is slow with known-good partners (pair bus bandwidth in GB/s: {}); the others are cleared"
    assert judge("pairwise-slow-node", document("Failed", reason(None, message, check="connectivity.pairwise")))[0]
    assert not judge("pairwise-slow-node", document("Failed", reason(0, message, check="connectivity.pairwise")))[0]


def test_the_caught_device_is_named_by_its_one_label():
    """The detail names the device as every other reader does (Device.label): index and its ids."""
    gpu = {"kind": "gpu", "index": 1, "uuid": "GPU-5f1e", "serial": "1652", "pci_bus_id": "00000000:53:00.0"}
    caught, detail = judge("gemm-bitflip", document("Failed", reason(1, "silent data corruption: x") | {"device": gpu}))
    assert caught and detail.startswith("stress.gemm on GPU 1 (GPU-5f1e, serial 1652, PCI 00000000:53:00.0): "), detail
