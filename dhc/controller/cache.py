"""The controller's caches of API objects, shared by the watch threads, the workers and the batcher.

``Store`` is a name -> object map behind one lock: single reads and writes are atomic, iteration
and ``values()``/``items()`` return a copy taken under the lock (so a watch event landing meanwhile
never breaks an iteration), and ``replace`` swaps the whole content at once after a re-list.
``JobStore`` also indexes the per-node Jobs by the node they check, so finding one node's Jobs
costs the same with 5,000 Jobs as with one (no scan of every Job per reconcile).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from dhc.controller.jobs import NODE_ANNOTATION


class Store:
    def __init__(self, items: dict[str, Any] | None = None):
        self._lock = threading.RLock()
        self._items: dict[str, Any] = {}
        self.replace(items or {})

    def get(self, name: str, default: Any = None) -> Any:
        with self._lock:
            return self._items.get(name, default)

    def __getitem__(self, name: str) -> Any:
        with self._lock:
            return self._items[name]

    def __setitem__(self, name: str, value: Any) -> None:
        with self._lock:
            self._drop(name)
            self._items[name] = value
            self._index(name, value)

    def __delitem__(self, name: str) -> None:
        with self._lock:
            self._drop(name)
            del self._items[name]

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def values(self) -> list[Any]:
        with self._lock:
            return list(self._items.values())

    def items(self) -> list[tuple[str, Any]]:
        with self._lock:
            return list(self._items.items())

    def pop(self, name: str, default: Any = None) -> Any:
        with self._lock:
            if name not in self._items:
                return default
            self._drop(name)
            return self._items.pop(name)

    def setdefault(self, name: str, value: Any) -> Any:
        with self._lock:
            if name not in self._items:
                self[name] = value
            return self._items[name]

    def replace(self, items: dict[str, Any]) -> None:
        """The whole content at once (a re-list): no reader sees half of the old and half of the new."""
        with self._lock:
            self._items = {}
            self._reset()
            for name, value in items.items():
                self[name] = value

    # an index kept in step with the content (none here)
    def _index(self, name: str, value: Any) -> None:
        pass

    def _drop(self, name: str) -> None:
        pass

    def _reset(self) -> None:
        pass


class JobStore(Store):
    """Jobs by name, and the names of each node's own Jobs (by their node annotation)."""

    def __init__(self, items: dict[str, Any] | None = None):
        self._by_node: dict[str, set[str]] = {}
        super().__init__(items)

    def for_node(self, node: str) -> list[dict[str, Any]]:
        with self._lock:
            return [self._items[name] for name in sorted(self._by_node.get(node, ()))]

    def _index(self, name: str, value: Any) -> None:
        node = ((value.get("metadata") or {}).get("annotations") or {}).get(NODE_ANNOTATION)
        if node:
            self._by_node.setdefault(node, set()).add(name)

    def _drop(self, name: str) -> None:
        old = self._items.get(name)
        if old is None:
            return
        node = ((old.get("metadata") or {}).get("annotations") or {}).get(NODE_ANNOTATION)
        names = self._by_node.get(node or "")
        if names is not None:
            names.discard(name)
            if not names:
                del self._by_node[node or ""]

    def _reset(self) -> None:
        self._by_node = {}
