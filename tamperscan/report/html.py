"""The report page: the static template filled with the summary and an inline SVG histogram.

Plain string building: every value from the data goes through `html.escape` (URIs, paths and
error texts are attacker-controlled in an archive scan); the template has ``{{name}}`` slots
filled in one pass, so inserted text is never scanned for slots again.
"""

from __future__ import annotations

import re
import shutil
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from tamperscan.operating_point import OperatingPoint
from tamperscan.report.data import Summary

ASSETS_DIR = "assets"
STATIC_FILES = ("report.css", "report.js", "placeholder.svg")
_SLOT = re.compile(r"\{\{(\w+)\}\}")


def _static(name: str) -> str:
    return resources.files("tamperscan.report").joinpath("static", name).read_text("utf-8")


def fill(template: str, values: dict[str, str]) -> str:
    """Replace ``{{name}}`` slots with already-escaped HTML, in a single pass."""
    return _SLOT.sub(lambda m: values[m.group(1)], template)


def histogram_svg(summary: Summary, width: int = 560, height: int = 170) -> str:
    """Stacked bars (flagged over not flagged) per score bin, the tamper threshold dashed; each
    bar carries its range so a click can filter the list."""
    pad_l, pad_b, pad_t = 34, 22, 8
    plot_w, plot_h = width - pad_l - 6, height - pad_b - pad_t
    counts = [f + c for f, c in zip(summary.hist_flagged, summary.hist_clean, strict=True)]
    peak = max(counts) or 1
    bins = len(counts)
    bar_w = plot_w / bins
    parts = [f'<svg id="histogram" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="histogram of image scores">']
    for tick in (0, peak):
        y = pad_t + plot_h - plot_h * tick / peak
        parts.append(f'<line class="grid" x1="{pad_l}" x2="{width - 6}" y1="{y:.1f}" '
                     f'y2="{y:.1f}"/><text class="axis" x="{pad_l - 4}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{tick}</text>')
    for i, (flagged, clean) in enumerate(zip(summary.hist_flagged, summary.hist_clean,
                                             strict=True)):
        lo, hi = summary.hist_edges[i], summary.hist_edges[i + 1]
        x = pad_l + i * bar_w + 1
        base = pad_t + plot_h
        h_clean, h_flag = plot_h * clean / peak, plot_h * flagged / peak
        title = escape(f"score {lo:.2f}–{hi:.2f}: {flagged + clean} images ({flagged} flagged)")
        parts.append(
            f'<g class="bin" data-lo="{lo}" data-hi="{hi}"><title>{title}</title>'
            f'<rect class="hit" x="{x:.1f}" y="{pad_t}" width="{bar_w - 2:.1f}" '
            f'height="{plot_h}"/>'
            f'<rect class="clean" x="{x:.1f}" y="{base - h_clean:.1f}" width="{bar_w - 2:.1f}" '
            f'height="{h_clean:.1f}"/>'
            f'<rect class="flagged" x="{x:.1f}" y="{base - h_clean - h_flag:.1f}" '
            f'width="{bar_w - 2:.1f}" height="{h_flag:.1f}"/></g>')
    for tick in (0, 0.25, 0.5, 0.75, 1):
        x = pad_l + plot_w * tick
        parts.append(f'<text class="axis" x="{x:.1f}" y="{height - 6}" '
                     f'text-anchor="middle">{tick:g}</text>')
    x = pad_l + plot_w * summary.threshold
    parts.append(f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{pad_t}" '
                 f'y2="{pad_t + plot_h}"><title>tamper threshold '
                 f'{summary.threshold:g}</title></line></svg>')
    return "".join(parts)


def _card(label: str, value: Any, cls: str = "") -> str:
    return (f'<div class="card {escape(cls)}"><div class="value">{escape(str(value))}</div>'
            f'<div class="label">{escape(label)}</div></div>')


def summary_cards(summary: Summary) -> str:
    cards = [_card("images", f"{summary.total:,}"),
             _card("ok", f"{summary.by_status.get('ok', 0):,}", "ok"),
             _card("errors", f"{summary.total - summary.by_status.get('ok', 0):,}", "error"),
             _card(f"flagged (score ≥ {summary.threshold:g})", f"{summary.flagged:,}",
                   "flagged"),
             _card("refined (CAM + segments)", f"{summary.refined:,}")]
    return "".join(cards)


def error_table(summary: Summary) -> str:
    if not summary.errors_by_kind:
        return '<p class="muted">No errors.</p>'
    rows = "".join(f"<tr><td>{escape(kind)}</td><td>{count:,}</td></tr>"
                   for kind, count in summary.errors_by_kind.items())
    return f'<table class="kinds"><tr><th>error kind</th><th>rows</th></tr>{rows}</table>'


def run_details(run: dict[str, Any], results_dir: str, top_k: int, generated: str) -> str:
    """Provenance line: which scan this is and its operating point, from summary.json when
    the scan wrote one."""
    point = run.get("operating_point")
    items = [("results", results_dir), ("source", run.get("source")),
             ("last run", run.get("run_id")), ("generated", generated),
             ("previews", f"top {top_k} flagged"),
             ("operating point", OperatingPoint.model_validate(point).summary() if point else
              ("threshold set by hand, not calibrated" if run else None))]
    return " · ".join(f'<span><b>{escape(k)}</b> {escape(str(v))}</span>'
                      for k, v in items if v not in (None, ""))


def write_page(out: Path, summary: Summary, run: dict[str, Any], results_dir: str, top_k: int,
               generated: str) -> Path:
    """``out/index.html`` plus the static assets it links (relative paths only)."""
    assets = out / ASSETS_DIR
    assets.mkdir(parents=True, exist_ok=True)
    for name in STATIC_FILES:
        with resources.as_file(resources.files("tamperscan.report") / "static" / name) as src:
            shutil.copyfile(src, assets / name)
    page = fill(_static("index.html"), {
        "title": escape(f"tamperscan report — {results_dir}"),
        "run": run_details(run, results_dir, top_k, generated),
        "cards": summary_cards(summary),
        "histogram": histogram_svg(summary),
        "errors": error_table(summary),
        "threshold": escape(f"{summary.threshold:g}"),
    })
    index = out / "index.html"
    index.write_text(page, "utf-8")
    return index
