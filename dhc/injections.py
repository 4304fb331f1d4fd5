"""The faults the self-test plants, derived from the catalogue (each check's entry declares its own).

Names only (no torch here): a check turns its planted fault into its engine's injection object.
"""

from __future__ import annotations

from dhc.thresholds.catalogue import CATALOGUE, PlantedFault

FAULTS: dict[str, tuple[str, PlantedFault]] = {  # name: (the check it is planted in, the fault)
    fault.name: (spec.id, fault) for spec in CATALOGUE.values() for fault in spec.faults}
INJECTIONS: dict[str, tuple[str, str]] = {name: (check, fault.describe()) for name, (check, fault) in FAULTS.items()}
MULTI_NODE = {name for name, (_, fault) in FAULTS.items() if fault.multi_node}

# A GEMM injection on a machine with fewer devices runs this many logical workers on its first
# device, so that there are siblings to outvote and a median to fall below.
LOGICAL_CPU_DEVICES = 3


def check_of(name: str) -> str:
    return FAULTS[name][0]
