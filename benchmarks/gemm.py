"""GEMM burn throughput vs a bare ``torch.matmul`` loop of the same shape and dtype, same process.

The ratio is the share of throughput the SDC checking leaves (goal: >= 0.95). Runs on CUDA when
present, else on the CPU. The two are measured alternately, so machine noise hits both alike.

    python benchmarks/gemm.py [--size N] [--dtype bf16|fp16|tf32|fp32] [--seconds S] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dhc.kernels import gemm


def bare_tflops(device: str, dtype: str, size: int, seconds: float) -> float:
    a = torch.randn(size, size).to(gemm.DTYPES[dtype]).to(device)
    b = torch.randn(size, size).to(gemm.DTYPES[dtype]).to(device)
    out = torch.empty_like(a)
    torch.matmul(a, b, out=out)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    iterations, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(gemm.SYNC_EVERY):
            torch.matmul(a, b, out=out)
        iterations += gemm.SYNC_EVERY
        sync()
    return 2.0 * size**3 * iterations / (time.perf_counter() - start) / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--size", type=int, default=16384 if cuda else 2048)
    parser.add_argument("--dtype", default="bf16" if cuda else "fp32", choices=sorted(gemm.DTYPES))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = "cuda:0" if cuda else "cpu"
    bare, burn = [], []
    with gemm._tf32(args.dtype):
        for _ in range(args.rounds):
            bare.append(bare_tflops(device, args.dtype, args.size, args.seconds))
            burn.append(gemm.burn([device], args.dtype, args.size, args.seconds).workers[0].tflops)
    b, r = statistics.median(bare), statistics.median(burn)
    print(f"device {device}, {args.dtype} {args.size}x{args.size}, {args.rounds} rounds of {args.seconds:g} s each")
    print(f"bare torch.matmul loop : {b:10.3f} TFLOP/s (median)")
    print(f"dhc GEMM burn with SDC : {r:10.3f} TFLOP/s (median)")
    print(f"ratio burn/bare        : {r / b:10.3f}   (goal >= 0.95) {'OK' if r / b >= 0.95 else 'BELOW GOAL'}")


if __name__ == "__main__":
    main()
