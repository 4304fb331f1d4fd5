"""The remediation circuit breaker: how many nodes may be remediated at once, and how often one node may.

A mass event (a bad driver rollout marks half the fleet PendingReboot) must not drain half the fleet.
Two limits: nodes being remediated at once (a share of the nodes dhc watches, default 10%, or a fixed
number), and actions per node within a window (a node that keeps failing after each reboot is a
person's problem). When a node is refused for the first limit the breaker *trips*: from then on no
remediation starts, even after the ones in flight end, until a person resets it. The tripped state
lives on the nodes (an annotation on each node held back), so a restarted controller stays tripped;
removing that annotation from every node resets it. Pure decisions, no API calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class BreakerSettings:
    max_share: float = 0.10  # of the nodes dhc watches, remediated at once
    max_nodes: int | None = None  # a fixed number instead of the share
    max_actions_per_node: int = 2  # actions on one node ...
    window_s: float = 24 * 3600.0  # ... within this window

    def __post_init__(self) -> None:
        if not 0.0 < self.max_share <= 1.0:
            raise ValueError(f"remediation max share {self.max_share!r}: expected a fraction in (0, 1]")
        if self.max_nodes is not None and self.max_nodes < 1:
            raise ValueError(f"remediation max nodes {self.max_nodes!r}: expected a whole number >= 1")
        if self.max_actions_per_node < 1 or self.window_s <= 0:
            raise ValueError("remediation actions per node: expected >= 1 action within a window > 0 s")


@dataclass(frozen=True)
class Admission:
    admitted: bool
    trips: bool = False  # refused for the fleet-wide limit: the breaker trips
    reason: str = ""


def capacity(settings: BreakerSettings, watched: int) -> int:
    """Nodes that may be remediated at once: the fixed number, or the share of ``watched`` rounded down,
    one at least (so a small cluster still heals, one node at a time)."""
    if settings.max_nodes is not None:
        return settings.max_nodes
    return max(1, math.floor(settings.max_share * watched + 1e-9))


def admit(settings: BreakerSettings, tripped: str, in_flight: int, watched: int,
          actions_at: list[datetime], now: datetime) -> Admission:
    """May one more node start remediation? ``actions_at``: when this node was acted on before."""
    if tripped:
        return Admission(False, reason=f"the remediation circuit breaker is tripped ({tripped}); "
                                       "a person must reset it")
    recent = [t for t in actions_at if now - t < timedelta(seconds=settings.window_s)]
    if len(recent) >= settings.max_actions_per_node:
        return Admission(False, reason=f"{len(recent)} remediation actions on this node within "
                                       f"{settings.window_s:g} s (limit {settings.max_actions_per_node}): "
                                       "left for a person")
    limit = capacity(settings, watched)
    if in_flight >= limit:
        what = f"{settings.max_nodes} nodes" if settings.max_nodes is not None else \
            f"{settings.max_share:.0%} of {watched} nodes = {limit}"
        return Admission(False, trips=True, reason=f"{in_flight} nodes already being remediated, the limit is "
                                                   f"{what}: circuit breaker tripped, no more remediation "
                                                   "until a person resets it")
    return Admission(True)
