"""Where every rank of a group is, kept in the rendezvous store, to name the ranks that went missing.

Each rank records its host, a heartbeat (every second, from a background thread) and the step it
has reached. When a collective fails or times out, any surviving rank can read the book and say
which rank died (its heartbeat stopped), which lags (a lower step while the others wait), or that
every rank is stuck inside the same collective.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

BEAT_S = 1.0
STALE_S = 4.0

_book: PeerBook | None = None


def step(value: int) -> None:
    """Record the step this rank has reached (a no-op outside a launched group)."""
    if _book is not None:
        _book.at(value)


class PeerBook:
    def __init__(self, store: Any, rank: int, world: int):
        self.store, self.rank, self.world = store, rank, world
        store.set(f"dhc/host/{rank}", socket.gethostname())
        self.at(0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="dhc-heartbeat", daemon=True)
        self._thread.start()

    def at(self, value: int) -> None:
        self.store.set(f"dhc/step/{self.rank}", str(value))

    def close(self) -> None:
        self._stop.set()

    def describe_missing(self, patience_s: float = STALE_S + 1) -> str:
        """Which ranks look at fault; waits once for a dead rank's heartbeat to go stale."""
        found = self._describe()
        if not found and patience_s > 0:
            time.sleep(patience_s)
            found = self._describe()
        return found

    def _describe(self) -> str:
        try:
            rows = [self._read(r) for r in range(self.world)]
        except Exception:  # the store itself is gone (its host, node 0, died)
            return "the rendezvous store on node 0 is unreachable (node 0 may be down)"
        now = time.time()
        never = [f"rank {r} never joined" for r, host, _, _ in rows if host is None]
        dead = [f"rank {r} on {host} stopped beating {now - beat:.0f} s ago (died?)"
                for r, host, beat, _ in rows if host is not None and beat is not None and now - beat > STALE_S]
        if never or dead:
            return "; ".join(never + dead)
        steps = [s for _, _, _, s in rows if s is not None]
        if steps and min(steps) < max(steps):
            return "; ".join(f"rank {r} on {host} is behind (step {s} while others reached {max(steps)})"
                             for r, host, _, s in rows if s == min(steps))
        return ""

    def _read(self, rank: int) -> tuple[int, str | None, float | None, int | None]:
        def get(key: str) -> str | None:
            return self.store.get(key).decode() if self.store.check([key]) else None

        host, beat, at = get(f"dhc/host/{rank}"), get(f"dhc/beat/{rank}"), get(f"dhc/step/{rank}")
        return rank, host, float(beat) if beat else None, int(at) if at else None

    def _beat(self) -> None:
        while not self._stop.is_set():
            try:
                self.store.set(f"dhc/beat/{self.rank}", f"{time.time():.3f}")
            except Exception:  # the store went away; the collective will report it
                return
            self._stop.wait(BEAT_S)


def open_book(store: Any, rank: int, world: int) -> PeerBook:
    global _book
    _book = PeerBook(store, rank, world)
    return _book
