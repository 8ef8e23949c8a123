"""Compare data against a reference profile: PSI and Jensen-Shannon per feature.

Status per feature from PSI: ok below 0.1, warn from 0.1 to 0.2 (moderate:
investigate), alert above 0.2 (significant: retrain).  Exit status 1 with
--fail-on-drift when any feature is in alert.

example:
  mlrt drift ref.json today.parquet --format json --fail-on-drift
"""

from __future__ import annotations

import argparse
import math
from typing import Any

NAME = "drift"
HELP = "offline drift report of DATA against a reference profile"

PSI_WARN = 0.1
PSI_ALERT = 0.2


def status(psi: float) -> str:
    if math.isnan(psi):
        return "no data"
    if psi > PSI_ALERT:
        return "alert"
    if psi >= PSI_WARN:
        return "warn"
    return "ok"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", metavar="REF.json", help="reference profile (mlrt profile)")
    parser.add_argument("data", metavar="DATA", help="Parquet, CSV or Arrow file to check")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("--fail-on-drift", action="store_true", help="exit 1 when a feature is in alert")
    parser.add_argument("--eps", type=float, default=1e-4, help="share used for empty bins in PSI (1e-4)")


def report(profile: Any, data: object, eps: float) -> dict[str, Any]:
    from runtime.monitor import Histogram

    hist = Histogram(profile, eps=eps)
    hist.update(data)
    psi, js = hist.psi(), hist.js()
    counts = hist.feature_counts()
    features = []
    for j, f in enumerate(hist.features):
        value = float(psi[j])
        features.append(
            {
                "name": f.name,
                "kind": f.kind,
                "psi": None if math.isnan(value) else value,
                "js": None if math.isnan(js[j]) else float(js[j]),
                "status": status(value),
                "reference_rows": int(sum(f.counts)),
                "current_rows": int(counts[f.name].sum()),
                "current_missing": int(counts[f.name][-1]),
            }
        )
    worst = max((f["status"] for f in features), key=_SEVERITY.__getitem__, default="ok")
    return {
        "status": worst,
        "thresholds": {"warn": PSI_WARN, "alert": PSI_ALERT},
        "reference_rows": profile.row_count,
        "current_rows": hist.rows,
        "features": features,
    }


_SEVERITY = {"no data": 0, "ok": 1, "warn": 2, "alert": 3}


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from runtime.monitor.profile import Profile
    from runtime.monitor.tabular import read_table

    try:
        profile = Profile.load(args.profile)
        result = report(profile, read_table(args.data), args.eps)
    except (OSError, ValueError) as exc:
        print(f"mlrt drift: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 1 if args.fail_on_drift and result["status"] == "alert" else 0


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    style = {"ok": "green", "warn": "yellow", "alert": "bold red", "no data": "dim"}
    table = Table(title=f"drift: {result['current_rows']} rows vs {result['reference_rows']} reference rows")
    for col in ("feature", "kind", "PSI", "JS", "status", "rows", "missing"):
        table.add_column(col, justify="left" if col in ("feature", "kind") else "right")
    for f in result["features"]:
        table.add_row(
            f["name"],
            f["kind"],
            "-" if f["psi"] is None else f"{f['psi']:.4f}",
            "-" if f["js"] is None else f"{f['js']:.4f}",
            f"[{style[f['status']]}]{f['status']}[/]",
            str(f["current_rows"]),
            str(f["current_missing"]),
        )
    Console().print(table)
