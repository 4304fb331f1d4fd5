"""nccl-tests logs: every release's table, launcher prefixes, corrupt and partial logs, scope, transport.

Fixtures in tests/data/nccl are written in the exact printf layouts of NVIDIA/nccl-tests releases
(see tests/data/nccl/README.md); the two real captures in ../shared/fixtures/nccl are used where present.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from waiting import wait_ended

from dhc.cli import main
from dhc.probes import nccl_log, nccl_table, nccl_tests, nccl_verdict, tool

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "nccl"
SHARED = ROOT.parent / "shared" / "fixtures" / "nccl"
FAKES = Path(__file__).parent / "fakes"
THRESHOLDS = str(ROOT / "thresholds.yaml")
GiB = 2**30


def verdict(capsys, path, instance_type="p5.48xlarge", *args):
    code = main(["nccl-tests", str(path), "--instance-type", instance_type, "--thresholds", THRESHOLDS, *args])
    out = capsys.readouterr()
    return code, out.out + out.err


CASES = [  # fixture, instance type, extra args, exit code, what the person reading it needs to see
    # layouts across releases
    ("ar_v1_2018_p4d_intra.log", "p4d.24xlarge", [], 0, "busbw_intra_node: measured 230.79 GB/s, expected minimum 228"),
    ("ar_v2_10_p4d_intra.log", "p4d.24xlarge", [], 0, "busbw_intra_node: measured 234.3 GB/s"),
    ("ar_v2_13_p5_intra.log", "p5.48xlarge", [], 0, "busbw_intra_node: measured 481.88 GB/s, expected minimum 460"),
    ("ar_v2_17_timestamps_p5_intra.log", "p5.48xlarge", [], 0, "busbw_intra_node: measured 481.88 GB/s"),
    ("ar_v2_19_per_iteration_p5_intra.log", "p5.48xlarge", [], 0, "busbw_intra_node: measured 480.91 GB/s"),
    ("two_type_sweep_p5_intra.log", "p5.48xlarge", [], 0, "the worst of 2 sweep(s)"),
    ("ar_v2_10_no_footer.log", "p4d.24xlarge", [], 3,
     "older nccl-tests layout prints only each row's max error and the log has no '# Out of bounds values' line"),
    ("ar_v2_10_out_of_bounds.log", "p4d.24xlarge", [], 1, "fault: nccl-tests reported 3 out-of-bounds results"),
    # launchers, interleaving, elision, wide numbers
    ("ompi_tag_output_socket_fallback_p5.log", "p5.48xlarge", [], 1,
     "fault: NCCL used the Socket transport on an EFA instance type"),
    ("srun_label_efa_p5_inter.log", "p5.48xlarge", [], 0, "busbw_inter_node: measured 487.81 GB/s, expected minimum 430"),
    ("interleaved_info_efa_p5_inter.log", "p5.48xlarge", [], 0, "channels: 5 network (5 GDRDMA)"),
    ("elided_with_footer_p5_inter.log", "p5.48xlarge", [], 0, "busbw_inter_node: measured 487.81 GB/s"),
    ("elided_without_footer_p5_inter.log", "p5.48xlarge", [], 3, "verdict: Incomplete: rows were elided ('...')"),
    ("wide_numbers_p5_inter.log", "p5.48xlarge", [], 0, "judging busbw_inter_node at 1099511627776 B"),
    # runs that died
    ("died_before_table_p5.log", "p5.48xlarge", [], 3,
     "the run died before its results table: Test NCCL failure common.cu:1279 'unhandled system error"),
    ("died_mid_table_p5.log", "p5.48xlarge", [], 3,
     "verdict: Incomplete: the run reported a failure: Test CUDA failure common.cu:893 'an illegal memory access"),
    # corrupt logs
    ("repeated_tables_earlier_wrong_p5_inter.log", "p5.48xlarge", [], 1,
     "fault: 128 wrong elements in 1 row(s): 128 at 33554432 B (line 60)"),
    ("repeated_tables_earlier_slow_p5_inter.log", "p5.48xlarge", [], 1,
     "fault: connectivity.allreduce busbw_inter_node: measured 356.71 GB/s, expected minimum 430"),
    ("row_inf_p5_inter.log", "p5.48xlarge", [], 3, "line 54 (8589934592 B): out-of-place algbw inf is not a measurement"),
    ("row_1e309_p5_inter.log", "p5.48xlarge", [], 3, "line 54 (8589934592 B): out-of-place busbw inf is not a measurement"),
    ("row_negative_p5_inter.log", "p5.48xlarge", [], 3, "out-of-place busbw -487.1 is not a measurement"),
    ("truncated_sweep_p5_inter.log", "p5.48xlarge", [], 3,
     "stopped at 1048576 B, short of the 17179869184 B that -e asked for"),
    ("truncated_mid_row_p5_inter.log", "p5.48xlarge", [], 3, "unrecognised row, line 54: 3 fields where the header announces 13"),
    ("malformed_number_p5_inter.log", "p5.48xlarge", [], 3, "unrecognised row, line 52: algbw '4.8.7' is not a number"),
    # logs that cannot speak to all-reduce bus bandwidth
    ("all_gather_perf_p5_inter.log", "p5.48xlarge", [], 3, "the log is from all_gather_perf, not all_reduce_perf"),
    ("reduce_scatter_perf_v2_10_p5_inter.log", "p5.48xlarge", [], 3, "busbw/algbw is 0.938, but all-reduce over 16 ranks"),
    ("sendrecv_perf_no_program_line_p5_inter.log", "p5.48xlarge", [], 3, "busbw/algbw is 1.000, but all-reduce over 16"),
    ("single_rank_p5.log", "p5.48xlarge", [], 3, "a single rank: all-reduce bus bandwidth is 0 by definition"),
    ("single_rank_no_rank_lines_p5.log", "p5.48xlarge", [], 3, "a single rank"),
    ("built_without_mpi_two_processes_p4d.log", "p4d.24xlarge", [], 3,
     "one rank is listed on two hosts (rank 0 on ip-10-1-9-201 and ip-10-1-4-17)"),
    ("small_sweep_p5_intra.log", "p5.48xlarge", [], 3,
     "the largest size is 134217728 B, below the 2147483648 B dhc sweeps to"),
    ("blocking_p5_intra.log", "p5.48xlarge", [], 3, "blocking mode (-z)"),
    ("op_max_p5_intra.log", "p5.48xlarge", [], 3, "reduction op max only: the limits are set on the default sum"),
    ("validation_off_p5_intra.log", "p5.48xlarge", [], 3, "validation was off (-c 0; #wrong is N/A on 31 rows"),
    # scope and transport
    ("two_node_4gpu_no_hosts_p5.log", "p5.48xlarge", [], 2, "cannot tell intra-node from inter-node"),
    ("two_node_4gpu_no_hosts_p5.log", "p5.48xlarge", ["--scope", "inter"], 1,
     "fault: connectivity.allreduce busbw_inter_node: measured 350.5 GB/s, expected minimum 430"),
    ("efa_without_channels_p5_inter.log", "p5.48xlarge", [], 0,
     "transport: GPUDirect RDMA unknown: no channel line shows a network hop"),
    ("efa_old_plugin_p4de_inter.log", "p4de.24xlarge", [], 0, "AWS Libfabric, provider efa; channels: 2 network (2 GDRDMA)"),
]


@pytest.mark.parametrize(("fixture", "instance_type", "args", "code", "words"), CASES,
                         ids=[f"{c[0]}{'+' + '-'.join(c[2]) if c[2] else ''}" for c in CASES])
def test_verdict_on_each_log(capsys, fixture, instance_type, args, code, words):
    got, out = verdict(capsys, DATA / fixture, instance_type, *args)
    assert (got, words in out) == (code, True), out
    assert "Traceback" not in out


def test_a_log_without_transport_lines_says_unknown(capsys):
    code, out = verdict(capsys, DATA / "ar_v2_13_p5_intra.log")
    assert code == 0 and "transport: unknown (no NCCL INFO transport lines" in out, out


def test_the_earlier_wrong_table_is_not_hidden_by_a_later_clean_one():
    run = nccl_tests.parse((DATA / "repeated_tables_earlier_wrong_p5_inter.log").read_text())
    assert len(run.sweeps) == 2 and len(run.rows) == 64 and run.wrong == 128
    assert [r.size_bytes for r in run.rows].count(33554432) == 2


def test_wide_numbers_are_split_on_whitespace():
    run = nccl_tests.parse((DATA / "wide_numbers_p5_inter.log").read_text())
    assert (run.largest().size_bytes, run.largest().count, run.largest().busbw) == (2**40, 2**38, 2156.10)


@pytest.mark.parametrize(("raw", "bare"), [
    ("[1,0]<stdout>:#  Rank  0 Group  0 Pid 4100 on h device 0", "#  Rank  0 Group  0 Pid 4100 on h device 0"),
    (" 0:            8             2", "           8             2"),
    ("13: # Out of bounds values : 0 OK", "# Out of bounds values : 0 OK"),
    ("[3] # nThread 1", "# nThread 1"),
    ("2025-05-16T16:40:02.222574581Z [1,0]<stdout>:  8  2", " 8  2"),
    ("  | 2025-05-16T16:40:02.222-07:00 | ip-10-36-29-253:82:2548 [0] NCCL INFO x",
     "ip-10-36-29-253:82:2548 [0] NCCL INFO x"),
    ("8h200-2:6831:6840 [0] NCCL INFO Using network Libfabric", "8h200-2:6831:6840 [0] NCCL INFO Using network Libfabric"),
])
def test_launcher_prefixes_are_removed(raw, bare):
    assert nccl_table.strip_prefix(raw) == bare


@pytest.mark.parametrize(("header", "lead", "checks", "width"), [
    ("#       bytes             N    type      op     time  algbw  busbw      res     time  algbw  busbw      res",
     ("size", "count", "type", "redop"), "delta", 12),
    ("#       size         count      type   redop     time   algbw   busbw  error     time   algbw   busbw  error",
     ("size", "count", "type", "redop"), "delta", 12),
    ("#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong",
     ("size", "count", "type", "redop", "root"), "count", 13),
    ("#  size count type redop root cputime algbw busbw #wrong cputime algbw busbw #wrong    timestamp",
     ("size", "count", "type", "redop", "root"), "count", 15),
    ("#       size         count      type",  # an all_gather of 2.0-2.12: no redop
     None, None, None),
])
def test_each_release_header(header, lead, checks, width):
    layout = nccl_table.header_layout(header)
    if lead is None:
        assert layout is None
    else:
        assert (layout.lead, layout.checks, layout.width) == (lead, checks, width)


def test_a_header_dhc_does_not_know_makes_its_rows_unrecognised():
    layout = nccl_table.header_layout("# size count type redop root time algbw busbw #wrong")
    assert layout is not None and layout.checks == "unknown"
    with pytest.raises(nccl_table.RowError, match="under a header dhc does not know"):
        nccl_table.parse_row("8 2 float sum -1 1.0 0.00 0.00 0", 7, layout)


def test_the_shared_p5_capture_proves_two_nodes_by_its_busbw_ratio(capsys):
    path = SHARED / "all_reduce_perf_2x8_h100_p5_efa.txt"
    if not path.exists():
        pytest.skip(f"shared capture {path} is not beside this checkout")
    run = nccl_tests.parse(path.read_text())
    assert nccl_verdict.implied_ranks(run.rows) == 16
    code, out = verdict(capsys, path)
    assert code == 0 and "busbw/algbw implies 16 ranks, more than the 8 GPUs of one node" in out, out
    assert "busbw_inter_node: measured 487.26 GB/s, expected minimum 430" in out


def one_host_name(tmp_path, fixture, name):
    """The fixture with every host (rank lines and NCCL INFO lines) renamed ``name``, as in containers."""
    log = tmp_path / f"{name}_{fixture}"
    log.write_text(re.sub(r"ip-10-\d+-\d+-\d+", name, (DATA / fixture).read_text()))
    assert set(re.findall(r"ip-10-[\d-]+", log.read_text())) <= {name}
    return log


@pytest.mark.parametrize("name", ["localhost", "ip-10-1-4-17"])
def test_more_ranks_than_the_type_has_gpus_on_one_host_name_is_inter_node(capsys, tmp_path, name):
    code, out = verdict(capsys, one_host_name(tmp_path, "elided_with_footer_p5_inter.log", name))
    assert code == 0, out
    assert f"scope: inter (listed 16 ranks, more than the 8 GPUs of one node (all named {name}: the names do not " \
           "tell the nodes apart))" in out
    assert "busbw_inter_node: measured 487.81 GB/s, expected minimum 430" in out


def test_ranks_on_localhost_prove_no_node(capsys, tmp_path):
    log = one_host_name(tmp_path, "ar_v2_13_p5_intra.log", "localhost")  # 8 ranks: one node, or 2 x 4 containers
    code, out = verdict(capsys, log)
    assert code == 2, out
    assert "cannot tell intra-node from inter-node: every rank is listed on localhost, a name that does not " \
           "identify a node; pass --scope intra or --scope inter" in out
    code, out = verdict(capsys, log, "p5.48xlarge", "--scope", "intra")
    assert code == 0 and "busbw_intra_node: measured 481.88 GB/s" in out, out


def test_ranks_within_the_type_on_one_named_host_are_intra_node():
    run = nccl_tests.parse((DATA / "ar_v2_13_p5_intra.log").read_text())
    assert nccl_verdict.scope(run, run.ranks, 8) == ("intra", "8 ranks on one host (ip-10-1-4-17)")
    assert nccl_verdict.scope(run, run.ranks, 4)[0] == "inter"  # 8 ranks cannot share 4 GPUs


def test_ranks_are_not_implied_from_rounded_small_numbers():
    run = nccl_tests.parse((DATA / "two_node_4gpu_no_hosts_p5.log").read_text())
    assert nccl_verdict.implied_ranks(run.rows) == 8  # 8 ranks fit one p5: scope stays unknown
    assert nccl_verdict.implied_ranks(run.rows[:3]) is None  # busbw 0.00 at 8-32 B proves nothing


def test_unreadable_file_is_a_usage_error(capsys, tmp_path):
    code, out = verdict(capsys, tmp_path / "missing.log")
    assert code == 2 and "missing.log: cannot read" in out


@pytest.mark.parametrize(("text", "words"), [
    ("", "the log is empty"),
    ("# nThread 1 nGpus 1\n# Avg bus bandwidth    : 1.0\n", "first bytes: '# nThread 1 nGpus 1"),
    ("garbage\x00\n", "first bytes: 'garbage\\x00'"),
])
def test_no_table_names_what_was_seen(text, words):
    with pytest.raises(nccl_tests.NcclTestsOutputError, match="no results table") as caught:
        nccl_tests.parse(text)
    assert words in str(caught.value)


# ---- transport strings across aws-ofi-nccl and NCCL versions ---------------------------------------

@pytest.mark.parametrize(("lines", "networks", "providers", "net", "gdrdma"), [
    (["h:1:1 [0] NCCL INFO NET/OFI Selected Provider is efa", "h:1:1 [0] NCCL INFO Using network AWS Libfabric",
      "h:1:2 [0] NCCL INFO Channel 00 : 7[7] -> 8[0] [send] via NET/AWS Libfabric/0/GDRDMA"],
     {"AWS Libfabric"}, {"efa"}, 1, 1),
    (["h:1:1 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa-direct (found 16 nics)",
      "h:1:1 [0] NCCL INFO Using network Libfabric",
      "h:1:2 [0] NCCL INFO Channel 01/1 : 6[6] -> 10[2] [send] via NET/Libfabric/1(2)/GDRDMA/Shared",
      "h:1:2 [0] NCCL INFO Channel 02/0 : 15[7] -> 0[0] [receive] via NET/Libfabric/0/GDRDMA/flush=None"],
     {"Libfabric"}, {"efa"}, 2, 2),
    (["h:1:1 [0] NCCL INFO NET/OFI Selected Provider is efa (found 4 nics)",
      "h:1:2 [0] NCCL INFO Ring 00 : 7 -> 8 [receive] via NET/AWS Libfabric/0"],
     set(), {"efa"}, 1, 0),
])
def test_transport_strings(lines, networks, providers, net, gdrdma):
    summary = nccl_log.parse("\n".join(lines))
    assert (summary.networks, summary.providers, summary.net_channels, summary.gdrdma_channels) == \
        (networks, providers, net, gdrdma)
    assert summary.uses_libfabric


def test_efa_fabric_is_recorded():
    summary = nccl_log.parse("h:1:1 [0] NCCL INFO NET/OFI Selected provider is efa, fabric is efa-direct (found 16 nics)")
    assert summary.fabrics == {"efa-direct"} and "fabric efa-direct" in summary.describe()


def test_what_a_log_does_not_show_is_unknown_not_ok():
    nothing = nccl_log.parse("# nThread 1 nGpus 8\n")
    assert nccl_log.transport_faults(nothing, True, True, True) == []
    assert nccl_log.transport_unknowns(nothing, True, True)[0].startswith("transport unknown")
    no_channels = nccl_log.parse("h:1:1 [0] NCCL INFO NET/OFI Selected provider is efa\n"
                                 "h:1:1 [0] NCCL INFO Using network Libfabric\n")
    assert nccl_log.transport_faults(no_channels, True, True, True) == []
    assert nccl_log.transport_unknowns(no_channels, True, True) == [
        "GPUDirect RDMA unknown: no channel line shows a network hop ('via NET/...')"]
    no_provider = nccl_log.parse("h:1:2 [0] NCCL INFO Channel 00/0 : 7[7] -> 8[0] [send] via NET/Libfabric/0/GDRDMA")
    assert nccl_log.transport_unknowns(no_provider, True, True) == [
        "libfabric provider unknown: no 'NET/OFI Selected provider' line"]


def test_a_tcp_provider_is_a_fault():
    summary = nccl_log.parse("h:1:1 [0] NCCL INFO NET/OFI Selected provider is tcp\n"
                             "h:1:1 [0] NCCL INFO Using network Libfabric\n")
    assert nccl_log.transport_faults(summary, True, True, True) == ["libfabric provider was tcp, not efa"]


# ---- running all_reduce_perf ------------------------------------------------------------------------

def fake_env(monkeypatch, **variables):
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ['PATH']}")
    for key, value in variables.items():
        monkeypatch.setenv(key, value)


def test_a_failed_run_reports_the_nccl_error_it_printed(monkeypatch):
    fake_env(monkeypatch, FAKE_NCCL_TESTS_OUTPUT=str(DATA / "died_before_table_p5.log"), FAKE_NCCL_TESTS_EXIT="3")
    finished = nccl_tests.run_all_reduce_perf("all_reduce_perf", "8", "1G", 8, 60)
    message = finished.failure()
    assert finished.returncode == 3 and "Test NCCL failure" in finished.output
    assert message.startswith("all_reduce_perf exited 3: Test NCCL failure common.cu:1279 'unhandled system error")
    assert "NCCL WARN NET/OFI Request 0x7f3c completed with error" in message


def test_a_run_with_wrong_elements_exits_1_and_its_table_is_returned(monkeypatch):
    fake_env(monkeypatch, FAKE_NCCL_TESTS_OUTPUT=str(DATA / "repeated_tables_earlier_wrong_p5_inter.log"))
    finished = nccl_tests.run_all_reduce_perf("all_reduce_perf", "8", "1G", 8, 60)
    assert finished.returncode == 1  # as the real tool: errors[0] -> exit(EXIT_FAILURE)
    assert nccl_tests.parse(finished.output).wrong == 128
    assert finished.failure().startswith("all_reduce_perf exited 1: ")
    assert "# Out of bounds values : 0 OK" in finished.failure()  # no failure line: the end of its output


def test_a_clean_run_exits_0_and_has_no_failure(monkeypatch):
    fake_env(monkeypatch, FAKE_NCCL_TESTS_OUTPUT=str(DATA / "ar_v2_13_p5_intra.log"))
    finished = nccl_tests.run_all_reduce_perf("all_reduce_perf", "8", "1G", 8, 60)
    assert (finished.returncode, finished.failure()) == (0, None)
    assert nccl_tests.Finished("all_reduce_perf", "", 139).failure() == "all_reduce_perf exited 139: (no output)"


def test_a_missing_binary_is_named(monkeypatch):
    monkeypatch.setenv("PATH", str(FAKES / "nowhere"))
    with pytest.raises(tool.ToolMissing, match="all_reduce_perf is not on PATH"):
        nccl_tests.run_all_reduce_perf("all_reduce_perf", "8", "1G", 8, 60)


def test_a_hung_run_is_killed_with_everything_it_started(monkeypatch, tmp_path):
    pids = tmp_path / "pids"
    fake_env(monkeypatch, FAKE_NCCL_TESTS_HANG=str(pids), FAKE_NCCL_TESTS_OUTPUT=str(DATA / "truncated_sweep_p5_inter.log"))
    with pytest.raises(nccl_tests.NcclTestsOutputError, match=r"ran past 8 s and was stopped \(with everything it "
                       r"started\); the last size it finished was 1048576 B"):  # 8 s: room to start, print and hang
        nccl_tests.run_all_reduce_perf("all_reduce_perf", "8", "1G", 8, 8)
    parent, child = (int(p) for p in pids.read_text().split())
    wait_ended(parent, child, timeout=30, what="the hung all_reduce_perf and its child")


def engine(tmp_path, fixture, exit_code=None):
    """``dhc run`` of connectivity.allreduce on the fake all_reduce_perf; it exits as the real one unless told."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))}
    env.update(DHC_IMDS="off", PATH=f"{FAKES}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(FAKES),
               FAKE_NVML_FILE=str(Path(__file__).parent / "data" / "nvml_p5_h100.json"),
               DHC_NCCL_TESTS="all_reduce_perf", FAKE_NCCL_TESTS_OUTPUT=str(DATA / fixture))
    if exit_code is not None:
        env["FAKE_NCCL_TESTS_EXIT"] = exit_code
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--instance-type", "p5.48xlarge", "--check",
                           "connectivity.allreduce", "--out", str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=300)
    return proc, json.loads((tmp_path / "report.json").read_text())["checks"][0]


