"""A drift report as one self-contained HTML file: inline CSS and SVG, no script, no request
for anything else, so it opens on an offline laptop and can be attached to a ticket.

`drift_html(reports)` takes what `mlrt drift --format json` prints (one report, or one per
model of a server) and gives the page: per model its status, the window and reference row
counts, the sample-size rule; per feature and output, worst first, its PSI in its band's
colour, its status, the p-value, and the reference's and the window's shares of each bin
side by side. The dashboard (runtime/server/dashboard/static/) draws the same pictures.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Sequence
from typing import Any

#: PSI bands: under warn_psi none, to alert_psi moderate, past it significant.
BAND_COLOURS = {"none": "#2e7d32", "moderate": "#f9a825", "significant": "#c62828", "-": "#9e9e9e"}
STATUS_ORDER = {"alert": 0, "warn": 1, "ok": 2}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#212121}
h1{font-size:20px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 6px}
.meta,.note{color:#616161;font-size:12.5px} .note{max-width:900px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}
.ok{background:#2e7d32} .warn{background:#f9a825;color:#212121} .alert{background:#c62828}
table{border-collapse:collapse;margin-top:8px} th,td{padding:4px 10px;text-align:left;vertical-align:middle}
th{font-size:12px;color:#616161;border-bottom:1px solid #ddd} tr+tr td{border-top:1px solid #f0f0f0}
td.num{text-align:right;font-variant-numeric:tabular-nums} .psi{font-weight:600}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px;vertical-align:middle}
"""

_BAR_W, _BAR_GAP, _CHART_H = 9, 3, 46


def band(psi: float | None, thresholds: dict[str, Any]) -> str:
    if psi is None:
        return "-"
    if psi > thresholds["alert_psi"]:
        return "significant"
    return "moderate" if psi > thresholds["warn_psi"] else "none"


def worst_first(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        items,
        key=lambda f: (STATUS_ORDER.get(f["status"], 3), -(f["psi"] if f["psi"] is not None else -1.0)),
    )


def histogram_svg(reference: Sequence[float], current: Sequence[float], bins: Sequence[str]) -> str:
    """Reference (grey) and window (blue) shares of each bin, side by side; each pair of
    bars carries its bin and both shares as a tooltip."""
    top = max([*reference, *current, 1e-9])
    step = 2 * _BAR_W + _BAR_GAP
    width = max(step * len(reference), 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{_CHART_H}" '
        f'viewBox="0 0 {width} {_CHART_H}" role="img" aria-label="bin shares">'
    ]
    for i, (r, c) in enumerate(zip(reference, current, strict=False)):
        x = i * step
        hr, hc = _CHART_H * r / top, _CHART_H * c / top
        label = html.escape(f"{bins[i] if i < len(bins) else i}: reference {r:.1%}, window {c:.1%}")
        parts.append(
            f"<g><title>{label}</title>"
            f'<rect x="{x}" y="{_CHART_H - hr:.1f}" width="{_BAR_W}" height="{hr:.1f}" fill="#bdbdbd"/>'
            f'<rect x="{x + _BAR_W}" y="{_CHART_H - hc:.1f}" width="{_BAR_W}" height="{hc:.1f}" '
            f'fill="#1e88e5"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _rows(items: Sequence[dict[str, Any]], thresholds: dict[str, Any], section: str) -> list[str]:
    out = []
    for f in worst_first(items):
        psi, p = f["psi"], f.get("p_value")
        b = band(psi, thresholds)
        chart = (
            histogram_svg(f.get("reference_share", []), f.get("current_share", []), f.get("bins", []))
            if f.get("reference_share")
            else ""
        )
        out.append(
            f'<tr data-feature="{html.escape(f["name"])}" data-section="{section}" '
            f'data-status="{f["status"]}" data-psi="{"" if psi is None else psi}">'
            f"<td>{html.escape(f['name'])}</td><td>{section}</td><td>{html.escape(f['kind'])}</td>"
            f'<td class="num psi" style="color:{BAND_COLOURS[b]}">'
            f"{'-' if psi is None else f'{psi:.4f}'}</td><td>{b}</td>"
            f'<td><span class="badge {f["status"]}">{f["status"]}</span></td>'
            f'<td class="num">{"-" if p is None else f"{p:.2g}"}</td>'
            f'<td class="num">{f.get("rows", "-")}</td><td class="num">{f.get("missing", "-")}</td>'
            f"<td>{chart}</td></tr>"
        )
    return out


def _model(report: dict[str, Any]) -> str:
    t = report["thresholds"]
    name = report.get("model_name")
    title = f"{name} v{report.get('model_version')}" if name else str(report.get("source", "data"))
    rows, ref = report["window"]["rows"], report["reference"]["rows"]
    features, outputs = report.get("features", []), report.get("outputs", [])
    counts = {s: sum(f["status"] == s for f in (*features, *outputs)) for s in ("alert", "warn")}
    detail = ", ".join(f"{n} in {s}" for s, n in counts.items() if n) or "no feature drifting"
    guard = (
        f"only {rows} rows in the window: statuses need at least {t['min_rows']} (min_rows), so "
        "every feature reads ok until then."
        if rows < t["min_rows"]
        else f"{rows} rows, at least the {t['min_rows']} a status needs."
    )
    head = (
        f'<section class="model" data-model="{html.escape(title)}" data-status="{report["status"]}">'
        f'<h2>{html.escape(title)} <span class="badge {report["status"]}">{report["status"]}</span></h2>'
        f'<div class="meta">{rows:,} rows in the window against {ref:,} reference rows; {detail}. '
        f'<span class="guard">{guard}</span></div>'
    )
    table = [
        "<table><thead><tr><th>feature</th><th></th><th>kind</th><th>PSI</th><th>band</th>"
        "<th>status</th><th>p</th><th>rows</th><th>missing</th>"
        "<th>reference (grey) and window (blue) shares of each bin</th></tr></thead><tbody>",
        *_rows(features, t, "input"),
        *_rows(outputs, t, "output"),
        "</tbody></table>",
    ]
    n = len(features) + len(outputs)
    note = (
        f'<p class="note">PSI: population stability index against the reference; bands under '
        f"{t['warn_psi']} none, to {t['alert_psi']} moderate, past it significant. p: the G-test's "
        f"p-value of the difference. A feature is warn or alert only when its PSI is past a band and "
        f"the difference is significant after Holm's correction over all {n} features and outputs at "
        f"alpha {t['alpha']}, with at least {t['min_rows']} rows.</p></section>"
    )
    return head + "".join(table) + note


def drift_html(reports: Sequence[dict[str, Any]], title: str = "mlrt drift report") -> str:
    """The page for one or more drift reports (as `mlrt drift --format json` gives them)."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    legend = "".join(
        f'<span style="background:{colour}"></span>{name}'
        for name, colour in BAND_COLOURS.items()
        if name != "-"
    )
    body = "".join(_model(r) for r in reports)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f'<h1>{html.escape(title)}</h1><div class="meta">made {now} by mlrt; '
        f'<span class="legend">PSI bands:{legend}</span></div>{body}</body></html>\n'
    )
