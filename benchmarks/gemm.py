"""GEMM burn throughput vs a bare ``torch.matmul`` loop of the same shape and dtype, same process.

The ratio is the share of throughput the SDC checking leaves (goal: >= 0.97), for two sizes: on a
GPU 8192 and 16384, on the CPU 2048 (what the cpu profile burns, thresholds.yaml) and 3072. On the
CPU the compare is one memcmp of the result with the first result, which reads the first result
back from memory each time: at 1024 that read is some 2-3% of a 17 ms GEMM on a 2-core VM, at
2048 about 1.5%, and it shrinks as 1/n (the GEMM grows as n^3, the compare as n^2). Runs on CUDA
when present, else on the CPU. Short sides and many rounds on the CPU (41, some 4 minutes): a
shared VM's neighbours move its throughput by tens of percent over seconds, and the quartiles of
the per-round ratios are printed beside the median.

Bare and burn alternate in short sides, bare first and last (bare, burn, bare, burn, ..., bare):
each burn is divided by the mean of the bare sides just before and just after it, and the figure is
the median of these per-round ratios, so a neighbour's burst on a shared machine weighs on both
sides alike. Both sides use the burn's own clock and pacing.

    python benchmarks/gemm.py [--sizes N,N] [--dtype bf16|fp16|tf32|fp32] [--seconds S] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch

from dhc.kernels import gemm, repeat_check

GOAL = 0.97


def bare_tflops(device: str, dtype: str, size: int, seconds: float) -> float:
    """The burn's loop with nothing but the GEMM: same clock, same pacing, same minimum of 3."""
    a = torch.randn(size, size).to(gemm.DTYPES[dtype]).to(device)
    b = torch.randn(size, size).to(gemm.DTYPES[dtype]).to(device)
    out = torch.matmul(a, b)
    clock = gemm._Clock(torch.device(device))
    clock.sync()
    iterations = 0
    clock.start()
    deadline = time.monotonic() + seconds
    while iterations < 3 or time.monotonic() < deadline:
        torch.matmul(a, b, out=out)
        iterations += 1
        if iterations % gemm.SYNC_EVERY == 0:
            clock.pace()
    return 2.0 * size**3 * iterations / clock.stop() / 1e12


def in_a_thread(fn, *args) -> float:
    """Run as the burn runs its workers, in a thread of their own (torch's CPU thread pool differs per thread)."""
    box: list[float] = []
    worker = threading.Thread(target=lambda: box.append(fn(*args)))
    worker.start()
    worker.join()
    return box[0]


def measure(device: str, dtype: str, size: int, seconds: float, rounds: int) -> list[float]:
    ratios, bare = [], in_a_thread(bare_tflops, device, dtype, size, seconds)
    for r in range(rounds):
        burn = gemm.burn([device], dtype, size, seconds).workers[0].tflops
        after = in_a_thread(bare_tflops, device, dtype, size, seconds)
        ratios.append(burn / ((bare + after) / 2))
        print(f"  round {r + 1:>2}: bare {bare:9.4f}  burn {burn:9.4f}  bare {after:9.4f} TFLOP/s  "
              f"ratio {ratios[-1]:.3f}", flush=True)
        bare = after
    return ratios


def check_share(device: str, dtype: str, size: int, iterations: int = 12) -> float:
    """GEMM time / (GEMM + compare time), timed apart inside one loop, iteration by iteration: the
    compare's own cost, which machine noise hardly touches (on a GPU the compare overlaps the next
    GEMM, so this is an upper bound there)."""
    a = torch.randn(size, size).to(gemm.DTYPES[dtype]).to(device)
    b = torch.randn(size, size).to(gemm.DTYPES[dtype]).to(device)
    check = repeat_check.for_device(torch.matmul(a, b), gemm.SYNC_EVERY)
    clock, shares = gemm._Clock(torch.device(device)), []
    for i in range(iterations):
        out = check.buffer(i)
        clock.sync()
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        clock.sync()
        t1 = time.perf_counter()
        check.submit(out)
        clock.sync()
        shares.append((t1 - t0) / (time.perf_counter() - t0))
    check.drain()
    assert not check.mismatches(), "the same GEMM gave different bits"
    return statistics.median(shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--sizes", default="8192,16384" if cuda else "2048,3072")
    parser.add_argument("--dtype", default="bf16" if cuda else "fp32", choices=sorted(gemm.DTYPES))
    parser.add_argument("--seconds", type=float, default=2.0 if cuda else 0.5, help="per side per round")
    parser.add_argument("--rounds", type=int, default=9 if cuda else 41)
    args = parser.parse_args()
    device = "cuda:0" if cuda else "cpu"
    results = {}
    with gemm._tf32(args.dtype):
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"device {device}, {args.dtype} {size}x{size}, {args.rounds} rounds of {args.seconds:g} s a side")
            results[size] = measure(device, args.dtype, size, args.seconds, args.rounds), \
                check_share(device, args.dtype, size)
    for size, (ratios, share) in results.items():
        ratio = statistics.median(ratios)
        low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratio, ratio, ratio)
        verdict = "OK" if ratio >= GOAL else "BELOW GOAL"
        print(f"ratio burn/bare {args.dtype} {size:>5}: {ratio:6.3f} (median of {len(ratios)} rounds, quartiles "
              f"{low:.3f}-{high:.3f}; goal >= {GOAL}) {verdict}; GEMM share of GEMM + compare, per iteration: {share:.4f}")


if __name__ == "__main__":
    main()