@pytest.mark.slow
def test_the_engine_names_the_error_of_a_run_that_died(tmp_path):
    proc, check = engine(tmp_path, "died_mid_table_p5.log", exit_code="2")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert check["reason"].startswith(
        "nccl-tests: all_reduce_perf exited 2: Test CUDA failure common.cu:893 'an illegal"), check["reason"]


@pytest.mark.slow
def test_the_engine_fails_on_wrong_elements_in_an_earlier_table(tmp_path):
    proc, check = engine(tmp_path, "repeated_tables_earlier_wrong_p5_inter.log")  # the fake exits 1, as the real one
    assert proc.returncode == 1 and check["status"] == "Failed", proc.stdout + proc.stderr
    assert "all_reduce_perf: 128 wrong elements in 1 row(s): 128 at 33554432 B (line 60)" in check["reason"]
    assert (tmp_path / "all_reduce_perf.log").read_text().count("Out of bounds values") == 2


@pytest.mark.slow
def test_the_engine_fails_on_wrong_elements_when_2_19_6_returns_7(tmp_path):
    log = tmp_path / "wrong_2_19_6.log"  # 2.19.6+: main returns testNumResults (7) after a TESTCHECK line
    log.write_text((DATA / "repeated_tables_earlier_wrong_p5_inter.log").read_text()
                   + " .. ip-10-1-9-201 pid 4100: Test failure common.cu:1454\n")
    proc, check = engine(tmp_path / "out", log, exit_code="7")
    assert proc.returncode == 1 and check["status"] == "Failed", proc.stdout + proc.stderr
    assert "all_reduce_perf: 128 wrong elements in 1 row(s)" in check["reason"]


