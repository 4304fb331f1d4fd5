"""The controller's work queue and per-node backoff (client-go's workqueue, in a few lines).

``Queue`` hands out node names to workers: a FIFO of names with a ``dirty`` set (queued, waiting to
be handed out) and a ``processing`` set (a worker has it). A name added while it waits is queued
once however often it is added; a name added while a worker has it is queued again only when the
worker calls ``done``, so it is reconciled once more after, never by two workers at once.
``add_after`` holds a name in one heap, served by the workers' own wait (no thread per retry);
the earliest of several delayed adds of one name wins.

``Backoff`` is the per-node exponential delay for temporary API errors: ``base * 2**failures``,
capped, with jitter (a random factor in [0.5, 1]) so a thousand nodes failing together do not
retry together; ``forget`` resets a node after a success. ``Holds`` keeps keys other than nodes
(a connectivity group, a list of nodes) out for their backoff after a temporary error, or a long
while after a permanent one, and says when a permanent error is news to report.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from collections import deque
from collections.abc import Callable


class Queue:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._cond = threading.Condition()
        self._fifo: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []  # (due, sequence, name); stale entries skipped
        self._due: dict[str, float] = {}  # name -> its earliest delayed add
        self._sequence = 0
        self._closed = False

    def add(self, name: str) -> None:
        with self._cond:
            self._add(name)

    def add_after(self, name: str, delay_s: float) -> None:
        """Add ``name`` once ``delay_s`` has passed (at once when it is 0 or less)."""
        with self._cond:
            if delay_s <= 0:
                return self._add(name)
            due = self._clock() + delay_s
            if self._due.get(name, float("inf")) <= due:
                return None
            self._due[name] = due
            self._sequence += 1
            heapq.heappush(self._delayed, (due, self._sequence, name))
            self._cond.notify()
        return None

    def get(self, timeout_s: float | None = None) -> str | None:
        """The next name to reconcile, now marked processing; None after ``timeout_s`` or once closed."""
        deadline = None if timeout_s is None else self._clock() + timeout_s
        with self._cond:
            while True:
                self._promote()
                if self._fifo or self._closed:
                    break
                wait = self._wait_s(deadline)
                if wait is not None and wait <= 0:
                    return None
                self._cond.wait(wait)
            if self._closed:
                return None
            name = self._fifo.popleft()
            self._dirty.discard(name)
            self._processing.add(name)
            return name

    def done(self, name: str) -> None:
        """The worker has finished ``name``: queue it again if it was added meanwhile."""
        with self._cond:
            self._processing.discard(name)
            if name in self._dirty:
                self._fifo.append(name)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._fifo)

    def delayed(self) -> dict[str, float]:
        """Names waiting for a delayed add, with when they are due (the queue's clock)."""
        with self._cond:
            return dict(self._due)

    def _add(self, name: str) -> None:
        if name in self._dirty:
            return
        self._dirty.add(name)
        if name not in self._processing:
            self._fifo.append(name)
            self._cond.notify()

    def _promote(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, name = heapq.heappop(self._delayed)
            if self._due.get(name) == due:
                del self._due[name]
                self._add(name)

    def _wait_s(self, deadline: float | None) -> float | None:
        now = self._clock()
        waits = [t - now for t in (deadline, self._delayed[0][0] if self._delayed else None) if t is not None]
        return min(waits) if waits else None


class Backoff:
    def __init__(self, base_s: float = 1.0, cap_s: float = 300.0, jitter: Callable[[], float] = random.random):
        self.base_s, self.cap_s, self._jitter = base_s, cap_s, jitter
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def next(self, name: str) -> float:
        """The delay before ``name``'s next try, counting this failure."""
        with self._lock:
            failures = self._failures.get(name, 0)
            self._failures[name] = failures + 1
        delay = min(self.cap_s, self.base_s * 2.0 ** min(failures, 32))
        return delay * (0.5 + 0.5 * self._jitter())

    def capped(self, name: str) -> bool:
        """Whether ``name``'s last delay was at the cap (before jitter)."""
        with self._lock:
            failures = self._failures.get(name, 0)
        return failures > 0 and self.base_s * 2.0 ** min(failures - 1, 32) >= self.cap_s

    def failures(self, name: str) -> int:
        with self._lock:
            return self._failures.get(name, 0)

    def forget(self, name: str) -> None:
        with self._lock:
            self._failures.pop(name, None)


class Holds:
    """Keys held back after an API error (the batcher's groups, the watches' lists): a temporary error
    holds the key for its ``backoff``; a permanent one for ``permanent_s``, and is to be reported only
    the first time that key fails with that message. ``forget`` a key once it succeeds."""

    def __init__(self, backoff: Backoff, permanent_s: float, clock: Callable[[], float] = time.monotonic):
        self.backoff, self.permanent_s, self._clock = backoff, permanent_s, clock
        self._until: dict[str, float] = {}
        self._said: dict[str, str] = {}  # key -> the permanent error last reported for it
        self._lock = threading.Lock()

    def failed(self, key: str, permanent: bool, said: str) -> tuple[float, bool]:
        """Hold ``key`` after this failure: (the delay, whether this permanent error is news to report)."""
        delay = self.permanent_s if permanent else self.backoff.next(key)
        with self._lock:
            self._until[key] = self._clock() + delay
            news = permanent and self._said.get(key) != said
            if permanent:
                self._said[key] = said
        return delay, news

    def held(self, key: str) -> bool:
        with self._lock:
            return self._clock() < self._until.get(key, float("-inf"))

    def forget(self, key: str) -> None:
        self.backoff.forget(key)
        with self._lock:
            self._until.pop(key, None)
            self._said.pop(key, None)

    def keep(self, alive: Callable[[str], bool]) -> None:
        """Forget the keys that no longer matter (a group whose candidates changed), backoff included."""
        with self._lock:
            gone = [key for key in self._until if not alive(key)]
        for key in gone:
            self.forget(key)

    def next_due(self) -> float:
        """When the earliest hold still running runs out (inf when none)."""
        now = self._clock()
        with self._lock:
            return min((until for until in self._until.values() if until > now), default=float("inf"))
