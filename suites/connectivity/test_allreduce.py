"""connectivity.allreduce: all-reduce bus bandwidth within the node, correctness, and the transport used.

One rank per GPU over NCCL (with NCCL_DEBUG=INFO, so the log proves which transport carried the
data), or local CPU ranks over gloo on type ``cpu``. The largest sizes are judged, never the
average over the sweep. Before any rank starts, /dev/shm must have room for this node's ranks
(``shm_bytes_per_rank`` in thresholds.yaml); when it has not, the check is Incomplete and names the size.
"""

import pytest

from dhc.errors import CheckIncomplete, NotApplicable
from dhc.probes import host, nccl_log, nccl_tests, nccl_verdict, tool


@pytest.mark.check("connectivity.allreduce")
def test_allreduce_within_node(dhc_check, dhc_limits, dhc_devices, dhc_run):
    for lost in getattr(dhc_devices, "lost", ()):  # never a quiet 7-rank all-reduce on an 8-GPU type
        dhc_check.fault(f"left out of the all-reduce: {lost}", lost.device, lost.action)
    node_type = dhc_limits.instance_type
    world = len(dhc_devices) if node_type.gpus else dhc_check.setting("cpu_ranks")  # this node's ranks
    _require_shm(dhc_check.settings, world)
    if node_type.gpus and dhc_run.settings.nccl_tests:
        return _with_nccl_tests(dhc_check, dhc_devices, dhc_run)
    allreduce, launch, plan = _engine()
    ranks = _ranks(dhc_check, allreduce, plan, node_type.gpus > 0, world)
    group = dhc_run.settings
    node = plan.Node(node_type.gpus, node_type.efa, node_type.nvlinks_per_gpu, dhc_run.out, group.nodes,
                     group.node_index, group.rendezvous)
    budgets = dhc_check.budgets("torch")
    dhc_check.covered(*dhc_devices)
    for run in plan.plan(node, {name: budget.seconds for name, budget in budgets.items()}):
        if run.problem:
            raise CheckIncomplete(run.problem)
        try:
            _record(dhc_check, allreduce.measure(ranks, run))
        except launch.RankFailure as exc:
            raise CheckIncomplete(budgets[run.name].reason(f"{run.metric}: {exc}")) from None
        if run.prove:
            _prove_transport(dhc_check, dhc_run.out, run.prove, node_type)


def _ranks(dhc_check, allreduce, plan, on_gpus, world):
    """One rank per GPU over NCCL, or local CPU ranks over gloo on a type without GPUs; at least two."""
    sizes = tuple(allreduce.sweep_sizes(8, dhc_check.setting("max_bytes")))
    if on_gpus:
        _require_cuda()
    ranks = plan.Ranks(world, "nccl", "cuda", sizes) if on_gpus else plan.Ranks(world, "gloo", "cpu", sizes)
    if ranks.world < 2:
        raise NotApplicable(f"{ranks.world} device: no all-reduce within the node to measure")
    return ranks


def _record(dhc_check, measured):
    dhc_check.record(measured.metric, round(measured.peak.busbw_gbs, 3), "GB/s")
    dhc_check.record(f"{measured.metric}_at_largest_size", round(measured.largest.busbw_gbs, 3), "GB/s")
    dhc_check.record(f"{measured.metric}_ranks", measured.ranks, "count")
    if measured.wrong:
        dhc_check.fault(f"all-reduce over {measured.ranks} ranks returned wrong values: " +
                        ", ".join(f"{r.wrong_elements} elements at {r.size_bytes} B" for r in measured.wrong[:4]),
                        None, nccl_verdict.WRONG_VALUES)


def _with_nccl_tests(dhc_check, dhc_devices, dhc_run):
    """The second engine: nccl-tests' all_reduce_perf on this node, one process driving every GPU.

    The tool exits non-zero when results were wrong, so its table is judged before its exit status:
    wrong elements are Failed; a non-zero exit with nothing wrong found is Incomplete, naming it.
    """
    budget = dhc_check.budgets("nccl-tests")["all_reduce_perf"]
    max_bytes = dhc_check.setting("max_bytes")
    try:
        finished = nccl_tests.run_all_reduce_perf(dhc_run.settings.nccl_tests, "8", str(max_bytes),
                                                  len(dhc_devices), budget.seconds, {"NCCL_DEBUG": "INFO"})
    except (tool.ToolTimeout, nccl_tests.NcclTestsOutputError) as exc:  # it ran past its share of the timeout
        raise CheckIncomplete(budget.reason(f"nccl-tests: {exc}")) from None
    except tool.ToolMissing as exc:
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
        dhc_check.fault(f"all_reduce_perf: {fault}", None, nccl_verdict.WRONG_VALUES)
    if result.judged is not None:
        dhc_check.record("busbw_intra_node", result.judged.best_busbw, "GB/s")
        dhc_check.record("busbw_intra_node_at_largest_size", run.largest().best_busbw, "GB/s")
    if result.unknowns and not dhc_check.findings():  # a fault or a low bandwidth still fails the check
        raise CheckIncomplete("nccl-tests: " + "; ".join(result.unknowns))
    _judge_transport(dhc_check, nccl_log.parse(finished.output), dhc_check.limits.instance_type, inter_node=False)


def _prove_transport(dhc_check, out, proof, node_type):
    logs = sorted(out.glob(proof.log_pattern))
    if not logs:
        raise CheckIncomplete(f"NCCL wrote no debug log ({proof.log_pattern}), so the transport it used cannot be "
                              "proven")
    _judge_transport(dhc_check, nccl_log.parse("\n".join(p.read_text(errors="replace") for p in logs)), node_type,
                     proof.inter_node, proof.nvlink)


def _judge_transport(dhc_check, summary, node_type, inter_node, nvlink=True):
    dhc_check.record("p2p_channels", summary.p2p_channels, "count")
    dhc_check.record("shm_channels", summary.shm_channels, "count")
    for fault in nccl_log.transport_faults(summary, expects_efa=node_type.efa > 0,
                                           expects_nvlink=nvlink and node_type.nvlinks_per_gpu > 0,
                                           inter_node=inter_node):
        dhc_check.fault(fault, None, nccl_verdict.WRONG_TRANSPORT)
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
        from dhc.comm import allreduce, allreduce_plan, launch
    except ImportError as exc:
        raise CheckIncomplete(f"torch is needed for the all-reduce ({exc}); install dhc[engines]") from None
    return allreduce, launch, allreduce_plan