@pytest.mark.slow
def test_the_engine_names_a_non_zero_exit_when_the_table_shows_no_fault(tmp_path):
    text = (DATA / "ar_v2_13_p5_intra.log").read_text()  # NCCL_TESTS_MIN_BW missed: "FAILED" and exit 1
    log = tmp_path / "min_bw_failed.log"
    log.write_text(text.replace("# Avg bus bandwidth    : 120.3 ", "# Avg bus bandwidth    : 120.3 FAILED"))
    assert "FAILED" in log.read_text()
    proc, check = engine(tmp_path / "out", log)
    assert proc.returncode == 3 and check["status"] == "Incomplete", proc.stdout + proc.stderr
    assert check["reason"].startswith("nccl-tests: all_reduce_perf exited 1: "), check["reason"]
    assert "# Avg bus bandwidth    : 120.3 FAILED" in check["reason"]


def test_only_unreadable_rows_is_incomplete_not_a_traceback(capsys, tmp_path):
    log = tmp_path / "bad.log"
    log.write_text("#  Rank  0 Group  0 Pid   4100 on a device  0\n#  Rank  1 Group  0 Pid   4101 on b device  0\n"
                   "     8     2   float   sum   -1   12.1   0.00   0.00   0   11.9   0.00   0.00   0x\n")
    code, out = verdict(capsys, log)
    assert code == 3 and "largest none readable" in out and "unrecognised row, line 3" in out, out


