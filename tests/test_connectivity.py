"""InstanceConnectivity: nccl-tests and NCCL log parsing, all-reduce over real local ranks (EFA: test_efa.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dhc.probes import nccl_log, nccl_tests

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "nccl"
DATA = Path(__file__).parent / "data" / "nccl"
FAKES = Path(__file__).parent / "fakes"
GiB = 2**30


def capture(name):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared capture {path} is not beside this checkout")
    return path.read_text()


def test_nccl_tests_two_a3mega_nodes():
    run = nccl_tests.parse(capture("all_reduce_perf_2x8_h100_a3mega.txt"))
    assert (run.ranks, run.hosts, run.avg_busbw, run.wrong) == (16, ("ztan-mig-235z", "ztan-mig-gq73"), 70.742, 0)
    assert (run.rows[0].size_bytes, run.largest().size_bytes, run.largest().busbw) == (8, 8 * GiB, 338.82)
    assert run.peak_busbw(GiB).busbw == 338.82


def test_nccl_tests_p5_efa_with_rank_prefix_and_repeated_rows():
    run = nccl_tests.parse(capture("all_reduce_perf_2x8_h100_p5_efa.txt"))
    assert len(run.rows) == 32 and len({r.size_bytes for r in run.rows}) == 32
    assert (run.largest().size_bytes, run.largest().busbw, run.largest().in_place_busbw) == (16 * GiB, 487.09, 487.26)


@pytest.mark.parametrize("text", ["", "# nThread 1 nGpus 1\n# Avg bus bandwidth    : 1.0\n", "garbage\x00\n"])
def test_nccl_tests_without_a_table(text):
    with pytest.raises(nccl_tests.NcclTestsOutputError):
        nccl_tests.parse(text)


def transport(name):
    return nccl_log.parse((DATA / name).read_text())


def test_transport_on_a_healthy_p5():
    summary = transport("info_p5_efa_good.log")
    assert summary.networks == {"Libfabric"} and summary.providers == {"efa"}
    assert (summary.net_channels, summary.gdrdma_channels, summary.p2p_channels, summary.shm_channels) == (3, 3, 3, 0)
    assert nccl_log.transport_faults(summary, expects_efa=True, expects_nvlink=True, inter_node=True) == []


def test_transport_socket_fallback_and_shm_are_faults():
    faults = nccl_log.transport_faults(transport("info_p5_socket_fallback.log"), True, True, True)
    assert any("Socket transport on an EFA instance type" in f for f in faults)
    assert any("without GPUDirect RDMA" in f for f in faults)
    assert any("shared memory (SHM) instead of NVLink" in f for f in faults)
    # one node alone: only the NVLink complaint applies
    alone = nccl_log.transport_faults(transport("info_p5_socket_fallback.log"), True, True, inter_node=False)
    assert len(alone) == 1 and "SHM" in alone[0]


def test_transport_old_aws_libfabric_names():
    summary = transport("info_p4d_aws_libfabric_old.log")
    assert summary.uses_libfabric and summary.net_channels == 2 and summary.gdrdma_channels == 1
    assert nccl_log.transport_faults(summary, True, True, True) == [
        "1 of 2 network channels ran without GPUDirect RDMA (GDRDMA)"]


# -- all-reduce over real local ranks (gloo) -----------------------------------------------------
torch_needed = pytest.mark.skipif(__import__("importlib").util.find_spec("torch") is None,
                                  reason="the all-reduce needs torch (dhc[engines])")


# -- the plan of sub-runs (dhc.comm.allreduce_plan): pure, no torch -----------------------------------------
def allreduce_plan(instance_type="cpu", timeout_s=300, **group):
    from dhc import thresholds
    from dhc.comm import allreduce_plan
    from dhc.thresholds import CATALOGUE
    t = thresholds.load().resolve(instance_type).instance_type
    node = allreduce_plan.Node(t.gpus, t.efa, t.nvlinks_per_gpu, Path("/run/out"), **group)
    budgets = {n: b.seconds for n, b in CATALOGUE["connectivity.allreduce"].budgets("torch", timeout_s).items()}
    return allreduce_plan.plan(node, budgets)


def test_a_cpu_node_alone_runs_one_sub_run_without_nccl():
    [run] = allreduce_plan("cpu")
    assert (run.name, run.metric, run.timeout_s, run.environment, run.prove) == ("intra_node", "busbw_intra_node",
                                                                                 60, {}, None)
    assert (run.placement.nodes, run.placement.port, run.problem) == (1, None, None)


def test_a_p5_alone_proves_its_transport_and_runs_both_isolations():
    runs = allreduce_plan("ml.p5.48xlarge", 900)
    assert [(r.name, r.timeout_s) for r in runs] == [("intra_node", 180), ("nvlink_only", 180),
                                                     ("network_loopback", 180)]
    intra, nvlink, loopback = runs
    assert intra.environment == {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": "/run/out/nccl-main-%h-%p.log"}
    assert (intra.prove.log_pattern, intra.prove.inter_node, intra.prove.nvlink) == ("nccl-main-*.log", False, True)
    assert nvlink.environment["NCCL_P2P_LEVEL"] == "NVL" and nvlink.prove is None
    assert loopback.environment["NCCL_DEBUG_FILE"] == "/run/out/nccl-network_loopback-%h-%p.log"
    assert (loopback.prove.inter_node, loopback.prove.nvlink) == (True, False)


def test_a_multi_node_run_meets_at_the_rendezvous_and_proves_the_main_logs_after_it():
    intra, inter, *_ = allreduce_plan("ml.p5.48xlarge", 900, nodes=4, node_index=2, rendezvous="10.0.0.5:29500")
    assert intra.prove is None and (inter.prove.log_pattern, inter.prove.inter_node) == ("nccl-main-*.log", True)
    assert (inter.placement.index, inter.placement.nodes, inter.placement.address, inter.placement.port) == \
        (2, 4, "10.0.0.5", 29500)


@pytest.mark.parametrize(("rendezvous", "problem"), [
    (None, "DHC_NODES=2 needs DHC_RENDEZVOUS=host:port of node 0"),
    ("node0", "DHC_RENDEZVOUS: expected HOST:PORT for the rendezvous, got 'node0'"),
])
def test_a_multi_node_run_that_cannot_meet_says_why_when_it_comes_to_it(rendezvous, problem):
    intra, inter = allreduce_plan("cpu", nodes=2, rendezvous=rendezvous)
    assert intra.problem is None and inter.problem == problem  # the node's own figure is measured first


def test_a_type_without_nvlink_or_efa_gets_no_isolation_run():
    from dhc.comm import allreduce_plan
    node = allreduce_plan.Node(gpus=8, efa=0, nvlinks_per_gpu=0, out=Path("/o"))
    assert [r.name for r in allreduce_plan.plan(node, dict.fromkeys(["intra_node"], 1.0))] == ["intra_node"]


@torch_needed
def test_bus_bandwidth_formula_and_judging_the_largest():
    from dhc.comm import allreduce
    assert allreduce.bus_bandwidth(8 * 10**9, 1.0, 8) == (8.0, 14.0)  # algbw x 2(n-1)/n
    assert allreduce.sweep_sizes(8, 64) == [8, 16, 32, 64]
    per_rank = [[(8, 1.0, 0), (16, 1.0, 0)], [(8, 2.0, 0), (16, 0.5, 1)]]
    rows = allreduce.combine(per_rank, 2)
    assert [(r.time_s, r.wrong_elements) for r in rows] == [(2.0, 0), (1.0, 1)]  # the slowest rank counts
    assert allreduce.peak_of_largest(rows, count=1).size_bytes == 16


@torch_needed
@pytest.mark.slow
def test_two_gloo_ranks_all_reduce_correctly():
    from dhc.comm import allreduce, launch
    sizes = allreduce.sweep_sizes(8, 2**20)
    per_rank = launch.run_local(2, "gloo", allreduce.rank_sweep, ("cpu", sizes), 120)
    rows = allreduce.combine(per_rank, 2)
    assert [r.size_bytes for r in rows] == sizes
    assert all(r.wrong_elements == 0 and r.busbw_gbs > 0 for r in rows)


@torch_needed
@pytest.mark.slow
@pytest.mark.parametrize(("inject", "words"), [
    ({"dead_rank": 1}, "rank 1 on "),
    ({"hung_rank": 1}, "rank 1 on "),
])
def test_a_dead_or_hung_rank_is_named_within_the_timeout(inject, words):
    import time

    from dhc.comm import allreduce, launch
    started = time.monotonic()  # the timeout also pays for starting the ranks: size it from this machine's pace,
    assert launch.run_local(2, "gloo", allreduce.rank_sweep, ("cpu", []), 120) == [[], []]  # a start and no work
    timeout = max(10.0, 4 * (time.monotonic() - started))  # so that the rank at fault, not the start-up, runs out
    with pytest.raises(launch.RankFailure) as err:
        launch.run_local(2, "gloo", allreduce.rank_sweep,
                         ("cpu", [1024, 2048], allreduce.AllreduceInjection(**inject)), timeout)
    message = str(err.value)
    blamed = message.split(" (seen by")[0].split("; rank 0 then")[0]
    assert blamed.startswith(words) and "rank 0 on" not in blamed
    assert ("exit code 17" in message) if "dead_rank" in inject else ("behind" in blamed or "hung" in blamed)


# -- end to end ----------------------------------------------------------------------------------
def dhc(*args, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))} | {"DHC_IMDS": "off"}
    return subprocess.run([sys.executable, "-m", "dhc", *args], capture_output=True, text=True,
                          env=base | env, timeout=300)


@torch_needed
@pytest.mark.slow
def test_instance_connectivity_on_cpu_passes(tmp_path, validate_report):
    proc = dhc("run", "--suite", "InstanceConnectivity", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = validate_report(tmp_path / "report.json")
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["connectivity.efa"]["status"] == "Skipped"
    measured = {m["name"]: m for m in checks["connectivity.allreduce"]["measurements"]}
    assert measured["busbw_intra_node"]["value"] > 0 and measured["busbw_intra_node_ranks"]["value"] == 2
    assert measured["busbw_intra_node"]["limit"]["value"] == 0.05


@torch_needed
@pytest.mark.slow
def test_two_nodes_meet_through_the_environment_rendezvous(tmp_path, validate_report):
    from dhc.comm.launch import free_port
    port = free_port()
    procs = []
    for index in (0, 1):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))}
        env.update(DHC_IMDS="off", DHC_NODES="2", JOB_COMPLETION_INDEX=str(index),
                   DHC_RENDEZVOUS=f"127.0.0.1:{port}", DHC_INSTANCE_ID=f"node-{index}")
        procs.append(subprocess.Popen([sys.executable, "-m", "dhc", "run", "--check", "connectivity.allreduce",
                                       "--out", str(tmp_path / f"n{index}")], env=env, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [p.communicate(timeout=300) for p in procs]
    for index, proc in enumerate(procs):
        assert proc.returncode == 0, outputs[index]
        report = validate_report(tmp_path / f"n{index}" / "report.json")
        measured = {m["name"]: m["value"] for m in report["checks"][0]["measurements"]}
        assert measured["busbw_inter_node_ranks"] == 4 and measured["busbw_inter_node"] > 0


@torch_needed
@pytest.mark.slow
def test_mpi_launch_runs_the_sweep_over_mpi_ranks(tmp_path):
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        pytest.skip("mpiexec (the mpich wheel) is not installed beside this Python")
    out = tmp_path / "mpi.json"
    proc = subprocess.run([str(mpiexec), "-n", "2", sys.executable, "-m", "dhc.comm.mpi", "--max-bytes", "1048576",
                           "--out", str(out)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["ranks"] == 2 and result["peak"]["busbw_gbs"] > 0
    assert all(row["wrong_elements"] == 0 for row in result["results"])


@pytest.mark.slow
@pytest.mark.parametrize(("fixture", "args", "code", "words"), [
    ("all_reduce_perf_2x8_h100_a3mega.txt", [], 1, "busbw_inter_node: measured 338.82 GB/s, expected minimum 430"),
    ("all_reduce_perf_2x8_h100_p5_efa.txt", ["--scope", "inter"], 0, "measured 487.26 GB/s"),
    ("all_reduce_perf_2x8_h100_p5_efa.txt", [], 0, "busbw_inter_node: measured 487.26 GB/s, expected minimum 430"),
])
def test_verdict_on_an_existing_nccl_tests_log(fixture, args, code, words):
    path = SHARED / fixture
    if not path.exists():
        pytest.skip(f"shared capture {path} is not beside this checkout")
    proc = dhc("nccl-tests", str(path), "--instance-type", "p5.48xlarge", *args)
    assert proc.returncode == code and words in proc.stdout, proc.stdout + proc.stderr


def test_verdict_on_a_log_without_results_is_incomplete(tmp_path):
    log = tmp_path / "empty.log"
    log.write_text("# nThread 1 nGpus 8\n")
    proc = dhc("nccl-tests", str(log), "--instance-type", "p5.48xlarge")
    assert proc.returncode == 3 and "no results table" in proc.stdout


@pytest.mark.slow
def test_nccl_tests_engine_on_a_gpu_type(tmp_path):
    fixture = SHARED / "all_reduce_perf_2x8_h100_a3mega.txt"
    if not fixture.exists():
        pytest.skip(f"shared capture {fixture} is not beside this checkout")
    proc = dhc("run", "--instance-type", "p5.48xlarge", "--check", "connectivity.allreduce", "--out", str(tmp_path),
               PATH=f"{FAKES}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(FAKES),
               FAKE_NVML_FILE=str(Path(__file__).parent / "data" / "nvml_p5_h100.json"),
               DHC_NCCL_TESTS="all_reduce_perf", FAKE_NCCL_TESTS_OUTPUT=str(fixture),
               FAKE_NCCL_TESTS_ARGS_LOG=str(tmp_path / "args"))
    report = json.loads((tmp_path / "report.json").read_text())
    measured = {m["name"]: m["value"] for m in report["checks"][0]["measurements"]}
    assert proc.returncode == 1 and measured["busbw_intra_node"] == 338.82  # below p5's 460
    assert (tmp_path / "args").read_text().strip() == "-b 8 -e 2147483648 -f 2 -g 8 -c 1 NCCL_DEBUG=INFO"


@torch_needed
@pytest.mark.slow
def test_a_rank_dying_on_another_node_is_named_on_this_one():
    import threading

    from dhc.comm import allreduce, launch
    port = launch.free_port()
    failures = {}

    def node(index):
        inject = allreduce.AllreduceInjection(dead_rank=3)  # global rank 3 lives on node 1
        placement = launch.Placement(index, 2, "127.0.0.1", port)
        try:
            launch.run_local(2, "gloo", allreduce.rank_sweep, ("cpu", [4096, 8192], inject), 30, None, placement)
        except launch.RankFailure as exc:
            failures[index] = str(exc)

    threads = [threading.Thread(target=node, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures[1].startswith("rank 3 on ") and "exit code 17" in failures[1]
    assert failures[0].startswith("rank 3 on ") or "rank 3 " in failures[0].split("(seen by")[0], failures[0]


@pytest.mark.slow
def test_a_hung_nccl_tests_run_is_named_with_its_share_of_the_timeout(tmp_path, thresholds_file):
    def short(doc):
        doc["profiles"]["quick"]["connectivity.allreduce"].update(expected_s=1, timeout_s=30)
    pids = tmp_path / "pids"
    proc = dhc("run", "--instance-type", "p5.48xlarge", "--check", "connectivity.allreduce", "--thresholds",
               str(thresholds_file(short)), "--out", str(tmp_path / "r"),
               PATH=f"{FAKES}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(FAKES),
               FAKE_NVML_FILE=str(Path(__file__).parent / "data" / "nvml_p5_h100.json"),
               DHC_NCCL_TESTS="all_reduce_perf", FAKE_NCCL_TESTS_HANG=str(pids),
               FAKE_NCCL_TESTS_OUTPUT=str(DATA / "truncated_sweep_p5_inter.log"))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    check = json.loads((tmp_path / "r" / "report.json").read_text())["checks"][0]
    assert check["status"] == "Incomplete" and check["reason"].startswith("nccl-tests: all_reduce_perf ran past 27 s")
    assert "the last size it finished was 1048576 B" in check["reason"], check["reason"]
    assert check["reason"].endswith("(sub-run all_reduce_perf: 27 s of connectivity.allreduce's 30 s timeout)")


@torch_needed
@pytest.mark.slow
def test_a_node_that_never_joins_makes_the_check_incomplete_naming_its_ranks(tmp_path, thresholds_file):
    from dhc.comm.launch import free_port

    def quick(doc):
        doc["instance_types"]["cpu"]["profiles"]["quick"]["connectivity.allreduce"].update(
            timeout_s=120, max_bytes=2**20)  # each run gets a fifth: room for a loaded CI machine
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DHC_", "FAKE_"))}
    env.update(DHC_IMDS="off", DHC_NODES="2", DHC_NODE_INDEX="0", DHC_RENDEZVOUS=f"127.0.0.1:{free_port()}")
    proc = subprocess.run([sys.executable, "-m", "dhc", "run", "--check", "connectivity.allreduce", "--thresholds",
                           str(thresholds_file(quick)), "--out", str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=180)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    reason = json.loads((tmp_path / "report.json").read_text())["checks"][0]["reason"]
    assert reason.startswith("busbw_inter_node: ") and "rank 2 never joined; rank 3 never joined" in reason, reason
    assert reason.endswith("(sub-run inter_node: 24 s of connectivity.allreduce's 120 s timeout)"), reason


# -- /dev/shm: room for the ranks before they start --------------------------------------------------
def statvfs_of(size_mib, free_mib):
    """A statvfs answer as the kernel gives it for a tmpfs of that size (4 KiB blocks)."""
    blocks = 256  # 4 KiB blocks per MiB
    return lambda path: os.statvfs_result((4096, 4096, size_mib * blocks, free_mib * blocks, free_mib * blocks,
                                           1000, 900, 900, 0, 255))


@pytest.mark.parametrize(("size", "free", "ranks", "per_rank_mib", "words"), [
    (64, 64, 8, 128, "/dev/shm is 64 MiB; 8 ranks need at least 1 GiB (128 MiB each): mount a larger "
                     "memory-backed /dev/shm (emptyDir medium Memory)"),
    (2048, 512, 8, 128, "/dev/shm is 2 GiB, 512 MiB free; 8 ranks need at least 1 GiB (128 MiB each)"),
    (64, 64, 2, 4, ""),  # the cpu profile's 2 gloo ranks fit a container's default 64 MiB
    (1024, 1024, 8, 128, ""),  # NCCL's advice for a container (--shm-size=1g) is exactly enough for 8 GPUs
])
def test_shm_judgement(size, free, ranks, per_rank_mib, words):
    from dhc.probes import host
    space = host.shm_space("/dev/shm", statvfs_of(size, free))
    assert (space.size_bytes, space.free_bytes) == (size * 2**20, free * 2**20)
    shortfall = host.shm_shortfall(space, ranks, per_rank_mib * 2**20)
    assert (words in shortfall) if words else shortfall == ""


def test_an_unreadable_shm_is_a_shortfall_too():
    from dhc.probes import host
    words = host.shm_shortfall(FileNotFoundError(2, "No such file or directory"), 8, 2**27)
    assert words.startswith("/dev/shm cannot be read (No such file or directory); 8 ranks need at least 1 GiB")


@pytest.mark.slow
def test_too_small_a_shm_makes_the_allreduce_incomplete_before_any_rank_starts(tmp_path, thresholds_file):
    from dhc.probes import host
    space = host.shm_space()
    per_rank = space.free_bytes // 2 + 2**20  # two ranks need a little more than is free here

    def small(doc):
        doc["instance_types"]["cpu"]["profiles"]["quick"]["connectivity.allreduce"]["shm_bytes_per_rank"] = per_rank
    proc = dhc("run", "--check", "connectivity.allreduce", "--thresholds", str(thresholds_file(small)),
               "--out", str(tmp_path))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    check = json.loads((tmp_path / "report.json").read_text())["checks"][0]
    assert check["status"] == "Incomplete" and check["reason"].startswith("/dev/shm is "), check["reason"]
    assert "; 2 ranks need at least " in check["reason"] and "emptyDir medium Memory" in check["reason"]
    assert not list(tmp_path.glob("nccl-*.log")) and not check.get("measurements")


# -- the single-node rendezvous listens on loopback alone --------------------------------------------
def wait_for_go(rank, world, folder):
    """A rank's work in the loopback test: say where it runs, then hold the group until the test has looked."""
    import time
    Path(folder, f"rank{rank}.tmp").write_text(str(os.getpid()))
    os.replace(Path(folder, f"rank{rank}.tmp"), Path(folder, f"rank{rank}.pid"))  # seen whole or not at all
    deadline = time.monotonic() + 120
    while not Path(folder, "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never said go")
        time.sleep(0.05)
    return os.getpid()


