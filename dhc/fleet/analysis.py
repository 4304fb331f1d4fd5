"""What a person reviewing a fleet wants first: counts, what failed most, distributions and outliers.

An outlier is a GPU or node whose value sits more than ``k`` robust deviations (median and MAD,
scaled by 1.4826) on the wrong side of its fleet's median, for the same instance type, check,
metric and unit, while still within its limit: ``Suspect``, worth a look before it fails.

Everything here works on the Fleet's number columns and integer codes (``dhc.fleet.load``), and
builds labelled rows only for what it returns, so 17 million measurements cost seconds, not minutes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dhc.fleet.load import Fleet

MAD_SCALE = 1.4826  # makes the MAD comparable to a standard deviation for normal data
MIN_GROUP = 5  # fewer values than this make no fleet to stand out from
METRIC_KEYS = ["instance_type", "check", "metric", "unit"]
_STATUS_ORDER = {"Failed": 0, "Incomplete": 1, "Passed": 2}


def counts(fleet: Fleet) -> dict[str, Any]:
    by_type = fleet.nodes.groupby(["instance_type", "status"]).size().unstack(fill_value=0)
    return {"by_status": {k: int(v) for k, v in fleet.nodes["status"].value_counts().items()},
            "by_type": {t: {s: int(n) for s, n in row.items() if n} for t, row in by_type.iterrows()}}


def checks_by_type(fleet: Fleet) -> list[dict[str, Any]]:
    """Per instance type and check: how many reports it Passed, Failed, left Incomplete or Skipped."""
    return [{k: (int(v) if isinstance(v, (int, np.integer)) else str(v)) for k, v in row.items()}
            for row in fleet.checks.to_dict("records")]


def failed_checks(fleet: Fleet) -> list[dict[str, Any]]:
    bad = fleet.problems
    if bad.empty:
        return []
    grouped = bad.groupby(["check", "status"]).agg(nodes=("instance_id", "nunique"), example=("reason", "first"))
    ranked = grouped.sort_values("nodes", ascending=False, kind="stable").reset_index()
    return [{"check": r.check, "status": r.status, "nodes": int(r.nodes), "example": str(r.example)[:300]}
            for r in ranked.itertuples()]


def metric_groups(fleet: Fleet) -> tuple[np.ndarray, int]:
    """For each series, its (type, check, metric, unit) group number in sorted order; and how many groups."""
    if fleet.series.empty:
        return np.zeros(0, dtype=np.int64), 0
    numbers = fleet.series[METRIC_KEYS].astype(str).groupby(METRIC_KEYS, sort=True).ngroup().to_numpy()
    return numbers, int(numbers.max()) + 1


def grouped(fleet: Fleet) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Series' group numbers, the group count, the rows sorted by group (file order kept within one), and
    where each group starts in that order. Sorted once per Fleet: outliers and distributions share it."""
    cached = getattr(fleet, "_grouped", None)
    if cached is None:
        numbers, groups = metric_groups(fleet)
        code = fleet.values["series"].to_numpy()
        row_group = numbers[code] if code.size else np.zeros(0, dtype=np.int64)
        if groups < 2**15:  # numpy sorts 16-bit integers by radix: 17 million rows in a fraction of a second
            row_group = row_group.astype(np.int16)
        order = np.argsort(row_group, kind="stable")
        cached = numbers, groups, order, np.searchsorted(row_group[order], np.arange(groups + 1))
        fleet._grouped = cached
    return cached


