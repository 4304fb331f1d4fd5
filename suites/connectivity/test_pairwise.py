"""connectivity.pairwise: in a multi-node run, find the node at fault by pairwise rounds.

Every node of the group runs this check at once; all of them see every pair's bandwidth, reach
the same conclusion, and each fails only itself: a node slow with known-good partners.
"""

import itertools

import pytest

from dhc.errors import CheckIncomplete, NotApplicable
from dhc.model import Action


@pytest.mark.check("connectivity.pairwise")
def test_pairwise_localisation(dhc_check, dhc_limits, dhc_devices, dhc_run):
    settings = dhc_run.settings
    if settings.nodes < 2:
        raise NotApplicable("one node in this run: pairwise localisation needs a group of nodes "
                            "(DHC_NODES, DHC_NODE_INDEX and DHC_RENDEZVOUS; see README)")
    if not settings.rendezvous:
        raise CheckIncomplete(f"DHC_NODES={settings.nodes} needs DHC_RENDEZVOUS=host:port of node 0")
    try:
        from dhc.comm import allreduce, launch, pairwise
    except ImportError as exc:
        raise CheckIncomplete(f"torch is needed for pairwise all-reduces ({exc}); install dhc[engines]") from None
    gpus = dhc_limits.instance_type.gpus
    local, backend, device = (len(dhc_devices), "nccl", "cuda") if gpus else (1, "gloo", "cpu")
    host, port = launch.parse_rendezvous(settings.rendezvous)
    ports = itertools.count(port + 1)  # the all-reduce check meets on the port itself
    size = dhc_check.setting("message_bytes")
    budgets = iter(dhc_check.budgets("torch").values())  # the first rounds, then the retest
    planted = dhc_check.planted  # this node idles in every pair: a slow rank of its own
    inject = allreduce.AllreduceInjection(**{planted.seam: settings.node_index * local}, **planted.strength) if planted else None

    def measure(rounds):
        budget = next(budgets, None)
        assert budget is not None, "pairwise.localise measured more rounds than the catalogue splits the timeout into"
        placement = launch.Placement(settings.node_index, settings.nodes, host, next(ports))
        try:
            [times, *_] = launch.run_local(local, backend, allreduce.pair_rounds,
                                           (device, rounds, size, inject, local), budget.seconds, None, placement)
        except launch.RankFailure as exc:
            raise CheckIncomplete(budget.reason(f"pairwise round: {exc}")) from None
        return allreduce.pair_busbw(times, size, 2 * local)

    limit = dhc_check.config.limits.get("busbw_pair")
    floor = limit.value if limit is not None and limit.calibrated else 0.0
    result = pairwise.localise(settings.nodes, measure, floor, quick=settings.nodes > 8)
    me = settings.node_index
    dhc_check.covered(*dhc_devices)
    for (a, b), busbw in sorted(result.pair_busbw.items()):
        if me in (a, b):
            dhc_check.record(f"busbw_with_node_{b if a == me else a}", round(busbw, 3), "GB/s")
    dhc_check.record("suspect_nodes", len(result.suspects), "count")
    if me in result.bad:
        mine = {p: round(bw, 3) for p, bw in result.retest_busbw.items() if me in p}
        dhc_check.fault(f"node {me} of {settings.nodes} is slow with known-good partners (pair bus bandwidth "
                        f"in GB/s: {mine}); the other nodes are cleared", None, Action.REPLACE)
    elif me in result.undetermined:
        raise CheckIncomplete("every pair of the group is slow: the fault is not one node's (the fabric?)")
