"""Connectivity groups: which nodes whose stress passed test their fabric together (pure, no API calls).

A group is bounded (``Grouping.size``, default 16 nodes) and never mixes instance types or profiles
(the caller's ``kind``). Within a kind, nodes are placed by network topology: EKS's
``topology.k8s.aws/network-node-layer-1`` / ``-2`` / ``-3`` labels (coarse to fine: layer-3 is the
leaf switch next to the node, layer-2 the spine above the leaves; on the instance types whose
topology has four layers, ``-4`` is the leaf and layer-3 the spine above it: below, "layer-2 domain"
is then the layer-3 domain), or the one label the user names
(``Grouping.label``, e.g. a placement-group label: a single level); a node without them is placed by
its kind alone.

A group fills up to the bound within one layer-2 domain (the nodes under one layer-2 node), spanning
its leaves: the domain's waiting nodes are dealt into ``ceil(n / size)`` groups one at a time, largest
leaf first, so every group holds nodes of several leaves wherever the domain has more than one (and
the others have enough nodes to go round), and its all-reduce crosses the spine. Groups kept inside a
leaf would never cross a spine, so a slow spine could not show; and 16 nodes spread over four leaves
would make four groups of 4. Crossing the spine, a slow spine shows as a pattern: every group under
that layer-2 node slow, and the groups of its neighbours not. A group never spans two layer-2 domains
(unless it pools strays, below): a slow result then points at one spine, and the pairwise
localisation after a slow all-reduce stays inside one domain.

A domain forms full groups of ``size`` as soon as that many wait (the oldest first; the rest wait for
peers), and all its waiting nodes once the oldest has waited the window, in groups whose sizes differ
by one at most (40 -> 14/13/13, not 16/16/8: no straggling remainder whose bandwidth reads
differently, no remainder of one left without a peer). A domain with fewer than ``min_size``
waiting nodes after the window has strays: each joins the group forming now with room that shares the
most topology with it; the rest pool with their kind's other strays, in topology order, into groups of
at least ``min_size``; strays short of that wait, and after ``alone_after_s`` (five windows unless set)
run a group of whatever size they form (one node: the intra-node stage only).

Who breaks a group, read from the cached objects: a node that is ``lost`` (deleted, NotReady, marked
Failed) takes part in none, and ``first_deaths`` names the member whose group pod died first on its
own (a non-zero exit without a verdict, the only one in the first second, the next clearly later).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dhc.controller.jobs import CONTAINER, NODES_ANNOTATION
from dhc.k8s import scheme

ALONE_AFTER_WINDOWS = 5  # strays below the minimum wait this many windows before they test alone
CLEARLY_LATER_S = 2.0  # finishedAt has 1 s resolution: a death this much later surely came after the first
LAYERS = tuple(f"topology.k8s.aws/network-node-layer-{i}" for i in (1, 2, 3, 4))  # coarse to fine (4: some types)


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


def domain(where: tuple[str, ...], label: str = "", depth: int = 3) -> tuple[str, ...]:
    """The domain of a place: the nodes under the spine above the leaves, layers 1-2 of a kind whose
    nodes carry three layers, 1-3 of one whose nodes carry four (``depth``: the most any node of the
    kind carries, so a node missing its layer-4 label still stays under its own layer-3 node).
    A group never spans two domains unless it pools strays. A named label: the place itself."""
    return where if label else where[:max(2, depth - 1)]


def _leaf(where: tuple[str, ...], label: str, depth: int) -> tuple[str, ...]:
    """The leaf of a place inside its domain (layer-3 of three, layer-4 of four; a named label: none)."""
    return where[len(domain(where, label, depth)):] if not label else ()


def _form_kind(members: list[Candidate], grouping: Grouping, window_s: float, now: float) -> list[list[Candidate]]:
    domains: dict[tuple[str, ...], list[Candidate]] = {}
    depth = max(len(path(c.labels, grouping.label)) for c in members)
    for c in sorted(members, key=lambda c: (c.since, c.name)):
        domains.setdefault(domain(path(c.labels, grouping.label), grouping.label, depth), []).append(c)
    formed: list[tuple[tuple[str, ...], list[Candidate]]] = []
    strays: list[tuple[tuple[str, ...], Candidate]] = []
    for where, waiting in domains.items():
        if now - waiting[0].since < window_s:  # before the window: only full groups, the newest wait for peers
            waiting = waiting[:len(waiting) // grouping.size * grouping.size]
            if waiting:
                formed += [(where, g) for g in across_leaves(waiting, grouping, depth)]
        elif len(waiting) >= grouping.min_size:
            formed += [(where, g) for g in across_leaves(waiting, grouping, depth)]
        else:
            strays += [(path(c.labels, grouping.label), c) for c in waiting]
    left = [(where, stray) for where, stray in strays if not _join(formed, where, stray, grouping.size)]
    pooled = [[c for _, c in g] for g in balanced(sorted(left, key=lambda item: item[0]), grouping.size)] if left else []
    alone_after = ALONE_AFTER_WINDOWS * window_s if grouping.alone_after_s is None else grouping.alone_after_s
    return [g for _, g in formed] + [g for g in pooled if len(g) >= grouping.min_size or
                                     all(now - c.since >= alone_after for c in g)]


def across_leaves(waiting: list[Candidate], grouping: Grouping, depth: int = 3) -> list[list[Candidate]]:
    """One domain's waiting nodes in ``ceil(n / size)`` groups whose sizes differ by one at most, dealt one
    node at a time, largest leaf first: each group gets its share of every leaf, so it crosses the spine
    wherever the leaves other than the largest hold at least one node per group."""
    leaves: dict[tuple[str, ...], list[Candidate]] = {}
    for c in waiting:
        leaves.setdefault(_leaf(path(c.labels, grouping.label), grouping.label, depth), []).append(c)
    order = [c for _, leaf in sorted(leaves.items(), key=lambda item: (-len(item[1]), item[0])) for c in leaf]
    count = -(-len(order) // grouping.size)
    return [order[i::count] for i in range(count)]


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


def lost(node: dict[str, Any] | None, keys: scheme.Keys) -> str:
    """Why a node can take no part in a connectivity group now; '' when it can. A node without a
    Ready condition (not yet reported) is not held against it; Ready False or Unknown is."""
    if node is None:
        return "the node was deleted"
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is not None and ready.get("status") != "True":
        return f"the node is NotReady (Ready {ready.get('status')}: {ready.get('reason') or 'no reason given'})"
    if ((node.get("metadata") or {}).get("labels") or {}).get(keys.check_status) == "Failed":
        return "the node is marked Failed"
    return ""


def members(job: dict[str, Any]) -> list[str]:
    """The nodes of a connectivity group's Job, from its annotation."""
    text = ((job.get("metadata") or {}).get("annotations") or {}).get(NODES_ANNOTATION) or ""
    return [name for name in text.split(",") if name]


