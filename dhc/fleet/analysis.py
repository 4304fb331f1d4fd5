"""What a person reviewing a fleet wants first: counts, what failed most, distributions and outliers.

An outlier is a GPU or node whose value sits more than ``k`` robust deviations (median and MAD,
scaled by 1.4826) on the wrong side of its fleet's median, for the same instance type, check,
metric and unit, while still within its limit: ``Suspect``, worth a look before it fails.

Everything here works on the Fleet's number columns and integer codes (``dhc.fleet.load``), and
builds labelled rows only for what it returns, so 17 million measurements cost seconds, not minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dhc.fleet.load import Fleet
from dhc.fleet.read import finite_or_none

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
    keys = fleet.series[METRIC_KEYS].astype(str)  # a missing key (the readers refuse one) is a group, never NaN
    numbers = keys.groupby(METRIC_KEYS, sort=True, dropna=False).ngroup().to_numpy()
    return numbers, int(numbers.max()) + 1


@dataclass(frozen=True)
class Groups:
    """The values sorted once by metric group (file order kept within one): outliers and distributions share it."""

    numbers: np.ndarray  # per series: its group number, in sorted order of the group keys
    count: int  # how many groups
    order: np.ndarray  # rows of ``values`` by group; group g is order[bounds[g]:bounds[g + 1]]
    bounds: np.ndarray
    values: np.ndarray  # the values in that order (a group's values are one contiguous slice)
    series: np.ndarray  # their series codes, in that order


def grouped(fleet: Fleet) -> Groups:
    """The Fleet's values by group, sorted once and kept on the Fleet until ``release``."""
    cached = getattr(fleet, "_grouped", None)
    if cached is None:
        numbers, groups = metric_groups(fleet)
        code = fleet.values["series"].to_numpy()
        small = np.int16 if groups < 2**15 else np.int64  # numpy sorts 16-bit integers by radix: 17 million in 0.1 s
        row_group = numbers.astype(small)[code] if code.size else np.zeros(0, dtype=small)
        order = np.argsort(row_group, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(row_group, minlength=groups))])
        del row_group
        series = code[order].astype(np.int16) if len(fleet.series) < 2**15 else code[order]
        cached = Groups(numbers, groups, order, bounds, fleet.values["value"].to_numpy()[order], series)
        fleet._grouped = cached
    return cached


def release(fleet: Fleet) -> None:
    """Drop the sorted copy ``grouped`` keeps (some 18 bytes a measurement) once the analysis is done."""
    fleet._grouped = None


def outliers(fleet: Fleet, k: float = 3.5) -> pd.DataFrame:
    g = grouped(fleet)
    s = fleet.series
    judged = s["comparison"].isin(["min", "max"]).to_numpy()
    is_min = (s["comparison"] == "min").to_numpy()
    within = fleet.values["judgement"].cat.codes.to_numpy() == 0  # JUDGEMENTS[0] == "within"
    has_judged = np.zeros(g.count, dtype=bool)
    has_judged[g.numbers[judged]] = True
    hits, medians, zs = [], [], []
    for group in np.flatnonzero(has_judged):
        start, end = g.bounds[group], g.bounds[group + 1]
        x, code = g.values[start:end], g.series[start:end]
        keep = judged[code] & np.isfinite(x)
        if np.count_nonzero(keep) < MIN_GROUP:
            continue  # too few values to make a fleet to stand out from
        x, code, at = x[keep], code[keep], np.flatnonzero(keep) + start
        median = float(np.median(x))
        mad = float(np.median(np.abs(x - median)))
        if mad == 0:
            continue  # all (but a few) alike: no spread to measure against
        z = (x - median) / (mad * MAD_SCALE)
        hit = np.flatnonzero(np.where(is_min[code], -z, z) > k)
        rows = g.order[at[hit]]
        hit, rows = hit[within[rows]], rows[within[rows]]  # a value already outside its limit is a failure
        hits.append(rows)
        medians.append(np.full(hit.size, median))
        zs.append(z[hit])
    rows = np.concatenate(hits) if hits else np.zeros(0, dtype=np.int64)
    out = fleet.measurements(rows)
    out["median"] = np.concatenate(medians) if medians else np.zeros(0)
    out["robust_z"] = np.concatenate(zs) if zs else np.zeros(0)
    out["node_row"] = fleet.values["node"].to_numpy()[rows]
    return out.sort_values("robust_z", kind="stable")


