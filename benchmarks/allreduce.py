"""All-reduce bus bandwidth: dhc's sweep vs a bare torch.distributed loop vs mpi4py ``Allreduce``.

Same ranks, same sizes, one run, measured side by side (size by size, the three in turn). Goal:
dhc >= 0.95 of the bare loop at the largest sizes. Starts itself under ``mpiexec -n RANKS``.

    python benchmarks/allreduce.py [--ranks 2] [--max-mib 64]
"""

from __future__ import annotations

import argparse
import array
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta


def bare_busbw(dist, torch, size: int, ranks: int, iters: int, device: str) -> float:
    buf = torch.ones(size // 4, dtype=torch.float32, device=device)
    for _ in range(2):
        dist.all_reduce(buf)
    start = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(buf)
    if device != "cpu":
        torch.cuda.synchronize()
    elapsed = (time.perf_counter() - start) / iters
    worst = torch.tensor([elapsed], dtype=torch.float64, device=device)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return size / float(worst.item()) / 1e9 * 2 * (ranks - 1) / ranks


def mpi_busbw(comm, mpi, size: int, iters: int) -> float:
    buf = array.array("f", bytes(size))
    for _ in range(2):
        comm.Allreduce(mpi.IN_PLACE, [buf, mpi.FLOAT])
    start = time.perf_counter()
    for _ in range(iters):
        comm.Allreduce(mpi.IN_PLACE, [buf, mpi.FLOAT])
    elapsed = comm.allreduce((time.perf_counter() - start) / iters, op=mpi.MAX)
    return size / elapsed / 1e9 * 2 * (comm.size - 1) / comm.size


def worker(max_bytes: int) -> None:
    import torch
    import torch.distributed as dist
    from mpi4py import MPI

    from dhc.comm import allreduce
    from dhc.comm.mpi import rendezvous

    comm = MPI.COMM_WORLD
    address, port = rendezvous(comm)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(comm.rank % torch.cuda.device_count())
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://{address}:{port}", rank=comm.rank,
                            world_size=comm.size, timeout=timedelta(seconds=300))
    rows = []
    for size in allreduce.sweep_sizes(max_bytes // 8, max_bytes):
        [(_, seconds, wrong)] = allreduce.rank_sweep(comm.rank, comm.size, device, [size])
        seconds = comm.allreduce(seconds, op=MPI.MAX)
        iters = max(3, int(0.2 / seconds))
        dhc_bw = allreduce.bus_bandwidth(size, seconds, comm.size)[1]
        rows.append((size, dhc_bw, bare_busbw(dist, torch, size, comm.size, iters, device if not cuda else "cuda"),
                     mpi_busbw(comm, MPI, size, iters)))
    dist.destroy_process_group()
    if comm.rank == 0:
        print(f"{comm.size} ranks, backend {'nccl' if cuda else 'gloo'}; bus bandwidth in GB/s")
        print(f"{'size':>12} {'dhc':>9} {'bare':>9} {'mpi4py':>9} {'dhc/bare':>9} {'dhc/mpi':>9}")
        for size, d, b, m in rows:
            print(f"{size:>12} {d:>9.3f} {b:>9.3f} {m:>9.3f} {d / b:>9.3f} {d / m:>9.3f}")
        largest = rows[-2:]
        ratio = sum(d for _, d, _, _ in largest) / sum(b for _, _, b, _ in largest)
        print(f"dhc/bare at the two largest sizes: {ratio:.3f} (goal >= 0.95) {'OK' if ratio >= 0.95 else 'BELOW GOAL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--max-mib", type=int, default=64)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.max_mib * 2**20)
        return
    mpiexec = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    sys.exit(subprocess.call([mpiexec, "-n", str(args.ranks), sys.executable, os.path.abspath(__file__), "--worker",
                              "--max-mib", str(args.max_mib)]))


if __name__ == "__main__":
    main()