def first_deaths(pods: list[dict[str, Any]], job: dict[str, Any]) -> dict[str, str]:
    """The member whose group pod died first on its own: it ended without a verdict (a non-zero exit, no
    termination message) before any other pod ended so. finishedAt has 1 s resolution, so a pod is named
    only when it is the one such pod in the first second and the next died ``CLEARLY_LATER_S`` or more
    later. {} when that cannot be told: no such pod, a time that cannot be read, two or more dying in
    the first second or close after it (the one that hung and broke them may be any: every try counts)."""
    uid, deaths = job["metadata"].get("uid"), []
    for pod in pods:
        owners = [r.get("uid") for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")]
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        ended = next(((c.get("state") or {}).get("terminated") for c in statuses if c.get("name") == CONTAINER), None)
        if (uid and uid not in owners) or not ended or ended.get("message") or ended.get("exitCode") == 0:
            continue
        why = f"its pod {pod['metadata']['name']} exited {ended.get('exitCode')} ({ended.get('reason') or 'no reason'})" \
            " without a verdict, first in its group"
        deaths.append((scheme.parse_time(ended.get("finishedAt")), (pod.get("spec") or {}).get("nodeName", ""), why))
    if not deaths or any(at is None for at, _, _ in deaths):
        return {}
    deaths.sort(key=lambda death: death[0])  # type: ignore[arg-type,return-value]
    (first, node, why), later = deaths[0], [at for at, _, _ in deaths[1:]]
    if later and (later[0] - first).total_seconds() < CLEARLY_LATER_S:  # type: ignore[operator]
        return {}  # another died in the same second, or the next: which came first cannot be told
    return {node: why} if node in members(job) and len(members(job)) > 1 else {}


def regroup_reason(job: dict[str, Any], gone: dict[str, str]) -> str:
    lost_nodes = "; ".join(f"{m}: {why}" for m, why in sorted(gone.items()))
    return f"connectivity group {job['metadata']['name']} lost a member ({lost_nodes}); " \
        "re-forming without it, this try not counted"
