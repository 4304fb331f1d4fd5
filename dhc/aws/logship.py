"""Records shipped to one CloudWatch Logs stream from a thread of their own, so a slow or failing
service never holds up the caller (the agent's watch). Records wait in a bounded buffer; a put that
fails is reported through ``on_error`` and tried again at the next record or after ``retry_s``; when
the buffer is full the oldest records are dropped and the next report says how many.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from dhc.aws.logs import LogsError, LogStream, message

MAX_PENDING = 10_000


class Shipper:
    def __init__(self, stream: LogStream, on_error: Callable[[str], None], retry_s: float = 30.0,
                 max_pending: int = MAX_PENDING):
        self.stream, self.on_error, self.retry_s = stream, on_error, retry_s
        self.pending: deque[tuple[int, str]] = deque()
        self.max_pending, self.dropped, self.sent = max_pending, 0, 0
        self.wake, self.closing, self.lock = threading.Event(), threading.Event(), threading.Lock()
        self.thread = threading.Thread(target=self._loop, name="cloudwatch-logs", daemon=True)
        self.thread.start()

    def ship(self, record: dict[str, Any]) -> None:
        """Queue one record (never blocks on the service)."""
        with self.lock:
            if len(self.pending) >= self.max_pending:
                self.pending.popleft()
                self.dropped += 1
            self.pending.append((int(time.time() * 1000), message(record)))
        self.wake.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Try once more to deliver what waits, for at most ``timeout_s``, then stop the thread."""
        self.closing.set()
        self.wake.set()
        self.thread.join(timeout=timeout_s)

    def _loop(self) -> None:
        while True:
            self.wake.wait(self.retry_s)
            self.wake.clear()
            try:
                self._deliver()
            except Exception as exc:  # a broken reporter must not end the thread: the next try still comes
                self.on_error(f"CloudWatch Logs delivery broke ({type(exc).__name__}: {exc})")
            if self.closing.is_set():
                return

    def _deliver(self) -> None:
        with self.lock:
            events, dropped = list(self.pending), self.dropped
        if not events:
            return
        try:
            self.sent += self.stream.put(events)
        except LogsError as exc:
            lost = f"; {dropped} older record(s) dropped, the buffer holds {self.max_pending}" if dropped else ""
            self.on_error(f"could not send {len(events)} record(s) to {exc} (kept, tried again){lost}")
            return
        with self.lock:  # what was dropped meanwhile left from the front, where the sent records were
            for _ in range(max(0, len(events) - (self.dropped - dropped))):
                self.pending.popleft()
