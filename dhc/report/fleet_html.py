"""The fleet page: one self-contained file with a small inline script to sort and filter the nodes.

The script is a file shipped with dhc (``templates/fleet.js``) and is allowed by its hash in the
page's Content-Security-Policy; nothing from a report is marked safe.

The page stays light at any fleet size: aggregates (per type, per type and check, what failed
most, distributions) and at most ``max_outliers`` suspects and the ``max_nodes`` worst nodes; every
node is in the CSV/JSON written beside it, which the page links to (``downloads``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dhc.report.files import UNDECODABLE_ESCAPED, write_text_atomic
from dhc.report.html import TEMPLATES, assets, number

HIST_WIDTH, HIST_HEIGHT = 260, 60
MAX_NODES = 500  # rows of the node table: the worst first; a browser draws 500 rows in a blink
MAX_OUTLIERS = 200


def render_fleet(document: dict[str, Any], max_outliers: int = MAX_OUTLIERS, max_nodes: int = MAX_NODES,
                 downloads: list[dict[str, str]] | None = None) -> str:
    """The page; ``downloads``: ``{"label": "CSV", "href": "fleet.csv"}`` links to every node's row."""
    return TEMPLATES.get_template("fleet.html.j2").render(
        **({"checks_by_type": []} | document), number=number, histogram=histogram, shown_outliers=document["outliers"][:max_outliers],
        shown_nodes=document["nodes"][:max_nodes], suspect_nodes=sum(1 for n in document["nodes"] if n["suspect"]),
        downloads=downloads or [],
        page=assets("fleet.css", "fleet.js"))


def write_fleet(document: dict[str, Any], path: Path, files: dict[str, Path] | None = None) -> Path:
    """Write the page; ``files`` (``{"CSV": path}``) are linked from it, relative to the page's folder."""
    downloads = [{"label": label, "href": quote(os.path.relpath(file, path.parent))}
                 for label, file in (files or {}).items()]
    write_text_atomic(path, render_fleet(document, downloads=downloads), errors=UNDECODABLE_ESCAPED)
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
