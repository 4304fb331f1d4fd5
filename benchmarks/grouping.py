"""Connectivity grouping at scale: 5,000 nodes whose stress passed, with EKS-like topology labels.

64 nodes under each layer-3 switch, 8 layer-3 switches under each layer-2 node, 4 layer-2 under each
layer-1; 1% of the nodes carry no topology label and 10% are another instance type. The pure grouping
(``dhc.controller.topology.form``) is timed over the whole set, once every node has waited the window.
Goals: every group <= 16 nodes; no group mixes layer-2 domains unless it holds strays (a domain left
with fewer than the minimum); every group crosses leaves (layer-3 switches) where its domain has more
than one, so a slow spine shows as every group under its layer-2 node slow; no group mixes instance
types; every node placed; < 1 s to form.

    python benchmarks/grouping.py [--nodes 5000]
    python benchmarks/controller.py --scenario grouping [--nodes 5000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter

from dhc.controller.topology import LAYERS, Candidate, Grouping, form

PER_L3, L3_PER_L2, L2_PER_L1 = 64, 8, 4
WINDOW_S = 60.0


def fleet(nodes: int, seed: int = 14) -> list[Candidate]:
    rng = random.Random(seed)
    out = []
    for i in range(nodes):
        l3 = i // PER_L3
        l2, l1 = l3 // L3_PER_L2, l3 // (L3_PER_L2 * L2_PER_L1)
        labels = {} if rng.random() < 0.01 else dict(zip(LAYERS, (f"nn-{l1}", f"nn-{l1}-{l2}", f"nn-{l2}-{l3}"),
                                                          strict=True))
        kind = ("p4d.24xlarge", "quick") if rng.random() < 0.10 else ("p5.48xlarge", "quick")
        out.append(Candidate(f"node-{i:05d}", kind, labels, rng.uniform(0.0, WINDOW_S)))
    return out


def grouping(args: argparse.Namespace) -> None:
    nodes = args.nodes or 5000
    candidates, settings = fleet(nodes), Grouping()
    start = time.perf_counter()
    groups = form(candidates, settings, WINDOW_S, now=2 * WINDOW_S)
    elapsed = time.perf_counter() - start
    by_name = {c.name: c for c in candidates}
    sizes = [len(g) for g in groups]
    domains = Counter((c.kind, _at(c, 2)) for c in candidates)
    leaves = {(c.kind, _at(c, 2)): set() for c in candidates}
    for c in candidates:
        leaves[c.kind, _at(c, 2)].add(_at(c, 3))
    mixed = [g for g in groups if len({_at(by_name[n], 2) for n in g}) > 1]
    avoidable = [g for g in mixed if all(domains[by_name[n].kind, _at(by_name[n], 2)] >= settings.min_size for n in g)]
    spanning = [g for g in groups if g not in mixed and _at(by_name[g[0]], 2)[0] and
                len(leaves[by_name[g[0]].kind, _at(by_name[g[0]], 2)]) > 1]
    within_leaf = [g for g in spanning if len({_at(by_name[n], 3) for n in g}) == 1]
    kinds_mixed = sum(1 for g in groups if len({by_name[n].kind for n in g}) > 1)
    placed = sum(sizes)
    print(f"{nodes} nodes, {len(domains)} (type, layer-2) domains: {len(groups)} groups, sizes min "
          f"{min(sizes)} / median {statistics.median(sizes):g} / max {max(sizes)}; {placed} nodes placed")
    print(_line("largest group", f"{max(sizes)}", f"<= {settings.size}", max(sizes) <= settings.size))
    print(_line("groups mixing layer-2 domains where avoidable", f"{len(avoidable)} (strays pooled: {len(mixed)})",
                "0", not avoidable))
    print(_line("groups inside one leaf of a multi-leaf domain", f"{len(within_leaf)} of {len(spanning)}", "0",
                not within_leaf and bool(spanning)))
    print(_line("groups mixing instance types", f"{kinds_mixed}", "0", kinds_mixed == 0))
    print(_line("every node placed (all waited the window)", f"{placed}", f"{nodes}", placed == nodes))
    print(_line("time to form", f"{elapsed * 1000:.0f} ms", "< 1 s", elapsed < 1.0))


def _at(candidate: Candidate, layers: int) -> tuple[str, ...]:
    """The candidate's place down to ``layers`` (2: its layer-2 domain, 3: its leaf); ('',) unlabelled."""
    return tuple(candidate.labels.get(key, "") for key in LAYERS[:layers])


def _line(what: str, figure: str, goal: str, ok: bool) -> str:
    return f"{what}: {figure} (goal {goal}) {'OK' if ok else 'MISSED'}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, help="default: 5000")
    grouping(parser.parse_args())