@pytest.mark.parametrize("fixture", ["repeated_tables_earlier_wrong_p5_inter.log", "ar_v2_19_per_iteration_p5_intra.log",
                                     "ompi_tag_output_socket_fallback_p5.log", "ar_v1_2018_p4d_intra.log"])
def test_a_log_cut_anywhere_never_raises_and_never_passes_short(fixture):
    text = (DATA / fixture).read_text()
    for end in range(0, len(text), 97):
        try:
            run = nccl_tests.parse(text[:end])
        except nccl_tests.NcclTestsOutputError:
            continue
        result = nccl_verdict.assess(run, 2 * GiB)
        nccl_verdict.scope(run, result.ranks, 8)
        if result.judged is not None:  # judged only when every sweep reached the -e it asked for
            assert all(s.rows[-1].size_bytes * 2 > s.max_bytes for s in run.sweeps), end


def test_wrapper_text_that_starts_with_a_number_is_not_a_row():
    text = (DATA / "ar_v2_13_p5_intra.log").read_text()
    run = nccl_tests.parse("2 nodes were asked for, 1 answered\n" + text)
    assert run.unreadable == () and len(run.rows) == 31


def test_a_max_bytes_lowered_for_memory_is_the_end_the_sweep_is_held_to():
    lines = (DATA / "truncated_sweep_p5_inter.log").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("#  Rank 15"))
    lowered = lines[:at + 1] + ["#", "# Reducing maxBytes to 1048576 due to memory limitation"] + lines[at + 1:]
    run = nccl_tests.parse("\n".join(lowered))
    assert run.sweeps[0].max_bytes == 1048576
    assert nccl_verdict.assess(run, 1048576).judged is not None


