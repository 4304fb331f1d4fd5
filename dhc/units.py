"""Units of measurement: which exist, which quantity each measures, and conversion between them.

A limit in ``thresholds.yaml`` may be written in any unit of its metric's quantity (``TB/s`` for a
bandwidth the check measures in ``GB/s``); comparisons convert first.
"""

from __future__ import annotations

# unit -> (quantity, factor to the quantity's base unit)
UNITS: dict[str, tuple[str, float]] = {
    "count": ("count", 1.0),
    "MB/s": ("bandwidth", 1e6),
    "GB/s": ("bandwidth", 1e9),
    "TB/s": ("bandwidth", 1e12),
    "GFLOP/s": ("compute", 1e9),
    "TFLOP/s": ("compute", 1e12),
    "MiB": ("memory", 2.0**20),
    "GiB": ("memory", 2.0**30),
    "GB": ("memory", 1e9),
    "ms": ("time", 1e-3),
    "s": ("time", 1.0),
    "C": ("temperature", 1.0),
    "ratio": ("ratio", 1.0),
    "%": ("ratio", 0.01),
}


def quantity_of(unit: str) -> str:
    try:
        return UNITS[unit][0]
    except KeyError:
        raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(UNITS)}") from None


def units_of(quantity: str) -> list[str]:
    return [unit for unit, (q, _) in UNITS.items() if q == quantity]


def convert(value: float, from_unit: str, to_unit: str) -> float:
    (q_from, f_from), (q_to, f_to) = UNITS[from_unit], UNITS[to_unit]
    if q_from != q_to:
        raise ValueError(f"cannot convert {from_unit} ({q_from}) to {to_unit} ({q_to})")
    return value if from_unit == to_unit else value * f_from / f_to
