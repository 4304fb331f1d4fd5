"""All-reduce bus bandwidth over a size sweep, checked for correctness like nccl-tests ``-c``.

busbw = algbw x 2(n-1)/n (nccl-tests' formula for all-reduce). Each size is timed on every rank;
the slowest rank's time counts, as a collective is as fast as its slowest member.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dhc.comm import launch, peers
from dhc.comm.allreduce_plan import AllreduceRun, Ranks


@dataclass(frozen=True)
class AllreduceInjection:
    """Faults planted for tests and the self-test: a rank that dies, hangs, or is slow."""

    dead_rank: int | None = None
    hung_rank: int | None = None
    slow_rank: int | None = None
    slow_s: float = 0.02  # added per iteration on the slow rank


@dataclass(frozen=True)
class SizeResult:
    size_bytes: int
    time_s: float  # per iteration, slowest rank
    algbw_gbs: float
    busbw_gbs: float
    wrong_elements: int


@dataclass(frozen=True)
class Measured:
    """One sub-run's outcome: the judged peak of the largest sizes, the largest size, sizes with wrong values."""

    metric: str
    ranks: int
    peak: SizeResult
    largest: SizeResult
    wrong: tuple[SizeResult, ...]


def measure(ranks: Ranks, run: AllreduceRun) -> Measured:
    """Run one planned sub-run on this node's ranks; ``launch.RankFailure`` names a rank that died or hung."""
    per_rank = launch.run_local(ranks.world, ranks.backend, rank_sweep, (ranks.device, list(ranks.sizes)),
                                run.timeout_s, run.environment, run.placement)
    total = ranks.world * run.placement.nodes
    results = combine(per_rank, total)
    return Measured(run.metric, total, peak_of_largest(results), results[-1],
                    tuple(r for r in results if r.wrong_elements))


def sweep_sizes(min_bytes: int, max_bytes: int, factor: int = 2) -> list[int]:
    sizes, size = [], max(4, min_bytes)
    while size <= max_bytes:
        sizes.append(size)
        size *= factor
    return sizes


def bus_bandwidth(size_bytes: int, time_s: float, ranks: int) -> tuple[float, float]:
    algbw = size_bytes / time_s / 1e9 if time_s > 0 else 0.0
    return algbw, algbw * 2 * (ranks - 1) / ranks