def test_in_place_not_validated_is_not_validation_off():
    text = (DATA / "ar_v2_13_p5_intra.log").read_text().splitlines()
    rows = [i for i, line in enumerate(text) if nccl_table.looks_like_row(line)]
    for i in rows:  # as alltoall_perf prints: out-of-place checked, in-place "N/A"
        text[i] = text[i].rsplit(maxsplit=1)[0] + "    N/A"
    result = nccl_verdict.assess(nccl_tests.parse("\n".join(text)), 2 * GiB)
    assert result.unknowns == [] and result.judged is not None


@pytest.mark.parametrize(("line", "reason"), [
    ("fengyun: Test NCCL failure common.cu:959 'internal error - please report this issue to the NCCL developers / '",
     "Test NCCL failure common.cu:959 'internal error - please report this issue to the NCCL developers / '"),
    ("c2211f46f318: Test NCCL failure common.cu:1005 'unhandled CUDA error'",
     "Test NCCL failure common.cu:1005 'unhandled CUDA error'"),
    ("Test CUDA failure common.cu:730 'unknown error'", "Test CUDA failure common.cu:730 'unknown error'"),
    ("NCCL failure all_reduce.cu:95 'unhandled cuda error'", "NCCL failure all_reduce.cu:95 'unhandled cuda error'"),
    ("Cuda failure common.cu:412 'out of memory'", "Cuda failure common.cu:412 'out of memory'"),  # 1.x
])
def test_each_release_failure_line_is_the_reason(line, reason):
    with pytest.raises(nccl_tests.NcclTestsOutputError) as caught:
        nccl_tests.parse("# nThread 1 nGpus 2 minBytes 8 maxBytes 128 step: 2(factor) warmup iters: 5\n#\n" + line + "\n")
    assert str(caught.value) == f"the run died before its results table: {reason}"