def listening_addresses(pids):
    """(address, port) of every TCP socket in LISTEN state that one of ``pids`` holds, from /proc alone."""
    import ipaddress
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] != "0A" or fields[9] not in inodes:
                continue
            hexaddr, hexport = fields[1].split(":")
            raw = bytes.fromhex(hexaddr)
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # the kernel prints 32-bit words LE
            found.append((ipaddress.ip_address(raw), int(hexport, 16)))
    return found


def is_loopback(address):
    return address.is_loopback or bool(getattr(address, "ipv4_mapped", None) and address.ipv4_mapped.is_loopback)


@torch_needed
@pytest.mark.slow
def test_a_single_node_run_listens_on_loopback_alone(tmp_path):
    import time
    from concurrent.futures import ThreadPoolExecutor

    from dhc.comm import launch
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(launch.run_local, 2, "gloo", wait_for_go, (str(tmp_path),), 120)
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("rank*.pid"))) < 2:  # both ranks are inside the group
            assert not run.done(), run.result()
            assert time.monotonic() < deadline, "the ranks never joined"
            time.sleep(0.05)
        pids = [int((tmp_path / f"rank{r}.pid").read_text()) for r in range(2)]
        listening = listening_addresses(pids)
        (tmp_path / "go").touch()
        assert run.result(timeout=120) == pids
    assert listening, "rank 0 hosts the rendezvous store, yet no rank was listening"
    assert all(is_loopback(address) for address, _ in listening), listening


