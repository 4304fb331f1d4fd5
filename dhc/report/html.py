"""The per-node HTML report: one self-contained, autoescaped page (no scripts, no network).

A verdict banner with the instance and the action, the reasons, one row per check, and every
measurement drawn as an inline SVG bar against its limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from dhc import units
from dhc.errors import ReportError
from dhc.report.files import read_json, write_text_atomic

# Optional fields missing from older 1.x reports render as empty, never as an error.
TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True)
BAR_WIDTH = 220


def render_node(document: dict[str, Any]) -> str:
    return TEMPLATES.get_template("node.html.j2").render(**document, device_label=device_label, number=number, bar=bar)


def write_node(document: dict[str, Any], path: Path) -> Path:
    write_text_atomic(path, render_node(document))
    return path


def show(report_path: Path, out: Path | None = None) -> Path:
    """Render an existing report.json (``dhc report show``); beside it by default."""
    document = read_json(report_path)
    if not isinstance(document, dict) or not str(document.get("schema_version", "")).startswith("1."):
        raise ReportError(f"{report_path}: not a dhc report of schema 1.x")
    try:
        page = render_node(document)
    except (KeyError, TypeError, ValueError, AttributeError, jinja2.TemplateError) as exc:
        raise ReportError(f"{report_path}: a dhc report with missing or malformed fields ({exc})") from None
    path = out or report_path.with_suffix(".html")
    write_text_atomic(path, page)
    return path


def device_label(device: dict[str, Any] | None) -> str:
    if not device:
        return "node"
    if device["kind"] != "gpu":
        return device["kind"] if device["index"] == 0 else f"{device['kind']} {device['index']}"
    return f"GPU {device['index']}"


def number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def bar(measurement: dict[str, Any]) -> str:
    """An SVG bar of the measured value, with the limit as a dark tick (scaled to fit both)."""
    value, judgement = float(measurement["value"]), measurement["judgement"]
    limit = _limit_in_measured_unit(measurement)
    scale = max(abs(value), limit or 0.0, 1e-12) * 1.15
    width = max(1.0, abs(value) / scale * BAR_WIDTH)
    tick = "" if limit is None else (f'<line x1="{limit / scale * BAR_WIDTH:.1f}" x2="{limit / scale * BAR_WIDTH:.1f}" '
                                     f'y1="0" y2="16" stroke="#1f2328" stroke-width="2"/>')
    return (f'<svg class="bar" width="{BAR_WIDTH}" height="16" role="img" aria-label="{judgement}">'
            f'<rect x="0" y="3" width="{BAR_WIDTH}" height="10" fill="#eaeef2"/>'
            f'<rect class="value {judgement}" x="0" y="3" width="{width:.1f}" height="10"/>{tick}</svg>')


def _limit_in_measured_unit(measurement: dict[str, Any]) -> float | None:
    limit = measurement.get("limit")
    if not limit or limit.get("value") is None:
        return None
    try:
        return units.convert(float(limit["value"]), limit["unit"], measurement["unit"])
    except (KeyError, ValueError):
        return None
