"""Memtest verified bytes/s vs copy bandwidth (bytes copied per second by ``tensor.copy_``), same run.

Copy bytes/s: bytes copied per second by ``dst.copy_(src)`` (256 MiB on the CPU): each counted byte
is read once and written once. Verified bytes/s: bytes written with a pattern and then read back and
checked, per second of the patterns' and the march's passes: each counted byte is written once and
read once (ten patterns, then the march's three checks: 13 counted bytes per byte of memory; the
march's first write and the first pattern's write are not counted). Goal: ratio >= 0.8. Each round
measures copy right before and right after its memtest (their mean is the round's copy figure, so
a neighbour's burst on a shared machine weighs on both sides alike); the figure is the median of the
per-round ratios. Also prints how much
of the free memory the run covered. Runs on CUDA when present, else on the CPU.

    python benchmarks/memtest.py [--gib G] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from dhc.kernels import memtest
from dhc.probes import host

GOAL = 0.8
SIZES = {"cpu": (2**20, 64 * 2**20, 256 * 2**20), "cuda": (32 * 2**20, 2**30, 2 * 2**30)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--gib", type=float, default=None, help="memory to test (default: 90%% of free on GPU, 1 GiB on CPU)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = "cuda:0" if cuda else "cpu"
    tile, chunk, copy_buffer = SIZES["cuda" if cuda else "cpu"]
    free = torch.cuda.mem_get_info(0)[0] if cuda else host.memory_available_bytes()
    total = int(args.gib * 2**30) if args.gib else (int(free * 0.9) - 2 * copy_buffer if cuda else 2**30)
    ratios, verified, copied, covered = [], [], [], 0
    for r in range(args.rounds):
        before = memtest.copy_bytes_per_s(device, copy_buffer)
        result = memtest.memtest(device, total, chunk if cuda else memtest.chunk_bytes_for(total, chunk, tile), tile)
        copied.append((before + memtest.copy_bytes_per_s(device, copy_buffer)) / 2)
        verified.append(result.verified_bytes_per_s)
        ratios.append(verified[-1] / copied[-1])
        covered = result.bytes_covered
        assert result.errors == 0, f"memory errors on {device}: {result.first_errors}"
        print(f"  round {r + 1}: copy {copied[-1] / 1e9:8.2f} GB/s  verified {verified[-1] / 1e9:8.2f} GB/s  "
              f"ratio {ratios[-1]:.3f}", flush=True)
        if cuda:
            torch.cuda.empty_cache()
    v, c, ratio = statistics.median(verified), statistics.median(copied), statistics.median(ratios)
    print(f"device {device}: tested {covered / 2**30:.2f} GiB = {covered / free:.1%} of {free / 2**30:.2f} GiB free, "
          f"{args.rounds} rounds")
    print(f"copy (bytes copied/s)  : {c / 1e9:10.2f} GB/s  ({2 * c / 1e12:.3f} TB/s counting read + write)")
    print(f"memtest verified B/s   : {v / 1e9:10.2f} GB/s")
    print(f"ratio verified/copy    : {ratio:10.3f}   (median of rounds; goal >= {GOAL}) "
          f"{'OK' if ratio >= GOAL else 'BELOW GOAL'}")

if __name__ == "__main__":
    main()
