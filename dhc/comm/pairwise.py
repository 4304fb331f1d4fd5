"""Find the bad node in a slow group: pairwise rounds, then suspects re-tested against good nodes.

Rounds follow the circle method: N-1 rounds of N/2 concurrent pairs cover every pair once (a bye
pads an odd N); the quick mode runs only the first round, pairing each node once. A pair is slow
when its bus bandwidth misses the limit or falls below half the upper quartile of all pairs. A node slow with at
least half its partners is a suspect; one slow with fewer is known good. Each suspect is then
measured against known-good partners, and only a node slow with good partners is marked bad.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

Pair = tuple[int, int]


def circle_rounds(nodes: int, quick: bool = False) -> list[list[Pair]]:
    """Round-robin pairings; with an odd count one node sits out each round."""
    ring = list(range(nodes)) + ([-1] if nodes % 2 else [])
    count = len(ring)
    rounds = []
    for _ in range(count - 1):
        pairs = [(ring[i], ring[count - 1 - i]) for i in range(count // 2)]
        rounds.append([tuple(sorted(p)) for p in pairs if -1 not in p])
        ring = [ring[0], ring[-1], *ring[1:-1]]  # keep the first, rotate the rest
        if quick:
            break
    return rounds


@dataclass
class Localisation:
    pair_busbw: dict[Pair, float] = field(default_factory=dict)
    retest_busbw: dict[Pair, float] = field(default_factory=dict)
    slow_pairs: list[Pair] = field(default_factory=list)
    suspects: list[int] = field(default_factory=list)
    bad: list[int] = field(default_factory=list)
    cleared: list[int] = field(default_factory=list)  # suspects that were fine with good partners
    undetermined: list[int] = field(default_factory=list)  # suspects with no good partner to test against


# rounds of concurrent pairs -> bus bandwidth (GB/s) of every pair measured
MeasureRounds = Callable[[list[list[Pair]]], dict[Pair, float]]


def localise(nodes: int, measure: MeasureRounds, limit_gbs: float, quick: bool = False,
             partners: int = 2) -> Localisation:
    result = Localisation()
    result.pair_busbw.update(measure(circle_rounds(nodes, quick)))
    result.slow_pairs = _slow(result.pair_busbw, limit_gbs)
    result.suspects, good = _suspects_and_good(nodes, result.pair_busbw, result.slow_pairs)
    if not result.suspects:
        return result
    if not good:
        result.undetermined = list(result.suspects)
        return result
    result.retest_busbw.update(measure(_retest_rounds(result.suspects, good, partners)))
    reference = statistics.median(result.pair_busbw[p] for p in result.pair_busbw if p not in result.slow_pairs)
    for suspect in result.suspects:
        mine = [bw for pair, bw in result.retest_busbw.items() if suspect in pair]
        slow = all(bw < limit_gbs or bw < reference / 2 for bw in mine)
        (result.bad if slow else result.cleared).append(suspect)
    return result


def _suspects_and_good(nodes: int, busbw: dict[Pair, float], slow: list[Pair]) -> tuple[list[int], list[int]]:
    """A suspect was slow with at least half its partners; a good node with fewer than half."""
    suspects, good = [], []
    for node in range(nodes):
        mine = [pair for pair in busbw if node in pair]
        slow_count = sum(pair in slow for pair in mine)
        if slow_count and slow_count * 2 >= len(mine):
            suspects.append(node)
        elif mine:
            good.append(node)
    return suspects, good


def _slow(busbw: dict[Pair, float], limit_gbs: float) -> list[Pair]:
    """Below the limit, or below half the upper quartile of all pairs. (Not the median: with few
    nodes, half the pairs of a full round include the bad node and would drag the median down.)"""
    values = sorted(busbw.values())
    reference = statistics.quantiles(values, n=4, method="inclusive")[2] if len(values) > 1 else values[0]
    return sorted(pair for pair, bw in busbw.items() if bw < limit_gbs or bw < reference / 2)


def _retest_rounds(suspects: list[int], good: list[int], partners: int) -> list[list[Pair]]:
    """Each suspect against up to ``partners`` good nodes; a node appears once per round."""
    wanted = [(s, good[(i + k) % len(good)]) for i, s in enumerate(suspects) for k in range(min(partners, len(good)))]
    rounds: list[list[Pair]] = []
    for suspect, partner in wanted:
        for pairs in rounds:
            if all(suspect not in p and partner not in p for p in pairs):
                pairs.append(tuple(sorted((suspect, partner))))
                break
        else:
            rounds.append([tuple(sorted((suspect, partner)))])
    return rounds
