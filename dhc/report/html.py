"""The per-node HTML report: one self-contained, autoescaped page (no scripts, no network).

A verdict banner with the instance and the action, the reasons, one row per check, and every
measurement drawn as an inline SVG bar against its limit.

Nothing from a report is ever marked safe: Python computes only numbers (``bar``), the templates
write every attribute and text through autoescape. Each page carries a Content-Security-Policy
that allows nothing but its own stylesheet (and, on the fleet page, its own script) by hash, so
even a markup bug could run no injected script and load nothing from the network.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from dhc import units
from dhc.errors import ReportError
from dhc.model import Measurement
from dhc.model.codec import ModelError
from dhc.model.report import Report
from dhc.report.files import read_json, write_text_atomic

TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True)
BAR_WIDTH = 220


@dataclass(frozen=True)
class PageAssets:
    """A page's own stylesheet and script (files shipped with dhc, not data) and the CSP allowing only them."""

    style: Markup
    script: Markup
    csp: str


def assets(style_file: str, script_file: str | None = None) -> PageAssets:
    folder = Path(__file__).parent / "templates"
    style = (folder / style_file).read_text(encoding="utf-8")
    script = (folder / script_file).read_text(encoding="utf-8") if script_file else ""
    policy = ["default-src 'none'", f"style-src '{_sha256(style)}'", "img-src data:", "base-uri 'none'",
              "form-action 'none'"]
    if script:
        policy.insert(2, f"script-src '{_sha256(script)}'")
    return PageAssets(Markup(style), Markup(script), "; ".join(policy))  # noqa: S704 (our files, not data)


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def render_node(document: Report | dict[str, Any]) -> str:
    """The page of a report; the template reads the typed model's attributes (a device's ``label``)."""
    typed = Report.of(document)
    sections = {f.name: getattr(typed, f.name) for f in fields(typed)}
    return TEMPLATES.get_template("node.html.j2").render(**sections, number=number, bar=bar, page=assets("node.css"))


def write_node(document: Report | dict[str, Any], path: Path) -> Path:
    write_text_atomic(path, render_node(document))
    return path


def show(report_path: Path, out: Path | None = None) -> Path:
    """Render an existing report.json (``dhc report show``); beside it by default."""
    document = read_json(report_path)
    if not isinstance(document, dict) or not str(document.get("schema_version", "")).startswith("1."):
        raise ReportError(f"{report_path}: not a dhc report of schema 1.x")
    try:
        page = render_node(document)
    except (ModelError, jinja2.TemplateError) as exc:
        raise ReportError(f"{report_path}: a dhc report with missing or malformed fields ({exc})") from None
    path = out or report_path.with_suffix(".html")
    write_text_atomic(path, page)
    return path


def number(value: float | None) -> str:
    if _finite(value) is None:
        return "—" if value is None else str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def bar(measurement: Measurement) -> dict[str, Any]:
    """Where to draw a measurement's bar and its limit's tick (the template draws them, escaped).

    A value that is no finite number (NaN, infinite) gets no bar.
    """
    value = _finite(measurement.value)
    limit = _finite(_limit_in_measured_unit(measurement))
    scale = max(abs(value or 0.0), abs(limit or 0.0), 1e-12) * 1.15
    return {"width": BAR_WIDTH, "judgement": measurement.judgement.value,
            "value": None if value is None else f"{max(1.0, abs(value) / scale * BAR_WIDTH):.1f}",
            "tick": None if limit is None else f"{abs(limit) / scale * BAR_WIDTH:.1f}"}


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if abs(value) < float("inf") else None  # NaN fails the comparison too


def _limit_in_measured_unit(measurement: Measurement) -> float | None:
    limit = measurement.limit
    if limit is None or _finite(limit.value) is None:
        return None
    try:
        return units.convert(float(limit.value or 0.0), limit.unit, measurement.unit)
    except (KeyError, ValueError, TypeError, OverflowError):
        return None
