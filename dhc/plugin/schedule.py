"""How dhc's checks share a machine under pytest-xdist: the checks that drive the devices take turns.

GEMM, memtest, DCGM and the collectives each load every GPU (or every core on the ``cpu`` type).
Run side by side on ``-n`` workers they would measure the contention dhc caused itself, and a
throughput floor could fail a healthy GPU with Replace. So the xdist controller schedules with
``DeviceExclusive``: all device checks form one work unit that a single worker runs one after
another; the read-only check of the network (EFA) spreads over the other workers. Inventory reads
the devices idle (its ``temperature_c`` limit is an idle one), so it is in the device group too and
runs first (``inventory_first``), before any check heats the GPUs, with or without ``-n``.

This uses xdist's public scheduler hook, not ``xdist_group`` marks: ``--dist loadgroup`` rewrites
private node ids, which pytest 9 no longer reads. A node id the plan does not know is treated as
a device check (serialised), never as free to run alongside one. ``--dist each`` runs every check
on every worker at once and is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

DEVICE_GROUP = "dhc-devices"
INVENTORY = "stress.inventory"
DEVICE_CHECKS = frozenset({INVENTORY, "stress.gemm", "stress.memtest", "stress.dcgm", "connectivity.allreduce",
                           "connectivity.pairwise"})


def inventory_first(items: list[Any], check_of: Callable[[Any], str]) -> list[Any]:
    """``items`` with the inventory checks moved ahead of the rest, which keep their order."""
    return sorted(items, key=lambda item: check_of(item) != INVENTORY)


def require_exclusive_devices(config: pytest.Config) -> None:
    """``--dist each`` would run every device check on every worker at the same time: refuse it."""
    workers = getattr(config.option, "numprocesses", None)
    dist = getattr(config.option, "dist", "no")
    if workers and dist == "each":
        raise pytest.UsageError(f"-n {workers} with --dist each would run dhc's checks that use the devices "
                                f"({', '.join(sorted(DEVICE_CHECKS))}) on every worker at once; use --dist load")


def scope_of(nodeid: str, check: str | None) -> str:
    """The work unit a check belongs to: the one device group, or a unit of its own."""
    return DEVICE_GROUP if check is None or check in DEVICE_CHECKS else nodeid


def device_exclusive(config: pytest.Config, log: Any, check_of: Callable[[str], str | None]) -> Any:
    """An xdist scheduler that keeps every device check in one work unit, run by one worker in turn."""
    from xdist.scheduler import LoadScopeScheduling

    class DeviceExclusive(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid, check_of(nodeid))

    return DeviceExclusive(config, log)
