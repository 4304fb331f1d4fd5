"""Propose limits from healthy reports: the median times a safety factor, with the evidence as source.

Healthy means no failed check. Only metrics judged by a minimum or maximum are proposed (counts
that must equal the type's inventory are not measured quantities to calibrate).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import yaml

from dhc.fleet.load import Fleet
from dhc.thresholds import CATALOGUE


def propose(fleet: Fleet, instance_type: str, factor: float) -> list[dict[str, Any]]:
    if not 0 < factor <= 1:
        raise ValueError(f"--factor: expected a number in (0, 1], got {factor}")
    healthy = ((fleet.nodes["instance_type"] == instance_type) & (fleet.nodes["failed_checks"] == 0)).to_numpy()
    v = fleet.values
    of_type = (fleet.series["instance_type"] == instance_type).to_numpy()
    node, code, values = v["node"].to_numpy(), v["series"].to_numpy(), v["value"].to_numpy()
    rows = np.flatnonzero(healthy[node] & of_type[code] & np.isfinite(values)) if len(v) else np.zeros(0, dtype=int)
    labels = fleet.series[["check", "metric", "unit"]].astype(str).iloc[code[rows]].reset_index(drop=True)
    picked = labels.assign(value=values[rows], instance_id=fleet.nodes["instance_id"].to_numpy()[node[rows]])  # a NaN or infinity is no evidence for a limit
    proposals = []
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    for (check, metric, unit), group in picked.groupby(["check", "metric", "unit"]):
        spec = CATALOGUE.get(check, None)
        metric_spec = spec.metrics.get(metric) if spec else None
        if metric_spec is None or metric_spec.comparison.value not in ("min", "max"):
            continue
        median = float(group["value"].median())
        comparison = metric_spec.comparison.value
        value = median * factor if comparison == "min" else median / factor
        nodes = group["instance_id"].nunique()
        proposals.append({"check": check, "metric": metric, "comparison": comparison, "value": round(value, 4),
                          "unit": unit, "source": f"dhc calibrate {day}: median {median:.4g} {unit} "
                                                  f"{'x' if comparison == 'min' else '/'} {factor} over "
                                                  f"{len(group)} samples from {nodes} healthy nodes"})
    return proposals


def yaml_fragment(instance_type: str, proposals: list[dict[str, Any]]) -> str:
    checks: dict[str, Any] = {}
    for p in proposals:
        limit = {p["comparison"]: p["value"], "unit": p["unit"], "source": p["source"]}
        checks.setdefault(p["check"], {"limits": {}})["limits"][p["metric"]] = limit
    fragment = {"instance_types": {instance_type: {"checks": checks}}}
    return ("# Proposed by `dhc thresholds calibrate`; review, then merge into thresholds.yaml\n"
            + yaml.safe_dump(fragment, sort_keys=True, width=200))