def outliers(fleet: Fleet, k: float = 3.5) -> pd.DataFrame:
    numbers, groups, order, bounds = grouped(fleet)
    s, v = fleet.series, fleet.values
    code, values = v["series"].to_numpy(), v["value"].to_numpy()
    judged = s["comparison"].isin(["min", "max"]).to_numpy()
    is_min = (s["comparison"] == "min").to_numpy()
    within = v["judgement"].cat.codes.to_numpy() == 0  # JUDGEMENTS[0] == "within"
    has_judged = np.zeros(groups, dtype=bool)
    has_judged[numbers[judged]] = True
    hits, medians, zs = [], [], []
    for g in np.flatnonzero(has_judged):
        rows = order[bounds[g]:bounds[g + 1]]
        x = values[rows]
        keep = judged[code[rows]] & np.isfinite(x)
        if np.count_nonzero(keep) < MIN_GROUP:
            continue  # too few values to make a fleet to stand out from
        rows, x = rows[keep], x[keep]
        median = float(np.median(x))
        mad = float(np.median(np.abs(x - median)))
        if mad == 0:
            continue  # all (but a few) alike: no spread to measure against
        z = (x - median) / (mad * MAD_SCALE)
        hit = (np.where(is_min[code[rows]], -z, z) > k) & within[rows]
        hits.append(rows[hit])
        medians.append(np.full(np.count_nonzero(hit), median))
        zs.append(z[hit])
    rows = np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)
    out = fleet.measurements(rows)
    out["median"] = np.concatenate(medians) if medians else np.zeros(0)
    out["robust_z"] = np.concatenate(zs) if zs else np.zeros(0)
    out["node_row"] = v["node"].to_numpy()[rows]
    return out.sort_values("robust_z", kind="stable")


def distributions(fleet: Fleet, bins: int = 20) -> list[dict[str, Any]]:
    """Per type, check, metric and unit: percentiles and a histogram of the finite values.

    NaN and infinite values (a broken device's reading) are left out of the figures and counted in
    ``non_finite``; their nodes still count everywhere else. Figures are computed on values scaled
    by the largest magnitude, so 1e308 next to -1e308 cannot overflow.
    """
    numbers, groups, order, bounds = grouped(fleet)
    code, values = fleet.values["series"].to_numpy(), fleet.values["value"].to_numpy()
    s = fleet.series
    first_seen = pd.Series(code).drop_duplicates()  # each series' first row, in file order
    limited = first_seen[s["limit"].notna().to_numpy()[first_seen.to_numpy()]] if len(s) else first_seen
    first_limit: dict[int, int] = {}  # group -> the series with a limit seen first in it
    for c in limited.to_numpy().tolist():
        first_limit.setdefault(int(numbers[c]), c)
    out = []
    for g in range(groups):
        rows = order[bounds[g]:bounds[g + 1]]
        group_values = values[rows]
        finite = group_values[np.isfinite(group_values)]
        if not finite.size:
            continue  # nothing to draw; the nodes still count in the tables
        series = s.iloc[code[rows[0]]]
        first = s.iloc[first_limit[g]] if g in first_limit else None
        out.append({"instance_type": series["instance_type"], "check": series["check"], "metric": series["metric"],
                    "unit": series["unit"], "count": int(finite.size), "non_finite": int(group_values.size - finite.size),
                    **_figures(finite, bins),
                    "limit": float(first["limit"]) if first is not None else None,
                    "limit_unit": first["limit_unit"] if first is not None else None,
                    "comparison": first["comparison"] if first is not None else None})
    return out


def _figures(values: np.ndarray, bins: int) -> dict[str, Any]:
    scale = float(np.abs(values).max()) or 1.0
    scaled = np.sort(values / scale)
    distinct = 1 + int(np.count_nonzero(np.diff(scaled)))
    counts_, edges = np.histogram(scaled, bins=min(bins, distinct))
    p5, median, p95 = np.percentile(scaled, [5, 50, 95])
    return {"min": float(values.min()), "p5": float(p5) * scale, "median": float(median) * scale,
            "p95": float(p95) * scale, "max": float(values.max()),
            "histogram": {"counts": [int(c) for c in counts_],
                          "edges": [float(e) * scale for e in np.clip(edges, -1.0, 1.0)]}}


def node_table(fleet: Fleet, suspects: pd.DataFrame) -> pd.DataFrame:
    """Every node, worst first: Failed, Incomplete, Passed; then most suspect values; then instance."""
    table = fleet.nodes.copy()
    per_node = np.bincount(suspects["node_row"].to_numpy(dtype=np.int64), minlength=len(table)) if len(suspects) else 0
    table["suspect"] = np.zeros(len(table), dtype=np.int64) + per_node
    rank = table["status"].map(_STATUS_ORDER).fillna(3)
    order = np.lexsort((table["instance_id"].astype(str).to_numpy(), -table["suspect"].to_numpy(), rank.to_numpy()))
    return table.iloc[order].reset_index(drop=True)
