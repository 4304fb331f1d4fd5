"""All-reduce bus bandwidth over a size sweep, checked for correctness like nccl-tests ``-c``.

busbw = algbw x 2(n-1)/n (nccl-tests' formula for all-reduce). Each size is timed on every rank;
the slowest rank's time counts, as a collective is as fast as its slowest member.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dhc.comm import launch


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
    if device == "cuda":  # one GPU per rank
        device = f"cuda:{rank}"
        torch.cuda.set_device(rank)
    if inject.dead_rank == rank:
        import os
        os._exit(17)  # the process vanishes mid-run, as a crashed rank does
    out = []
    for size in sizes:
        buf = torch.full((max(1, size // 4),), float(rank + 1), dtype=torch.float32, device=device)
        for _ in range(warmup):
            _all_reduce(buf)
        iters = _iterations(buf, min_iters, budget_s, device)
        if inject.hung_rank == rank:
            time.sleep(10**6)  # stays in the collective forever, as a hung rank does
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
