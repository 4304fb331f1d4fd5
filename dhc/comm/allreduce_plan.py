"""The all-reduce check's sub-runs as a typed plan: which runs follow each other, over which ranks,
with which NCCL environment, meeting where, for how many seconds, and which NCCL log each proves.

No torch here: planning is pure, so which runs a node gets is testable anywhere. ``measure`` (in
``allreduce``) runs one planned sub-run. The order is the check's: within the node, across the
nodes of a multi-node run (then the main runs' transport is proven), then the isolation runs that
judge this node without a peer: its NVLink alone, and its network alone (the GPUs talk to each
other through the EFA NICs, so the log proves the EFA path works).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dhc.comm.launch import Placement, parse_rendezvous

ISOLATIONS = {
    "nvlink_only": {"NCCL_P2P_LEVEL": "NVL", "NCCL_NET": "Socket"},
    "network_loopback": {"NCCL_P2P_DISABLE": "1", "NCCL_SHM_DISABLE": "1"},
}


@dataclass(frozen=True)
class Ranks:
    """How this node's ranks run: ``world`` processes over ``backend`` on ``device``."""

    world: int
    backend: str  # nccl | gloo
    device: str  # cuda | cpu
    sizes: tuple[int, ...]


@dataclass(frozen=True)
class Node:
    """What the plan needs to know of this node and its group."""

    gpus: int
    efa: int
    nvlinks_per_gpu: int
    out: Path  # where NCCL writes its debug logs
    nodes: int = 1
    node_index: int = 0
    rendezvous: str | None = None  # host:port of node 0, for a multi-node run


@dataclass(frozen=True)
class TransportProof:
    """The NCCL debug logs to read after a sub-run, and what transport they must show."""

    log_pattern: str
    inter_node: bool
    nvlink: bool = True


@dataclass(frozen=True)
class AllreduceRun:
    name: str  # the sub-run's name in the catalogue, whose share of the timeout it gets
    metric: str
    placement: Placement
    timeout_s: float
    environment: dict[str, str] = field(default_factory=dict)
    prove: TransportProof | None = None  # read after this run
    problem: str | None = None  # why it cannot run (the check is Incomplete when it comes to it)


def plan(node: Node, budgets: dict[str, float]) -> list[AllreduceRun]:
    """The sub-runs in order; ``budgets`` gives each sub-run's seconds by name."""
    multi = node.nodes > 1
    main = TransportProof("nccl-main-*.log", inter_node=multi) if node.gpus else None
    runs = [AllreduceRun("intra_node", "busbw_intra_node", Placement(), budgets["intra_node"],
                         _nccl_env(node, "main"), None if multi else main)]
    if multi:
        runs.append(_inter_node(node, budgets["inter_node"], main))
    if node.gpus:
        runs += [_isolation(node, name, budgets[name]) for name in ISOLATIONS if _applies(node, name)]
    return runs


def _inter_node(node: Node, timeout_s: float, main: TransportProof | None) -> AllreduceRun:
    def run(placement: Placement | None = None, problem: str | None = None) -> AllreduceRun:
        return AllreduceRun("inter_node", "busbw_inter_node", placement or Placement(), timeout_s,
                            _nccl_env(node, "main"), main, problem)

    if not node.rendezvous:
        return run(problem=f"DHC_NODES={node.nodes} needs DHC_RENDEZVOUS=host:port of node 0")
    try:
        address, port = parse_rendezvous(node.rendezvous)
    except ValueError as exc:
        return run(problem=f"DHC_RENDEZVOUS: {exc}")
    return run(Placement(node.node_index, node.nodes, address, port))


def _applies(node: Node, name: str) -> bool:
    return bool(node.nvlinks_per_gpu) if name == "nvlink_only" else bool(node.efa)


def _isolation(node: Node, name: str, timeout_s: float) -> AllreduceRun:
    prove = TransportProof(f"nccl-{name}-*.log", inter_node=True, nvlink=False) if name == "network_loopback" else None
    return AllreduceRun(name, f"busbw_{name}", Placement(), timeout_s, _nccl_env(node, name) | ISOLATIONS[name],
                        prove)


def _nccl_env(node: Node, log: str) -> dict[str, str]:
    """NCCL_DEBUG=INFO into a file per run, so the log proves which transport carried the data."""
    if not node.gpus:
        return {}
    return {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_FILE": str(node.out / f"nccl-{log}-%h-%p.log")}
