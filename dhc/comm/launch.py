"""Launch ranks on this machine with an explicit rendezvous and a deadline.

``run_local`` spawns one process per rank, joins them in a torch.distributed group, runs a function
in each, and returns each rank's result. When every rank is on this machine nothing listens beyond
loopback: the rendezvous store binds 127.0.0.1 (torch's TCPStore would otherwise listen on every
interface) and gloo's pairs use ``lo``. A rank that dies or is still
running at the deadline ends the whole launch with ``RankFailure`` naming it and its host; every
rank left is killed, so no launch hangs forever.
"""

from __future__ import annotations

import multiprocessing
import queue
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dhc.comm import peers
from dhc.settings import apply_environment


class RankFailure(Exception):
    """Some rank died, failed or hung; the message names which and where."""


# Per-rank collective counters in shared memory: [entered, left] per rank. A rank that is not
# inside the collective its peers wait in has entered fewer: that is the one that hangs.
_counters: Any = None
_rank = 0


def entering() -> None:
    if _counters is not None:
        _counters[2 * _rank] += 1


def left() -> None:
    if _counters is not None:
        _counters[2 * _rank + 1] += 1


LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Placement:
    """Where this machine's ranks sit in the whole group: node ``index`` of ``nodes``, meeting at address:port."""

    index: int = 0
    nodes: int = 1
    address: str = "127.0.0.1"
    port: int | None = None  # None: a free local port (single node only)


def parse_rendezvous(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT for the rendezvous, got {value!r}")
    return host, int(port)


def run_local(world: int, backend: str, target: Callable[..., Any], args: tuple[Any, ...], timeout_s: float,
              environment: dict[str, str] | None = None, placement: Placement = Placement()) -> list[Any]:
    """Run ``target(rank, world_size, *args)`` in ``world`` ranks on this machine; results in rank order.

    With a ``placement`` of several nodes, global ranks are ``index * world + local rank`` and every
    node meets at the same address and port (node 0 hosts the store).
    """
    if placement.nodes > 1 and placement.port is None:
        raise ValueError("a multi-node run needs the rendezvous port")
    context = multiprocessing.get_context("spawn")
    results: queue.Queue[Any] = context.Queue()
    counters = context.Array("q", 2 * world, lock=False)
    local_only = placement.nodes == 1
    address, port = (LOOPBACK if local_only else placement.address), placement.port or free_port()
    if local_only and backend == "gloo":
        environment = {"GLOO_SOCKET_IFNAME": "lo", **(environment or {})}
    first = placement.index * world
    processes = [context.Process(target=_rank_main, daemon=True, name=f"dhc-rank-{first + local}",
                                 args=(local, first + local, world * placement.nodes, (address, port, local_only),
                                       backend, target, args, time.time() + timeout_s, environment or {}, results,
                                       counters))
                 for local in range(world)]
    for process in processes:
        process.start()
    try:
        return _collect(processes, results, timeout_s, counters, first)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join(timeout=5)


def _collect(processes: list[Any], results: Any, timeout_s: float, counters: Any, first: int) -> list[Any]:
    """Results by local rank; failures name global ranks (``first`` + local)."""
    host = socket.gethostname()
    got: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < len(processes):
        try:
            rank, ok, value = results.get(timeout=0.1)
        except queue.Empty:
            _raise_if_dead(processes, results, got, host, first)
            if time.monotonic() > deadline:
                raise RankFailure(_hung(processes, got, counters, host, timeout_s, first)) from None
            continue
        if not ok:
            missing, detail = value
            time.sleep(2.0)  # a local peer's death makes the others fail too: name the one that died
            _raise_if_dead(processes, results, got, host, first, also=f"; rank {first + rank} then failed: {detail[:200]}")
            if missing:  # a rank elsewhere in the group is at fault, as the store tells
                raise RankFailure(f"{missing} (seen by rank {first + rank} on {host}: {detail[:200]})")
            raise RankFailure(f"rank {first + rank} on {host} failed: {detail}")
        got[rank] = value
    return [got[r] for r in range(len(processes))]


def _raise_if_dead(processes: list[Any], results: Any, got: dict[int, Any], host: str, first: int,
                   also: str = "") -> None:
    dead = [r for r, p in enumerate(processes) if r not in got and p.exitcode not in (None, 0)]
    if dead:
        _drain(results, got)
        dead = [r for r in dead if r not in got]
    if dead:
        codes = ", ".join(f"rank {first + r} on {host} (exit code {processes[r].exitcode})" for r in dead)
        raise RankFailure(f"{codes} died before finishing{also}; the other ranks were stopped")


def _hung(processes: list[Any], got: dict[int, Any], counters: Any, host: str, timeout_s: float, first: int) -> str:
    waiting = [r for r in range(len(processes)) if r not in got]
    entered = {r: counters[2 * r] for r in waiting}
    behind = [r for r in waiting if entered[r] < max(entered.values())]
    if behind:
        names = ", ".join(f"rank {first + r} on {host}" for r in behind)
        return (f"{names} hung outside the collective its peers waited in (no result within {timeout_s:g} s); "
                "all ranks were stopped")
    names = ", ".join(f"rank {first + r} on {host}" for r in waiting)
    return f"{names} did not finish within {timeout_s:g} s (hung inside a collective); all ranks were stopped"


def _drain(results: Any, got: dict[int, Any]) -> None:
    """Results that arrived just before a rank exited still count."""
    while True:
        try:
            rank, ok, value = results.get_nowait()
        except queue.Empty:
            return
        if ok:
            got[rank] = value


def _rank_main(local: int, rank: int, world: int, meet: tuple[str, int, bool], backend: str,
               target: Callable[..., Any], args: tuple[Any, ...], ends_at: float, environment: dict[str, str],
               results: Any, counters: Any) -> None:
    global _counters, _rank
    _counters, _rank = counters, local
    apply_environment(environment)
    import torch.distributed as dist

    book = None
    try:
        # collectives give up before the parent's deadline (counted from the launch, not from this rank's
        # start: a rank slow to import torch still reports in time), so a survivor can say who is missing
        patience = timedelta(seconds=max(1.0, (ends_at - time.time()) * 0.8))
        store = _store(dist, rank, world, meet, patience)
        book = peers.open_book(store, rank, world)
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=patience)
        try:
            value = target(rank, world, *args)
        finally:
            dist.destroy_process_group()
        results.put((local, True, value))
    except Exception as exc:  # reported to the parent, which names the rank
        missing = book.describe_missing() if book is not None else ""
        detail = f"{type(exc).__name__}: {str(exc)[:200]}"
        results.put((local, False, (missing, detail if missing else f"{detail} | {traceback.format_exc(limit=3)[-300:]}")))
    finally:
        if book is not None:
            book.close()


def _store(dist: Any, rank: int, world: int, meet: tuple[str, int, bool], patience: timedelta) -> Any:
    """The rendezvous store; node 0's rank 0 hosts it, on loopback alone when every rank is local."""
    address, port, local_only = meet
    listen_fd = None
    if rank == 0 and local_only:
        listener = socket.create_server((LOOPBACK, port), backlog=max(world, 128))
        listen_fd = listener.detach()  # the store owns the socket from here
    return dist.TCPStore(address, port, world, is_master=rank == 0, timeout=patience, wait_for_workers=False,
                         master_listen_fd=listen_fd)
