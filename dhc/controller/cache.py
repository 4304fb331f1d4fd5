"""The controller's caches of API objects, shared by the watch threads, the workers and the batcher.

``Store`` is a name -> object map behind one lock: single reads and writes are atomic, iteration
and ``values()``/``items()`` return a copy taken under the lock (so a watch event landing meanwhile
never breaks an iteration), and ``replace`` swaps the whole content at once after a re-list.
``JobStore`` also indexes the per-node Jobs by the node they check, so finding one node's Jobs
costs the same with 5,000 Jobs as with one (no scan of every Job per reconcile). ``listen`` adds a
callback told of each change, after the write and outside the lock: ``(name, the new value or None
when it went)``, or ``(None, None)`` after a ``replace`` (the batcher's dirty flag).

A write never takes an object back in time: the controller writes the object a patch returned, and
the watch may have brought a newer one (another writer's change: a node marked Failed, gone
NotReady, deleted) while that reply was on its way. A write whose resourceVersion is older than the
cached one's, or no newer than that of the object last removed under that name, is dropped (as
client-go's MutationCache does; versions that are not integers are not compared). Otherwise the
cache would keep the stale object, and nothing later would say the change happened.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from dhc.controller.jobs import NODE_ANNOTATION


class Store:
    def __init__(self, items: dict[str, Any] | None = None):
        self._lock = threading.RLock()
        self._items: dict[str, Any] = {}
        self._gone: dict[str, int] = {}  # name -> the resourceVersion last removed under it (no late write revives it)
        self._listeners: list[Callable[[str | None, Any], None]] = []
        self.replace(items or {})

    def listen(self, listener: Callable[[str | None, Any], None]) -> None:
        self._listeners.append(listener)

    def get(self, name: str, default: Any = None) -> Any:
        with self._lock:
            return self._items.get(name, default)

    def __getitem__(self, name: str) -> Any:
        with self._lock:
            return self._items[name]

    def __setitem__(self, name: str, value: Any) -> None:
        with self._lock:
            if _older(value, self._items[name]) if name in self._items else _no_newer(value, self._gone.get(name)):
                return  # the watch brought a newer one (or its deletion) already
            self._put(name, value)
        self._changed(name, value)

    def __delitem__(self, name: str) -> None:
        with self._lock:
            self._drop(name)
            self._forget(name, self._items.pop(name))
        self._changed(name, None)

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
            value = self._items.pop(name)
            self._forget(name, value)
        self._changed(name, None)
        return value

    def setdefault(self, name: str, value: Any) -> Any:
        with self._lock:
            if name in self._items:
                return self._items[name]
            self._put(name, value)
        self._changed(name, value)
        return value

    def replace(self, items: dict[str, Any]) -> None:
        """The whole content at once (a re-list): no reader sees half of the old and half of the new."""
        with self._lock:
            self._items, self._gone = {}, {}
            self._reset()
            for name, value in items.items():
                self._put(name, value)
        self._changed(None, None)

    def _put(self, name: str, value: Any) -> None:
        self._drop(name)
        self._items[name] = value
        self._index(name, value)

    def _forget(self, name: str, value: Any) -> None:
        version = _version(value)
        if version is not None:
            self._gone[name] = version

    def _changed(self, name: str | None, value: Any) -> None:
        for listener in self._listeners:
            listener(name, value)

    # an index kept in step with the content (none here)
    def _index(self, name: str, value: Any) -> None:
        pass

    def _drop(self, name: str) -> None:
        pass

    def _reset(self) -> None:
        pass


def _older(value: Any, cached: Any) -> bool:
    """Whether ``value`` is older than the cached object, by resourceVersion (False when either has none)."""
    new, old = _version(value), _version(cached)
    return new is not None and old is not None and new < old


def _no_newer(value: Any, removed: int | None) -> bool:
    """Whether ``value`` is no newer than the object removed last under its name (its version ``removed``)."""
    new = _version(value)
    return new is not None and removed is not None and new <= removed


def _version(obj: Any) -> int | None:
    version = ((obj.get("metadata") or {}).get("resourceVersion") if isinstance(obj, dict) else None) or ""
    return int(version) if isinstance(version, str) and version.isdigit() else None


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
