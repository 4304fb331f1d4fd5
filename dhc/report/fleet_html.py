"""The fleet page: one self-contained file with a small inline script to sort and filter the nodes.

The script is a file shipped with dhc (``templates/fleet.js``) and is allowed by its hash in the
page's Content-Security-Policy; nothing from a report is marked safe.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dhc.report.files import write_text_atomic
from dhc.report.html import TEMPLATES, assets, number

HIST_WIDTH, HIST_HEIGHT = 260, 60


def render_fleet(document: dict[str, Any], max_outliers: int = 200) -> str:
    return TEMPLATES.get_template("fleet.html.j2").render(**document, number=number, histogram=histogram,
                                                      shown_outliers=document["outliers"][:max_outliers],
                                                      page=assets("fleet.css", "fleet.js"))


def write_fleet(document: dict[str, Any], path: Path) -> Path:
    write_text_atomic(path, render_fleet(document))
    return path


def histogram(dist: dict[str, Any]) -> dict[str, Any] | None:
    """Where to draw one metric's bars, and its limit as a red line where it falls in range.

    Positions are computed on values scaled by the largest magnitude, so 1e308 next to -1e308
    cannot overflow; a distribution with a value that is no finite number is not drawn (None).
    """
    counts, edges = dist["histogram"]["counts"], dist["histogram"]["edges"]
    limit = dist["limit"] if dist["limit_unit"] in (None, dist["unit"]) else None
    points = [*edges, *([limit] if limit is not None else [])]
    if not counts or not all(isinstance(p, (int, float)) and math.isfinite(p) for p in points):
        return None
    magnitude = max(abs(p) for p in points) or 1.0
    low, high = min(points) / magnitude, max(points) / magnitude
    span = (high - low) or 1.0

    def x(value: float) -> float:
        return (value / magnitude - low) / span * HIST_WIDTH

    tallest = max(counts) or 1
    bars = []
    for count, left, right in zip(counts, edges[:-1], edges[1:], strict=True):
        h = count / tallest * (HIST_HEIGHT - 4)
        bars.append({"x": f"{x(left):.1f}", "y": f"{HIST_HEIGHT - h:.1f}", "w": f"{max(1.0, x(right) - x(left) - 1):.1f}",
                     "h": f"{h:.1f}", "title": f"{count} in [{left:.4g}, {right:.4g}]"})
    line = None if limit is None else {"x": f"{x(limit):.1f}", "title": f"limit {limit:.4g}"}
    return {"width": HIST_WIDTH, "height": HIST_HEIGHT, "bars": bars, "limit": line}
