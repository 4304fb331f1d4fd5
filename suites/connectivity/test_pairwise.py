"""connectivity.pairwise: in a group of nodes that misses its limit, name the node at fault."""

import pytest

from dhc.errors import NotApplicable


@pytest.mark.check("connectivity.pairwise")
def test_pairwise_localisation(dhc_check, dhc_run):
    nodes = dhc_run.settings.nodes
    if nodes < 2:
        raise NotApplicable("one node in this run: pairwise localisation needs a group of nodes "
                            "(set DHC_NODES and a rendezvous; see README, Localising a slow node)")
    raise NotApplicable(f"{nodes} nodes: cross-node pairwise rounds are driven by the controller, not by one node")
