"""What a person reviewing a fleet wants first: counts, what failed most, distributions, and outliers.

An outlier is a GPU or node whose value sits more than ``k`` robust deviations (median and MAD,
scaled by 1.4826) on the wrong side of its fleet's median, for the same instance type, check and
metric, while still within its limit: ``Suspect``, worth a look before it fails.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dhc.fleet.load import Fleet

MAD_SCALE = 1.4826  # makes the MAD comparable to a standard deviation for normal data
MIN_GROUP = 5  # fewer values than this make no fleet to stand out from


def counts(fleet: Fleet) -> dict[str, Any]:
    by_type = fleet.nodes.groupby(["instance_type", "status"]).size().unstack(fill_value=0)
    return {"by_status": {k: int(v) for k, v in fleet.nodes["status"].value_counts().items()},
            "by_type": {t: {s: int(n) for s, n in row.items() if n} for t, row in by_type.iterrows()}}


def failed_checks(fleet: Fleet) -> list[dict[str, Any]]:
    bad = fleet.checks[fleet.checks["status"].isin(["Failed", "Incomplete"])]
    if bad.empty:
        return []
    grouped = bad.groupby(["check", "status"]).agg(nodes=("instance_id", "nunique"), example=("reason", "first"))
    ranked = grouped.sort_values("nodes", ascending=False).reset_index()
    return [{"check": r.check, "status": r.status, "nodes": int(r.nodes), "example": str(r.example)[:300]}
            for r in ranked.itertuples()]


def outliers(fleet: Fleet, k: float = 3.5) -> pd.DataFrame:
    m = fleet.measurements
    judged = m[m["comparison"].isin(["min", "max"]) & np.isfinite(m["value"].astype(float))].copy()
    if judged.empty:
        return judged.assign(median=[], robust_z=[])
    keys = ["instance_type", "check", "metric"]
    grouped = judged.groupby(keys)["value"]
    judged["median"] = grouped.transform("median")
    judged["mad"] = (judged["value"] - judged["median"]).abs().groupby([judged[c] for c in keys]).transform("median")
    judged["size"] = grouped.transform("size")
    spread = (judged["mad"] * MAD_SCALE).replace(0, np.nan)
    judged["robust_z"] = (judged["value"] - judged["median"]) / spread
    worse = np.where(judged["comparison"] == "min", -judged["robust_z"], judged["robust_z"])
    flagged = judged[(worse > k) & (judged["judgement"] == "within") & (judged["size"] >= MIN_GROUP)]
    return flagged.drop(columns=["mad", "size"]).sort_values("robust_z")


def distributions(fleet: Fleet, bins: int = 20) -> list[dict[str, Any]]:
    """Per type, check, metric and unit: percentiles and a histogram of the finite values.

    NaN and infinite values (a broken device's reading) are left out of the figures and counted in
    ``non_finite``; their nodes still count everywhere else. Figures are computed on values scaled
    by the largest magnitude, so 1e308 next to -1e308 cannot overflow.
    """
    out = []
    for (itype, check, metric, unit), group in fleet.measurements.groupby(["instance_type", "check", "metric", "unit"]):
        values = group["value"].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if not finite.size:
            continue  # nothing to draw; the nodes still count in the tables
        limits = group["limit"].dropna()
        limit = float(limits.iloc[0]) if not limits.empty else None
        limit_unit = group["limit_unit"].dropna().iloc[0] if not limits.empty else None
        out.append({"instance_type": itype, "check": check, "metric": metric, "unit": unit, "count": int(finite.size),
                    "non_finite": int(values.size - finite.size), **_figures(finite, bins),
                    "limit": limit, "limit_unit": limit_unit,
                    "comparison": group["comparison"].dropna().iloc[0] if not limits.empty else None})
    return out


def _figures(values: np.ndarray, bins: int) -> dict[str, Any]:
    scale = float(np.abs(values).max()) or 1.0
    scaled = values / scale
    counts_, edges = np.histogram(scaled, bins=min(bins, max(1, len(np.unique(scaled)))))
    return {"min": float(values.min()), "p5": float(np.percentile(scaled, 5)) * scale,
            "median": float(np.median(scaled)) * scale, "p95": float(np.percentile(scaled, 95)) * scale,
            "max": float(values.max()),
            "histogram": {"counts": [int(c) for c in counts_],
                          "edges": [float(e) * scale for e in np.clip(edges, -1.0, 1.0)]}}


def node_table(fleet: Fleet, suspects: pd.DataFrame) -> pd.DataFrame:
    per_node = suspects.groupby("instance_id").size() if not suspects.empty else pd.Series(dtype=int)
    table = fleet.nodes.copy()
    table["suspect"] = table["instance_id"].map(per_node).fillna(0).astype(int)
    return table.sort_values(["status", "instance_id"], key=lambda s: s.map(_STATUS_ORDER) if s.name == "status" else s)


_STATUS_ORDER = {"Failed": 0, "Incomplete": 1, "Passed": 2}
