"""connectivity.allreduce: all-reduce bus bandwidth within the node, correctness, and the transport used.

One rank per GPU over NCCL (with NCCL_DEBUG=INFO, so the log proves which transport carried the
data), or local CPU ranks over gloo on type ``cpu``. The largest sizes are judged, never the
average over the sweep. Before any rank starts, /dev/shm must have room for this node's ranks
(``shm_bytes_per_rank`` in thresholds.yaml); when it has not, the check is Incomplete and names the size.
"""

import pytest

from dhc.errors import CheckIncomplete, NotApplicable
from dhc.model import Action
from dhc.probes import host, nccl_log, nccl_tests, nccl_verdict, tool


@pytest.mark.check("connectivity.allreduce")
def test_allreduce_within_node(dhc_check, dhc_limits, dhc_devices, dhc_run):
    for lost in getattr(dhc_devices, "lost", ()):  # never a quiet 7-rank all-reduce on an 8-GPU type
        dhc_check.fault(f"left out of the all-reduce: {lost}", lost.device, lost.action)
    node_type = dhc_limits.instance_type
    settings = dhc_check.settings
    _require_shm(settings, len(dhc_devices) if node_type.gpus else int(settings.get("cpu_ranks", 2)))
    if node_type.gpus and dhc_run.settings.nccl_tests:
        return _with_nccl_tests(dhc_check, dhc_limits, dhc_devices, dhc_run)
    allreduce, launch = _engine()
    if node_type.gpus:
        world, backend, device = len(dhc_devices), "nccl", "cuda"
        environment = {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": str(dhc_run.out / "nccl-main-%h-%p.log")}
        _require_cuda()
    else:
        world, backend, device, environment = int(settings.get("cpu_ranks", 2)), "gloo", "cpu", {}
    if world < 2:
        raise NotApplicable(f"{world} device: no all-reduce within the node to measure")
    sizes = allreduce.sweep_sizes(8, int(settings["max_bytes"]))
    timeout_s = dhc_limits.timing("connectivity.allreduce").timeout_s * 0.2  # up to four runs follow each other
    dhc_check.covered(*dhc_devices)
    run = (world, backend, device, sizes, timeout_s, environment)
    _measure(dhc_check, allreduce, launch, run, "busbw_intra_node", launch.Placement())
    nodes = dhc_run.settings.nodes
    if nodes > 1:
        if not dhc_run.settings.rendezvous:
            raise CheckIncomplete(f"DHC_NODES={nodes} needs DHC_RENDEZVOUS=host:port of node 0")
        address, port = launch.parse_rendezvous(dhc_run.settings.rendezvous)
        placement = launch.Placement(dhc_run.settings.node_index, nodes, address, port)
        _measure(dhc_check, allreduce, launch, run, "busbw_inter_node", placement)
    if node_type.gpus:
        _prove_transport(dhc_check, dhc_run, "nccl-main-*.log", node_type, inter_node=nodes > 1)
        _isolation_runs(dhc_check, allreduce, launch, run, dhc_run, node_type)


# Isolation runs judge one node without a peer: its NVLink alone, and its network alone (the
# GPUs talk to each other through the EFA NICs, so the log proves the EFA path works).
ISOLATIONS = {
    "nvlink_only": {"NCCL_P2P_LEVEL": "NVL", "NCCL_NET": "Socket"},
    "network_loopback": {"NCCL_P2P_DISABLE": "1", "NCCL_SHM_DISABLE": "1"},
}


def _isolation_runs(dhc_check, allreduce, launch, run, dhc_run, node_type):
    world, backend, device, sizes, timeout_s, _ = run
    for name, variables in ISOLATIONS.items():
        if (name == "nvlink_only" and not node_type.nvlinks_per_gpu) or (name == "network_loopback" and not node_type.efa):
            continue
        environment = {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": str(dhc_run.out / f"nccl-{name}-%h-%p.log"), **variables}
        _measure(dhc_check, allreduce, launch, (world, backend, device, sizes, timeout_s, environment),
                 f"busbw_{name}", launch.Placement())
        if name == "network_loopback":
            _prove_transport(dhc_check, dhc_run, f"nccl-{name}-*.log", node_type, inter_node=True, nvlink=False)


def _measure(dhc_check, allreduce, launch, run, metric, placement):
    world, backend, device, sizes, timeout_s, environment = run
    ranks = world * placement.nodes
    try:
        per_rank = launch.run_local(world, backend, allreduce.rank_sweep, (device, sizes), timeout_s, environment,
                                    placement)
    except launch.RankFailure as exc:
        raise CheckIncomplete(f"{metric}: {exc}") from None
    results = allreduce.combine(per_rank, ranks)
    peak = allreduce.peak_of_largest(results)
    dhc_check.record(metric, round(peak.busbw_gbs, 3), "GB/s")
    dhc_check.record(f"{metric}_at_largest_size", round(results[-1].busbw_gbs, 3), "GB/s")
    dhc_check.record(f"{metric}_ranks", ranks, "count")
    wrong = [r for r in results if r.wrong_elements]
    if wrong:
        dhc_check.fault(f"all-reduce over {ranks} ranks returned wrong values: " +
                        ", ".join(f"{r.wrong_elements} elements at {r.size_bytes} B" for r in wrong[:4]),
                        None, Action.REPLACE)


def _with_nccl_tests(dhc_check, dhc_limits, dhc_devices, dhc_run):
    """The second engine: nccl-tests' all_reduce_perf on this node, one process driving every GPU.

    The tool exits non-zero when results were wrong, so its table is judged before its exit status:
    wrong elements are Failed; a non-zero exit with nothing wrong found is Incomplete, naming it.
    """
    timeout_s = dhc_limits.timing("connectivity.allreduce").timeout_s * 0.9
    max_bytes = int(dhc_check.settings["max_bytes"])
    try:
        finished = nccl_tests.run_all_reduce_perf(dhc_run.settings.nccl_tests, "8", str(max_bytes),
                                                  len(dhc_devices), timeout_s, {"NCCL_DEBUG": "INFO"})
    except (tool.ToolMissing, tool.ToolTimeout, nccl_tests.NcclTestsOutputError) as exc:
        raise CheckIncomplete(f"nccl-tests: {exc}") from None
    (dhc_run.out / "all_reduce_perf.log").write_text(finished.output)
    try:
        run = nccl_tests.parse(finished.output)
    except nccl_tests.NcclTestsOutputError as exc:
        raise CheckIncomplete(f"nccl-tests: {finished.failure() or exc}") from None
    dhc_check.covered(*dhc_devices)
    result = nccl_verdict.assess(run, max_bytes)
    if (failure := finished.failure()) is not None:  # after the table: a fault found there still fails the check
        result.unknowns.insert(0, failure)
    for fault in result.faults:
        dhc_check.fault(f"all_reduce_perf: {fault}", None, Action.REPLACE)
    if result.judged is not None:
        dhc_check.record("busbw_intra_node", result.judged.best_busbw, "GB/s")
        dhc_check.record("busbw_intra_node_at_largest_size", run.largest().best_busbw, "GB/s")
    if result.unknowns and not dhc_check.findings():  # a fault or a low bandwidth still fails the check
        raise CheckIncomplete("nccl-tests: " + "; ".join(result.unknowns))
    _judge_transport(dhc_check, nccl_log.parse(finished.output), dhc_limits.instance_type, inter_node=False)


def _prove_transport(dhc_check, dhc_run, pattern, node_type, inter_node, nvlink=True):
    logs = sorted(dhc_run.out.glob(pattern))
    if not logs:
        raise CheckIncomplete(f"NCCL wrote no debug log ({pattern}), so the transport it used cannot be proven")
    _judge_transport(dhc_check, nccl_log.parse("\n".join(p.read_text(errors="replace") for p in logs)), node_type,
                     inter_node, nvlink)


def _judge_transport(dhc_check, summary, node_type, inter_node, nvlink=True):
    dhc_check.record("p2p_channels", summary.p2p_channels, "count")
    dhc_check.record("shm_channels", summary.shm_channels, "count")
    for fault in nccl_log.transport_faults(summary, expects_efa=node_type.efa > 0,
                                           expects_nvlink=nvlink and node_type.nvlinks_per_gpu > 0,
                                           inter_node=inter_node):
        dhc_check.fault(fault, None, Action.REBOOT)
    unknowns = nccl_log.transport_unknowns(summary, node_type.efa > 0, inter_node)
    if unknowns and not dhc_check.findings():  # NCCL_DEBUG=INFO was set: a log that proves nothing is no pass
        raise CheckIncomplete("; ".join(unknowns))


def _require_shm(settings, ranks):
    """Too small a /dev/shm makes NCCL fail at init ("failed to extend /dev/shm/nccl-..."): say so first."""
    if "shm_bytes_per_rank" not in settings:  # a thresholds file from before the setting: nothing to hold to
        return
    try:
        space = host.shm_space()
    except OSError as exc:
        space = exc
    shortfall = host.shm_shortfall(space, ranks, int(settings["shm_bytes_per_rank"]))
    if shortfall:
        raise CheckIncomplete(shortfall)


def _require_cuda():
    import torch
    if not torch.cuda.is_available():
        raise CheckIncomplete("NVML sees GPUs but torch has no CUDA (is this a CPU-only torch build?)")


def _engine():
    try:
        from dhc.comm import allreduce, launch
    except ImportError as exc:
        raise CheckIncomplete(f"torch is needed for the all-reduce ({exc}); install dhc[engines]") from None
    return allreduce, launch
