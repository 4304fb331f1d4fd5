"""The fleet page: one self-contained file with a small inline script to sort and filter the nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dhc.report.files import write_text_atomic
from dhc.report.html import TEMPLATES, number

HIST_WIDTH, HIST_HEIGHT = 260, 60


def render_fleet(document: dict[str, Any], max_outliers: int = 200) -> str:
    return TEMPLATES.get_template("fleet.html.j2").render(**document, number=number, histogram=histogram,
                                                      shown_outliers=document["outliers"][:max_outliers])


def write_fleet(document: dict[str, Any], path: Path) -> Path:
    write_text_atomic(path, render_fleet(document))
    return path


def histogram(dist: dict[str, Any]) -> str:
    """Inline SVG bars of one metric's values, with its limit as a red line where it falls in range."""
    counts, edges = dist["histogram"]["counts"], dist["histogram"]["edges"]
    low, high = edges[0], edges[-1]
    limit = dist["limit"] if dist["limit_unit"] in (None, dist["unit"]) else None
    if limit is not None:
        low, high = min(low, limit), max(high, limit)
    span = (high - low) or 1.0
    tallest = max(counts) or 1
    bars = []
    for count, left, right in zip(counts, edges[:-1], edges[1:], strict=True):
        x, w = (left - low) / span * HIST_WIDTH, max(1.0, (right - left) / span * HIST_WIDTH - 1)
        h = count / tallest * (HIST_HEIGHT - 4)
        bars.append(f'<rect x="{x:.1f}" y="{HIST_HEIGHT - h:.1f}" width="{w:.1f}" height="{h:.1f}" fill="#57606a">'
                    f'<title>{count} in [{left:.4g}, {right:.4g}]</title></rect>')
    if limit is not None:
        lx = (limit - low) / span * HIST_WIDTH
        bars.append(f'<line x1="{lx:.1f}" x2="{lx:.1f}" y1="0" y2="{HIST_HEIGHT}" stroke="#cf222e" stroke-width="2">'
                    f'<title>limit {limit:.4g}</title></line>')
    return (f'<svg width="{HIST_WIDTH}" height="{HIST_HEIGHT}" role="img" aria-label="distribution">'
            f'{"".join(bars)}</svg>')
