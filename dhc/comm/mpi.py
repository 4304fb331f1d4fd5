"""Launch under MPI: ``mpiexec`` starts the ranks, rank 0 publishes a rendezvous for torch.distributed.

    mpiexec -n 16 -ppn 8 -hosts a,b python -m dhc.comm.mpi --max-bytes 2147483648 --out result.json

runs the all-reduce sweep over every MPI rank (NCCL on GPUs, gloo on CPU) and rank 0 writes the
per-size results as JSON. MPI collectives have no timeout: bound the whole run with mpiexec's own
(``-timeout`` in MPICH's hydra) or the caller's; torch's collectives time out by themselves.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from dhc.comm import allreduce
from dhc.comm.launch import free_port


def rendezvous(comm: Any) -> tuple[str, int]:
    """Rank 0's address and a free port, broadcast to every rank."""
    offer = None
    if comm.rank == 0:
        try:
            address = socket.gethostbyname(socket.gethostname())
        except OSError:
            address = "127.0.0.1"
        offer = (address, free_port())
    return comm.bcast(offer, root=0)


def sweep_under_mpi(max_bytes: int, timeout_s: float) -> dict[str, Any] | None:
    """Every rank measures; rank 0 returns the combined results (others return None)."""
    import torch
    import torch.distributed as dist
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    address, port = rendezvous(comm)
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://{address}:{port}", rank=comm.rank,
                            world_size=comm.size, timeout=timedelta(seconds=timeout_s))
    try:
        rows = allreduce.rank_sweep(comm.rank, comm.size, "cuda" if cuda else "cpu",
                                    allreduce.sweep_sizes(8, max_bytes))
    finally:
        dist.destroy_process_group()
    gathered = comm.gather((socket.gethostname(), rows), root=0)
    if comm.rank != 0:
        return None
    results = allreduce.combine([r for _, r in gathered], comm.size)
    return {"ranks": comm.size, "hosts": sorted({h for h, _ in gathered}),
            "results": [vars(r) for r in results], "peak": vars(allreduce.peak_of_largest(results))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dhc.comm.mpi", description=__doc__.splitlines()[0])
    parser.add_argument("--max-bytes", type=int, default=64 * 2**20)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    document = sweep_under_mpi(args.max_bytes, args.timeout)
    if document is not None:
        args.out.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