@torch_needed
@pytest.mark.slow
def test_a_low_bandwidth_measured_before_a_later_run_fails_still_fails_the_check(tmp_path, thresholds_file,
                                                                                  validate_report):
    """The intra-node busbw is below its limit, then the inter-node run cannot meet its peer (nobody at the
    rendezvous): the check is Failed on the bandwidth, the failed run kept beside it, never Incomplete."""
    from dhc.comm.launch import free_port

    def edit(doc):
        cpu = doc["instance_types"]["cpu"]
        cpu["profiles"]["quick"]["connectivity.allreduce"].update(timeout_s=100, max_bytes=2**12)
        cpu["checks"]["connectivity.allreduce"]["limits"]["busbw_intra_node"]["min"] = 5000  # GB/s: gloo won't
    proc = dhc("run", "--instance-type", "cpu", "--check", "connectivity.allreduce", "--thresholds",
               str(thresholds_file(edit)), "--out", str(tmp_path / "r"), DHC_NODES="2", JOB_COMPLETION_INDEX="1",
               DHC_RENDEZVOUS=f"127.0.0.1:{free_port()}")
    report = validate_report(tmp_path / "r" / "report.json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    check = report["checks"][0]
    assert (check["status"], check["action"]) == ("Failed", "Replace")
    failed, stopped = check["findings"]
    assert (failed["status"], failed["metric"], failed["limit"]) == ("Failed", "busbw_intra_node", 5000)
    assert stopped["status"] == "Incomplete" and "busbw_inter_node: " in stopped["message"]
    assert "(sub-run inter_node: 20 s of connectivity.allreduce's 100 s timeout)" in stopped["message"]