def rank_sweep(rank: int, world: int, device: str, sizes: list[int], inject: AllreduceInjection | None = None,
               warmup: int = 2, min_iters: int = 3, budget_s: float = 0.2) -> list[tuple[int, float, int]]:
    """Run inside one rank of an initialised group: (size, seconds per iteration, wrong elements)."""
    inject = inject or AllreduceInjection()
    device = _rank_device(device, rank)
    if inject.dead_rank == rank:
        import os
        os._exit(17)  # the process vanishes mid-run, as a crashed rank does
    out = []
    for index, size in enumerate(sizes):
        peers.step(2 * index + 1)
        buf = torch.full((max(1, size // 4),), float(rank + 1), dtype=torch.float32, device=device)
        for _ in range(warmup):
            _all_reduce(buf)
        iters = _iterations(buf, min_iters, budget_s, device)
        if inject.hung_rank == rank:
            time.sleep(10**6)  # never reaches the timed loop its peers wait in, as a hung rank does
        peers.step(2 * index + 2)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            _all_reduce(buf)
            if inject.slow_rank == rank:
                time.sleep(inject.slow_s)
        _sync(device)
        elapsed = (time.perf_counter() - start) / iters
        out.append((size, elapsed, _wrong_elements(buf, rank, world)))
    return out


def pair_rounds(rank: int, world: int, device: str, rounds: list[list[tuple[int, int]]], size_bytes: int,
                inject: AllreduceInjection | None = None, ranks_per_node: int = 1, iters: int = 5,
                warmup: int = 2) -> dict[tuple[int, int], float]:
    """Inside one rank: each round's node pairs all-reduce at once, each pair in its own group.

    Nodes are blocks of ``ranks_per_node`` consecutive ranks. Returns seconds per iteration for
    every pair measured anywhere (gathered from all ranks; the slowest rank of a pair counts).
    """
    inject = inject or AllreduceInjection()
    device = _rank_device(device, rank)
    node = rank // ranks_per_node
    groups = {}
    for pairs in rounds:  # every rank creates every group, in the same order
        for pair in pairs:
            if pair not in groups:
                groups[pair] = dist.new_group([n * ranks_per_node + r for n in pair for r in range(ranks_per_node)])
    buf = torch.full((max(1, size_bytes // 4),), float(rank + 1), dtype=torch.float32, device=device)
    mine_times = {}
    for index, pairs in enumerate(rounds):
        peers.step(index + 1)
        mine = next((pair for pair in pairs if node in pair), None)
        if mine is not None:  # else this node sits the round out
            for _ in range(warmup):
                dist.all_reduce(buf, group=groups[mine])
            _sync(device)
            start = time.perf_counter()
            for _ in range(iters):
                dist.all_reduce(buf, group=groups[mine])
                if inject.slow_rank == rank:
                    time.sleep(inject.slow_s)
            _sync(device)
            mine_times[mine] = (time.perf_counter() - start) / iters
        dist.barrier()  # rounds stay apart, pairs within a round overlap
    everyone: list[dict[tuple[int, int], float]] = [{} for _ in range(world)]
    dist.all_gather_object(everyone, mine_times)
    times: dict[tuple[int, int], float] = {}
    for rank_times in everyone:
        for pair, seconds in rank_times.items():
            times[pair] = max(times.get(pair, 0.0), seconds)
    return times


def pair_busbw(times: dict[tuple[int, int], float], size_bytes: int, ranks_per_pair: int = 2) -> dict[tuple[int, int], float]:
    """Bus bandwidth (GB/s) per pair from its slowest rank's seconds per iteration."""
    return {pair: bus_bandwidth(size_bytes, seconds, ranks_per_pair)[1] for pair, seconds in times.items()}


def combine(per_rank: list[list[tuple[int, float, int]]], ranks: int) -> list[SizeResult]:
    """One row per size: the slowest rank's time, bandwidths from it, wrong elements summed."""
    results = []
    for rows in zip(*per_rank, strict=True):
        size = rows[0][0]
        slowest = max(r[1] for r in rows)
        algbw, busbw = bus_bandwidth(size, slowest, ranks)
        results.append(SizeResult(size, slowest, algbw, busbw, sum(r[2] for r in rows)))
    return results


def peak_of_largest(results: list[SizeResult], count: int = 4) -> SizeResult:
    """Judge the largest sizes, never the average over all: the best of the ``count`` largest."""
    largest = sorted(results, key=lambda r: r.size_bytes)[-count:]
    return max(largest, key=lambda r: r.busbw_gbs)


def _rank_device(device: str, rank: int) -> str:
    """``cuda``: one GPU per rank, by the rank's place on its node."""
    if device != "cuda":
        return device
    local = rank % torch.cuda.device_count()
    torch.cuda.set_device(local)
    return f"cuda:{local}"


def _all_reduce(buf: torch.Tensor) -> None:
    launch.entering()
    dist.all_reduce(buf)
    launch.left()


def _iterations(buf: torch.Tensor, min_iters: int, budget_s: float, device: str) -> int:
    """Enough iterations to fill about ``budget_s``, agreed by all ranks (the slowest decides)."""
    _sync(device)
    start = time.perf_counter()
    _all_reduce(buf)
    _sync(device)
    once = torch.tensor([time.perf_counter() - start], dtype=torch.float64, device=device)
    dist.all_reduce(once, op=dist.ReduceOp.MAX)
    return max(min_iters, min(1000, int(budget_s / max(float(once.item()), 1e-6))))


def _wrong_elements(buf: torch.Tensor, rank: int, world: int) -> int:
    """A fresh all-reduce of known values must give sum(1..world) everywhere."""
    buf.fill_(float(rank + 1))
    _all_reduce(buf)
    return int((buf != float(world * (world + 1) // 2)).sum())


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))