def distributions(fleet: Fleet, bins: int = 20) -> list[dict[str, Any]]:
    """Per type, check, metric and unit: percentiles and a histogram of the finite values.

    NaN and infinite values (a broken device's reading) are left out of the figures and counted in
    ``non_finite``; their nodes still count everywhere else. Figures are computed on values scaled
    by the largest magnitude, so 1e308 next to -1e308 cannot overflow. The limit drawn is that of
    the group's first value (in file order) whose series has one.
    """
    g = grouped(fleet)
    s = fleet.series
    limited = s["limit"].notna().to_numpy()
    out = []
    for group in range(g.count):
        start, end = g.bounds[group], g.bounds[group + 1]
        group_values, code = g.values[start:end], g.series[start:end]
        finite = group_values[np.isfinite(group_values)]
        if not finite.size:
            continue  # nothing to draw; the nodes still count in the tables
        series = s.iloc[int(code[0])]
        with_limit = limited[code]
        first = s.iloc[int(code[np.argmax(with_limit)])] if with_limit.any() else None
        out.append({"instance_type": series["instance_type"], "check": series["check"], "metric": series["metric"],
                    "unit": series["unit"], "count": int(finite.size), "non_finite": int(group_values.size - finite.size),
                    **_figures(finite, bins),
                    "limit": finite_or_none(first["limit"]) if first is not None else None,
                    "limit_unit": _text_or_none(first["limit_unit"]) if first is not None else None,
                    "comparison": _text_or_none(first["comparison"]) if first is not None else None})
    return out


def _text_or_none(value: Any) -> str | None:
    """A text cell of the table, None where it is missing (pandas holds a missing text as NaN)."""
    return value if isinstance(value, str) else None


def _figures(values: np.ndarray, bins: int) -> dict[str, Any]:
    scale = float(np.abs(values).max()) or 1.0
    scaled = np.sort(values / scale)
    distinct = 1 + int(np.count_nonzero(np.diff(scaled)))
    counts_, edges = sorted_histogram(scaled, min(bins, distinct))
    p5, median, p95 = np.percentile(scaled, [5, 50, 95])
    return {"min": float(values.min()), "p5": float(p5) * scale, "median": float(median) * scale,
            "p95": float(p95) * scale, "max": float(values.max()),
            "histogram": {"counts": [int(c) for c in counts_],
                          "edges": [float(e) * scale for e in np.clip(edges, -1.0, 1.0)]}}


def _edges(ordered: np.ndarray, bins: int) -> np.ndarray:
    """np.histogram's edges; fewer bins where the values are too close for that many finite-sized bins
    (numpy refuses 3 bins over three adjacent doubles)."""
    try:
        return np.histogram_bin_edges(ordered, bins, range=(ordered[0], ordered[-1]))
    except ValueError:
        if bins <= 1:
            raise
        return _edges(ordered, bins - 1)


def sorted_histogram(ordered: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.histogram(ordered, bins)`` of sorted finite values, counted by a binary search per edge instead
    of a pass over every value: a bin holds ``edges[i] <= x < edges[i + 1]``, the last one its right edge too."""
    edges = _edges(ordered, bins)
    inner = np.searchsorted(ordered, edges[1:-1], side="left")
    return np.diff(inner, prepend=0, append=ordered.size), edges


def node_table(fleet: Fleet, suspects: pd.DataFrame) -> pd.DataFrame:
    """Every node, worst first: Failed, Incomplete, Passed; then most suspect values; then instance."""
    table = fleet.nodes.copy()
    per_node = np.bincount(suspects["node_row"].to_numpy(dtype=np.int64), minlength=len(table)) if len(suspects) else 0
    table["suspect"] = np.zeros(len(table), dtype=np.int64) + per_node
    rank = table["status"].map(_STATUS_ORDER).fillna(3)
    order = np.lexsort((table["instance_id"].astype(str).to_numpy(), -table["suspect"].to_numpy(), rank.to_numpy()))
    return table.iloc[order].reset_index(drop=True)
