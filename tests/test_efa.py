"""connectivity.efa: fi_info's real shapes (libfabric 1.x and 2.x, errors), the fake, and the check end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from waiting import wait_ended

from dhc.probes import efa
from dhc.probes.tool import ToolResult, run_tool

DATA = Path(__file__).parent / "data" / "efa"
FAKES = Path(__file__).parent / "fakes"
P5_NICS = 32


def shape(name: str, returncode: int = 0) -> ToolResult:
    text = (DATA / name).read_text()
    stdout, stderr = (text, "") if name.endswith(".stdout") else ("", text)
    return ToolResult(("fi_info", "-p", "efa", "-t", "FI_EP_RDM"), returncode, stdout, stderr)


# -- the parser on each real shape -----------------------------------------------------------------
@pytest.mark.parametrize(("name", "devices", "fabrics"), [
    ("fi_info_1x_gid_fabric_p4d_rdm.stdout", ["rdmap16s27", "rdmap32s27", "rdmap48s27", "rdmap64s27"], 4),
    ("fi_info_1x_rdm_dgrm_one_nic.stdout", ["rdmap0s31"], 1),
    ("fi_info_1x_efa0_with_rxd.stdout", ["efa_0"], 1),
    ("fi_info_2x_direct_efa_dgrm_two_nics.stdout", ["rdmap47s0", "rdmap48s0"], 2),
])
def test_devices_are_counted_once_whatever_the_generation(name, devices, fabrics):
    found = efa.interpret(shape(name))
    assert list(found.devices) == devices and len(found.fabrics) == fabrics and found.no_data == ""


def test_libfabric_2_on_a_p5_lists_64_entries_for_32_nics():
    found = efa.interpret(shape("fi_info_2x_p5_rdm.stdout"))
    assert len(found.devices) == P5_NICS and found.fabrics == ("efa-direct", "efa")


@pytest.mark.parametrize(("name", "code"), [("fi_info_no_efa.stderr", 61), ("fi_info_provider_not_loaded.stderr", 61),
                                            ("fi_info_no_efa.stderr", 195)])
def test_enodata_on_stderr_is_no_device(name, code):
    found = efa.interpret(shape(name, code))
    assert found.devices == () and found.no_data.endswith("fi_getinfo: -61")
    if "not_loaded" in name:
        assert "libefa-fi.so" in found.no_data  # the warning that says why travels with the verdict


@pytest.mark.parametrize(("result", "words"), [
    (shape("fi_info_enomem.stderr", 12), "fi_info exited 12: fi_getinfo: -12"),
    (shape("fi_info_bad_option.stderr", 22), "fi_info exited 22: error: Unrecognized endpoint type"),
    (shape("fi_info_no_efa.stderr", 0), "printed no 'provider:' entry; expected fi_info's entry list, got no output"),
    (shape("fi_info_usage_exit0.stdout"), "got 'Usage: fi_info [OPTIONS]"),
    (shape("fi_info_entry_without_domain.stdout"), "has no 'domain:' line; got 'provider: efa"),
    (ToolResult(("fi_info",), 0, "provider: tcp;ofi_rxm\n    domain: eth0\n", ""), "listed only tcp;ofi_rxm"),
    (ToolResult(("fi_info",), -11, "", ""), "killed by signal 11: (no output)"),
    (ToolResult(("fi_info",), 61, "No data available\n", ""), "fi_info exited 61: No data available"),
])
def test_what_is_not_an_answer_is_an_error_naming_what_was_seen(result, words):
    with pytest.raises(efa.FiInfoError) as err:
        efa.interpret(result)
    assert words in str(err.value)


def test_sysfs_efa_devices(tmp_path):
    for name in ("rdmap16s27", "rdmap32s27", "mlx5_0"):
        (tmp_path / name).mkdir()
    assert efa.sysfs_devices(tmp_path) == ["rdmap16s27", "rdmap32s27"]
    assert efa.sysfs_devices(tmp_path / "absent") is None


# -- the fake behaves as the real one -------------------------------------------------------------
def fake(*args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_")}
    return run_tool([str(FAKES / "fi_info"), *args], 30, env=base | env)


@pytest.mark.parametrize(("generation", "args", "entries"), [
    ("2", ["-p", "efa", "-t", "FI_EP_RDM"], 6), ("2", ["-p", "efa"], 9),
    ("1", ["-p", "efa", "-t", "FI_EP_RDM"], 3), ("1-gid", ["-p", "efa"], 6),
])
def test_the_fake_prints_each_generation(generation, args, entries):
    result = fake(*args, FAKE_EFA_DOMAINS="3", FAKE_LIBFABRIC=generation)
    assert result.returncode == 0 and result.stdout.count("provider: efa") == entries
    assert efa.interpret(result).devices == ("rdmap79s0", "rdmap80s0", "rdmap81s0")


def test_the_fake_fails_as_the_real_one():
    none = fake("-p", "efa", "-t", "FI_EP_RDM")
    assert (none.returncode, none.stdout, none.stderr) == (61, "", "fi_getinfo: -61\n")
    assert fake("-p", "tcp", FAKE_EFA_DOMAINS="2").returncode == 61
    assert fake("-t", "FI_EP_RMD", FAKE_EFA_DOMAINS="2").returncode == 22
    assert fake("-p", "efa", FAKE_FI_INFO="crash").returncode == -11
    warned = efa.interpret(fake("-p", "efa", "-t", "FI_EP_RDM", FAKE_FI_INFO="warn"))
    assert warned.devices == () and "provider efa returned -61 (No data available); fi_getinfo: -61" in warned.no_data


# -- the check, end to end through dhc run ---------------------------------------------------------
def dhc(tmp_path, *args, sysfs=None, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))}
    base |= {"DHC_IMDS": "off", "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
             "DHC_SYS_INFINIBAND": str(sysfs if sysfs is not None else tmp_path / "no-sysfs")}
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--instance-type", "p5.48xlarge", "--check",
                           "connectivity.efa", "--out", str(tmp_path / "r"), *args],
                          capture_output=True, text=True, env=base | env, timeout=300)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    check = report["checks"][0]
    messages = [f["message"] for f in check.get("findings", [])]
    return proc, check, " | ".join([check.get("reason", ""), *messages])


def kernel_lists(tmp_path, count):
    sysfs = tmp_path / "ib"
    sysfs.mkdir()
    for index in range(count):
        (sysfs / f"rdmap{79 + index}s0").mkdir()
    return sysfs


@pytest.mark.slow
@pytest.mark.parametrize(("generation", "nics", "kernel", "code", "status", "action", "words"), [
    ("2", 32, 32, 0, "Passed", "None", ""),
    ("1", 32, None, 0, "Passed", "None", ""),
    ("1-gid", 32, 32, 0, "Passed", "None", ""),
    ("2", 31, 31, 1, "Failed", "Replace", "efa_devices: measured 31 count, expected"),
    ("2", 0, 0, 1, "Failed", "Replace", "libfabric finds no EFA device (fi_getinfo: -61) and the kernel lists none"),
    ("2", 0, None, 1, "Failed", "Replace", "0 of the 32 EFA devices ml.p5.48xlarge promises"),
    ("2", 30, 32, 1, "Failed", "Replace", "the kernel shows 32 EFA devices but libfabric offers 30 "
                                           "(not offered: rdmap109s0, rdmap110s0)"),
    ("2", 0, 32, 3, "Incomplete", "None", "the kernel lists 32 under "),
])
def test_efa_verdicts(tmp_path, generation, nics, kernel, code, status, action, words):
    sysfs = kernel_lists(tmp_path, kernel) if kernel is not None else None
    proc, check, text = dhc(tmp_path, sysfs=sysfs, FAKE_EFA_DOMAINS=str(nics), FAKE_LIBFABRIC=generation)
    assert (proc.returncode, check["status"], check["action"]) == (code, status, action), proc.stdout + proc.stderr
    assert words in text, text
    if status == "Incomplete":
        assert "opens none (fi_getinfo: -61)" in text and "vpc.amazonaws.com/efa" in text


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "words"), [
    ("broken", "fi_info exited 0 but printed no 'provider:' entry; expected fi_info's entry list, got 'Usage: fi_info"),
    ("enomem", "fi_info exited 12: fi_getinfo: -12"),
    ("crash", "fi_info was killed by signal 11"),
])
def test_fi_info_that_cannot_tell_is_incomplete(tmp_path, mode, words):
    proc, check, text = dhc(tmp_path, FAKE_EFA_DOMAINS="32", FAKE_FI_INFO=mode)
    assert (proc.returncode, check["status"]) == (3, "Incomplete"), proc.stdout + proc.stderr
    assert text.startswith("ml.p5.48xlarge expects 32 EFA devices, but ") and words in text, text


@pytest.mark.slow
def test_fi_info_missing_is_incomplete(tmp_path):
    proc, check, text = dhc(tmp_path, DHC_FI_INFO="fi_info-not-installed")
    assert (proc.returncode, check["status"]) == (3, "Incomplete")
    assert "expects 32 EFA devices, but fi_info-not-installed is not on PATH (install the EFA software" in text


@pytest.mark.slow
def test_a_hung_fi_info_is_killed_with_its_children(tmp_path, thresholds_file):
    def short(doc):
        doc["profiles"]["quick"]["connectivity.efa"] = {"expected_s": 1, "timeout_s": 16}  # 8 s to start and hang
    pids = tmp_path / "pids"
    proc, check, text = dhc(tmp_path, "--thresholds", str(thresholds_file(short)), FAKE_FI_INFO="hang",
                            FAKE_FI_INFO_PIDFILE=str(pids))
    assert (proc.returncode, check["status"]) == (3, "Incomplete"), proc.stdout + proc.stderr
    assert "but fi_info ran past 8 s and was stopped (with everything it started)" in text, text
    started = [int(pid) for pid in pids.read_text().split()]
    assert len(started) == 2, started  # fi_info and its child
    wait_ended(*started, what="the hung fi_info and its child")


@pytest.mark.slow
def test_a_type_that_promises_no_efa_is_skipped_not_passed(tmp_path, thresholds_file):
    def no_efa(doc):
        doc["instance_types"]["ml.p5.48xlarge"]["efa"] = 0
    proc, check, text = dhc(tmp_path, "--thresholds", str(thresholds_file(no_efa)), FAKE_EFA_DOMAINS="0")
    assert check["status"] == "Skipped" and "ml.p5.48xlarge promises no EFA device (efa: 0" in text, proc.stdout