@pytest.mark.slow
@pytest.mark.parametrize(("fixture", "code", "words"), [
    ("ompi_tag_output_socket_fallback_p5.log", 1, "fault: NCCL used the Socket transport on an EFA instance type"),
    ("malformed_number_p5_inter.log", 3, "verdict: Incomplete: unrecognised row, line 52"),
    ("two_node_4gpu_no_hosts_p5.log", 2, "pass --scope intra or --scope inter"),
])
def test_the_command_end_to_end(fixture, code, words):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))} | {"DHC_IMDS": "off"}
    proc = subprocess.run([sys.executable, "-m", "dhc", "nccl-tests", str(DATA / fixture), "--instance-type",
                           "p5.48xlarge"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == code and words in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def command_into(sink, fixture):
    """``dhc nccl-tests`` in a subprocess whose stdout is ``sink``: a pipe nobody reads, or /dev/full."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))} | {"DHC_IMDS": "off"}
    argv = [sys.executable, "-m", "dhc", "nccl-tests", str(DATA / fixture), "--instance-type", "p5.48xlarge"]
    if sink == "closed pipe":
        reader, writer = os.pipe()
        os.close(reader)  # the reader left before a byte was written, as `| head` does after its lines
        try:
            return subprocess.run(argv, stdout=writer, stderr=subprocess.PIPE, text=True, env=env, timeout=120)
        finally:
            os.close(writer)
    with open("/dev/full", "w") as full:
        return subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, env=env, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("sink", ["closed pipe", "/dev/full"])
@pytest.mark.parametrize(("fixture", "code"), [("repeated_tables_earlier_wrong_p5_inter.log", 1),
                                               ("malformed_number_p5_inter.log", 3), ("ar_v2_13_p5_intra.log", 0),
                                               ("two_node_4gpu_no_hosts_p5.log", 2)])
def test_a_stdout_that_takes_nothing_keeps_the_verdicts_exit_code(sink, fixture, code):
    if sink == "/dev/full" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this machine")
    proc = command_into(sink, fixture)
    assert proc.returncode == code, proc.stderr
    assert "dhc: stdout did not take the answer (" in proc.stderr and "the exit code is the verdict's" in proc.stderr
    assert code != 2 or "pass --scope intra or --scope inter" in proc.stderr  # a usage error still says why
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(("cell", "why"), [("-3", "out-of-place #wrong -3"), ("nan", "out-of-place #wrong nan")])
def test_an_impossible_wrong_count_is_named_not_counted(cell, why):
    text = (DATA / "ar_v2_13_p5_intra.log").read_text().splitlines()
    at = max(i for i, line in enumerate(text) if nccl_table.looks_like_row(line))
    tokens = text[at].split()
    tokens[8] = cell
    text[at] = "  ".join(tokens)
    result = nccl_verdict.assess(nccl_tests.parse("\n".join(text)), 2 * GiB)
    assert result.faults == [] and result.judged is None
    assert result.unknowns == [f"line {at + 1} (8589934592 B): {why} is not a measurement"]


def test_a_number_too_long_for_python_is_a_named_reason_never_an_exception():
    """Python refuses to read an int of more than 4,300 digits; a log carrying one must still get a named reason."""
    huge = "9" * 5000
    log = (DATA / "ar_v2_13_p5_intra.log").read_text()
    with pytest.raises(nccl_tests.NcclTestsOutputError, match="unrecognised line"):  # in the run's parameters
        nccl_tests.parse(log.replace("maxBytes ", f"maxBytes {huge}", 1))
    run = nccl_tests.parse(log.replace("           8             2 ", f"           {huge}             2 ", 1))
    assert any("size" in u and "is not a whole number" in u for u in run.unreadable)  # in a row: an unreadable row


@pytest.mark.parametrize(("fixture", "args", "record"), [
    ("two_node_4gpu_no_hosts_p5.log", ["--scope", "inter"],  # a bandwidth miss: the limit's action
     lambda rec: rec.record("busbw_inter_node", 350.5, "GB/s")),
    ("repeated_tables_earlier_wrong_p5_inter.log", [],
     lambda rec: rec.fault("all_reduce_perf: 128 wrong elements", None, nccl_verdict.WRONG_VALUES)),
    ("ompi_tag_output_socket_fallback_p5.log", [],
     lambda rec: (rec.fault("NCCL used the Socket transport", None, nccl_verdict.WRONG_TRANSPORT),
                  rec.record("busbw_inter_node", 45.08, "GB/s"))),  # Socket is slow too
])
def test_nccl_tests_reaches_the_action_dhc_run_reaches(capsys, fixture, args, record):
    """The log's Failed verdict carries the action dhc run's recorder gives the same fault (a limit's own for
    a bandwidth miss), judged by node_verdict, never Failed with action None."""
    from dhc.model import CheckResult, Status, node_verdict
    from dhc.plugin.recorder import CheckRecorder
    from dhc.thresholds import load, suite_of

    code, out = verdict(capsys, DATA / fixture, "p5.48xlarge", *args)
    recorder = CheckRecorder("connectivity.allreduce", load(THRESHOLDS).resolve("p5.48xlarge"))
    record(recorder)
    findings = tuple(recorder.findings())
    expected = node_verdict([CheckResult("connectivity.allreduce", suite_of("connectivity.allreduce"),
                                         Status.FAILED, findings[0].message, findings=findings)])
    assert expected.action.value != "None"
    assert (code, f"verdict: Failed, action {expected.action}" in out) == (1, True), out
