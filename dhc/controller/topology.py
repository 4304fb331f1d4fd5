"""Connectivity groups: which nodes whose stress passed test their fabric together (pure, no API calls).

A group is bounded (``Grouping.size``, default 16 nodes) and never mixes instance types or profiles
(the caller's ``kind``). Within a kind, nodes are placed by network topology, coarse to fine: EKS's
``topology.k8s.aws/network-node-layer-1`` / ``-2`` / ``-3`` labels (layer-3 is the switch closest to
the node: nodes sharing it share a spine), or the one label the user names (``Grouping.label``,
e.g. a placement-group label); a node without them is placed by its kind alone. So a slow spine
shows up as a pattern across groups (every group under one layer-2 node slow), and the pairwise
localisation after a slow all-reduce stays inside a group.

A switch's nodes form groups once ``size`` of them wait, or once the oldest has waited the window:
then all its waiting nodes split into ``ceil(n / size)`` balanced groups (40 -> 14/13/13, not
16/16/8: no group is a straggling remainder whose bandwidth reads differently, and no remainder of
one is left without a peer). A switch with fewer than ``min_size`` waiting nodes after the window
has strays: each joins the group forming now with room that shares the most topology with it; the
rest pool with their kind's other strays, in topology order, into groups of at least ``min_size``;
strays short of that wait, and after ``alone_after_s`` (five windows unless set) run a group of
whatever size they form (one node: the intra-node stage only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALONE_AFTER_WINDOWS = 5  # strays below the minimum wait this many windows before they test alone
LAYERS = tuple(f"topology.k8s.aws/network-node-layer-{i}" for i in (1, 2, 3))  # coarse to fine


@dataclass(frozen=True)
class Grouping:
    size: int = 16  # the most nodes in one connectivity group
    min_size: int = 2  # the fewest nodes of an inter-node group (fewer wait for peers, up to alone_after_s)
    label: str = ""  # a topology label the user names; '' reads EKS's network-node-layer labels
    alone_after_s: float | None = None  # a node with no peer this long tests alone (None: five windows)

    def __post_init__(self) -> None:
        if self.size < 1 or not 1 <= self.min_size <= self.size:
            raise ValueError(f"connectivity group size {self.size} and minimum {self.min_size}: "
                             "expected 1 <= minimum <= size")
        if self.alone_after_s is not None and self.alone_after_s < 0:
            raise ValueError(f"alone_after_s {self.alone_after_s}: expected 0 or more seconds")


@dataclass(frozen=True)
class Candidate:
    name: str
    kind: Any  # what a group never mixes: (instance type, profile, ...)
    labels: dict[str, str]
    since: float  # when its stress passed (monotonic seconds)


def path(labels: dict[str, str], label: str = "") -> tuple[str, ...]:
    """Where the node sits, coarse to fine; () when it carries no topology label."""
    if label:
        return (labels[label],) if labels.get(label) else ()
    layers = [labels.get(key, "") for key in LAYERS]
    while layers and not layers[-1]:
        layers.pop()
    return tuple(layers)


def places(paths: list[tuple[str, ...]]) -> str:
    """Where a group's nodes sit, for people: each distinct place once, layers joined by '/'."""
    return ",".join(sorted({"/".join(p) or "unlabelled" for p in paths}))


def form(candidates: list[Candidate], grouping: Grouping, window_s: float, now: float) -> list[list[str]]:
    """The groups to start now, each a sorted list of node names; every other candidate waits."""
    kinds: dict[Any, list[Candidate]] = {}
    for c in candidates:
        kinds.setdefault(c.kind, []).append(c)
    groups: list[list[str]] = []
    for members in kinds.values():
        groups += [sorted(c.name for c in g) for g in _form_kind(members, grouping, window_s, now)]
    return groups


def _form_kind(members: list[Candidate], grouping: Grouping, window_s: float, now: float) -> list[list[Candidate]]:
    switches: dict[tuple[str, ...], list[Candidate]] = {}
    for c in sorted(members, key=lambda c: (c.since, c.name)):
        switches.setdefault(path(c.labels, grouping.label), []).append(c)
    formed: list[tuple[tuple[str, ...], list[Candidate]]] = []
    strays: list[tuple[tuple[str, ...], Candidate]] = []
    for where, waiting in switches.items():
        ripe = len(waiting) >= grouping.size or now - waiting[0].since >= window_s
        if ripe and len(waiting) >= grouping.min_size:
            formed += [(where, g) for g in balanced(waiting, grouping.size)]
        elif ripe:
            strays += [(where, c) for c in waiting]
    left = [(where, stray) for where, stray in strays if not _join(formed, where, stray, grouping.size)]
    pooled = [[c for _, c in g] for g in balanced(sorted(left, key=lambda item: item[0]), grouping.size)] if left else []
    alone_after = ALONE_AFTER_WINDOWS * window_s if grouping.alone_after_s is None else grouping.alone_after_s
    return [g for _, g in formed] + [g for g in pooled if len(g) >= grouping.min_size or
                                     all(now - c.since >= alone_after for c in g)]


def balanced(members: list[Any], size: int) -> list[list[Any]]:
    """``ceil(n / size)`` groups whose sizes differ by one at most, in the members' order."""
    count = -(-len(members) // size)
    base, extra = divmod(len(members), count)
    groups, start = [], 0
    for i in range(count):
        end = start + base + (1 if i < extra else 0)
        groups.append(members[start:end])
        start = end
    return groups


def _shared(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many topology layers two places share, from the coarsest."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _join(formed: list[tuple[tuple[str, ...], list[Candidate]]], where: tuple[str, ...], stray: Candidate,
          size: int) -> bool:
    """Add the stray to the forming group with room nearest it in the topology; False when none has room."""
    room = [(where_g, g) for where_g, g in formed if len(g) < size]
    if not room:
        return False
    nearest = max(room, key=lambda item: (_shared(where, item[0]), -len(item[1])))
    nearest[1].append(stray)
    return True
