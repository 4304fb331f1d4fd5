"""What the agent remembers across its own restarts and the node's reboots: a small JSON state file.

- ``raised``: the faults already raised in this boot (by detector, device and code), so a restarted
  agent re-reading /dev/kmsg from the start of the ring buffer, or re-polling NVML, raises none twice;
- ``kmsg_seq``: the last kernel record it acted on in this boot (records up to it are skipped);
- ``pending``: raised detections not yet delivered (their node write failed, or the agent stopped
  first), kept whole so a restarted agent delivers them: a fault is raised once and never lost to a
  restart while the API is unreachable. A Replace-class one is still delivered after a reboot (a
  reboot does not mend such a GPU); a Reboot-class one is not (the reboot it asked for happened);
- ``history``: Reboot-class faults of earlier boots, so the same fault again within the escalation
  window after a reboot asks for Replace.

The boot is named by ``/proc/sys/kernel/random/boot_id`` (a new UUID at every boot). The file is
written atomically (temporary file, then rename); one that cannot be read is named in the log and
set aside, never trusted half-read, and the agent starts with an empty memory.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dhc.agent.detection import Detection
from dhc.model import Action

MAX_HISTORY = 256


class State:
    def __init__(self, path: Path | None, boot_id: str, window_s: float, clock: Callable[[], float] = time.time):
        self.path, self.boot_id, self.window_s, self.clock = path, boot_id, window_s, clock
        self.raised: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        self.kmsg_seq: int | None = None
        self.pending: dict[str, dict[str, Any]] = {}  # key -> Detection.to_dict(), until delivered
        self.problem: str | None = None  # why an existing state file could not be used
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
            raised, history, seq, pending = data["raised"], data["history"], data["kmsg_seq"], data.get("pending", {})
            assert isinstance(raised, dict) and isinstance(history, list) and isinstance(data["boot_id"], str)
            assert isinstance(pending, dict), "pending: expected an object"
            for entry in pending.values():
                Detection.from_dict(entry)  # one that cannot be rebuilt makes the file unreadable
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
            self.problem = f"state file {path} unreadable ({type(exc).__name__}: {str(exc)[:80]}); starting afresh"
            return
        self.history = history[-MAX_HISTORY:]
        if data["boot_id"] == self.boot_id:
            self.raised, self.kmsg_seq, self.pending = raised, seq if isinstance(seq, int) else None, pending
            return
        self.pending = {key: entry for key, entry in pending.items()
                        if entry["finding"]["action"] == Action.REPLACE.value}
        self.raised = {key: raised.get(key) or {"ts": self.clock(), "action": Action.REPLACE.value}
                       for key in self.pending}
        self.history += [{"key": key, "boot_id": data["boot_id"], "ts": entry.get("ts", 0)}
                         for key, entry in raised.items() if entry.get("action") == Action.REBOOT.value]
        self.history = self.history[-MAX_HISTORY:]

    def seen(self, seq: int | None) -> bool:
        """Whether the kernel record ``seq`` of this boot was acted on before a restart."""
        return seq is not None and self.kmsg_seq is not None and seq <= self.kmsg_seq

    def admit(self, found: Detection) -> Detection | None:
        """The detection to raise (escalated where the rules say), or None when it was raised already."""
        if found.key in self.raised:
            return None
        now = self.clock()
        if found.action is Action.REBOOT and (earlier := self._before_reboot(found.key, now)) is not None:
            found = found.escalated(Action.REPLACE, f"the same fault was raised {now - earlier:.0f} s ago in an "
                                    f"earlier boot (escalation window {self.window_s:g} s): Replace")
        self.raised[found.key] = {"ts": now, "action": found.action.value, "reason": found.reason}
        self.pending[found.key] = found.to_dict()
        if found.seq is not None:
            self.kmsg_seq = max(found.seq, self.kmsg_seq or 0)
        self.save()
        return found

    def delivered(self, key: str) -> None:
        """The detection ``key`` is on the node (or there is no node to write): no longer pending."""
        if self.pending.pop(key, None) is not None:
            self.save()

    def undelivered(self) -> list[Detection]:
        """The raised detections still to be delivered, oldest first."""
        return [Detection.from_dict(entry) for entry in self.pending.values()]

    def _before_reboot(self, key: str, now: float) -> float | None:
        times = [h["ts"] for h in self.history if h.get("key") == key and h.get("boot_id") != self.boot_id
                 and now - h.get("ts", 0) <= self.window_s]
        return max(times) if times else None

    def save(self) -> None:
        if self.path is None:
            return
        data = {"boot_id": self.boot_id, "kmsg_seq": self.kmsg_seq, "raised": self.raised, "history": self.history,
                "pending": self.pending}
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps(data, separators=(",", ":")))
        os.chmod(temporary, 0o644)
        os.replace(temporary, self.path)


def boot_id(path: Path = Path("/proc/sys/kernel/random/boot_id")) -> str:
    """This boot's id; "unknown-boot" where the file cannot be read (then no escalation across boots)."""
    try:
        return path.read_text().strip() or "unknown-boot"
    except OSError:
        return "unknown-boot"
