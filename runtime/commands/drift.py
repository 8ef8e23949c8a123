"""Drift of a data set against a reference profile, or of a running server's models.

Every feature gets its PSI (population stability index: how far the data's shares of
the reference bins are from the reference's) and a status by the server's own rule:
a feature is `warn` (PSI past 0.1, moderate) or `alert` (PSI past 0.2, major)
only when the difference is also more than sampling noise, tested for all features
together so the whole model keeps a false-alarm rate of about alpha (0.01); and
never on fewer than min_rows (100) rows. Offline and online give the same answer on
the same rows (model outputs up to rounding: docs/drift.md). Exit status 1 with
--fail-on-drift when the model is in alert, 2 on bad input.

examples:
  mlrt drift ref.json today.parquet
  mlrt drift ref.json today.parquet --format json --fail-on-drift
  mlrt drift ref.json today.parquet --model churn.onnx   # the model's outputs too
  mlrt drift --url http://127.0.0.1:8000            # every monitored model of a server
  mlrt drift --url http://127.0.0.1:8000 --model churn
  mlrt drift ref.json --prometheus http://127.0.0.1:9090 --model churn --window 1h   # every replica
  mlrt drift ref.json today.parquet --format html -o report.html   # one file, opens offline
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

NAME = "drift"
HELP = "drift report of DATA against a reference profile, or of a running server (--url)"

LEGEND = (
    "PSI: population stability index against the reference (under 0.1 no change, 0.1-0.2 "
    "moderate, over 0.2 major). p: the G-test's p-value of the difference. A feature "
    "is warn/alert only when its PSI is past a band and the difference is significant after "
    "Holm's correction over all {n} features at alpha {alpha}, with at least {min_rows} rows."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile", nargs="?", metavar="REF.json", help="reference profile (mlrt profile)")
    parser.add_argument("data", nargs="?", metavar="DATA", help="Parquet, CSV or Arrow file to check")
    parser.add_argument("--url", help="ask a running server instead (e.g. http://127.0.0.1:8000)")
    parser.add_argument(
        "--prometheus", metavar="URL",
        help="with REF.json and --model: the fleet's drift from the bin counters a Prometheus scrapes "
        "from every replica, summed (e.g. http://127.0.0.1:9090)",
    )  # fmt: skip
    parser.add_argument("--version", help="with --prometheus: the model version (default: the only one)")
    parser.add_argument(
        "--window", metavar="DURATION",
        help="with --prometheus: the counts of the last DURATION (a PromQL range such as 1h); "
        "default: everything since each replica loaded the version",
    )  # fmt: skip
    parser.add_argument(
        "--model",
        help="with --url: this served model only (default: every monitored model); offline: the "
        "model (model.onnx, package.module:object) to run on DATA so its outputs are judged too",
    )
    parser.add_argument(
        "--format", choices=("table", "json", "html"), default="table",
        help="html: one self-contained page (inline CSS and SVG, no network), best with -o",
    )  # fmt: skip
    parser.add_argument("-o", "--output", metavar="OUT", help="write the report here instead of stdout")
    parser.add_argument(
        "--fail-on-drift", action="store_true", help="exit 1 when a model's status is alert"
    )
    parser.add_argument(
        "--config", metavar="mlrt.toml", help="take the [monitor] thresholds from the server's config file"
    )


def run(args: argparse.Namespace) -> int:
    from .._imports import cwd_importable

    cwd_importable()  # a package.module:object model in ./, as `mlrt serve` finds it
    from runtime.errors import MlrtError

    from . import failer

    fail = failer("drift")

    if args.prometheus:
        if not args.profile or args.data or args.url or not args.model:
            return fail("--prometheus URL takes REF.json and --model NAME (and no DATA or --url)")
        try:
            reports = [
                _from_prometheus(
                    args.prometheus, args.profile, args.model, args.version, args.window, args.config
                )
            ]
        except (OSError, ValueError, MlrtError) as exc:
            return fail(str(exc))
    elif args.url:
        if args.profile or args.data:
            return fail("give either REF.json DATA or --url, not both")
        try:
            reports = _from_server(args.url, args.model)
        except (OSError, ValueError, MlrtError) as exc:
            return fail(str(exc))
    else:
        if not args.profile or not args.data:
            return fail("give REF.json and DATA (or --url URL to ask a running server)")
        try:
            reports = [_offline(args.profile, args.data, args.config, args.model)]
        except (OSError, ValueError, MlrtError) as exc:
            return fail(str(exc))
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(render(reports, args.format))
        except OSError as exc:
            return fail(f"cannot write {args.output}: {exc}")
    elif args.format == "table":
        from rich.console import Console

        console = Console()
        for report in reports:
            _print_table(console, report)
    else:
        sys.stdout.write(render(reports, args.format))
    return 1 if args.fail_on_drift and any(r["status"] == "alert" for r in reports) else 0


def _offline(
    profile_path: str, data_path: str, config_file: str | None, model_spec: str | None
) -> dict[str, Any]:
    from runtime.config import MonitorConfig, build_server_config
    from runtime.data import read_table, to_columns
    from runtime.monitor.drift import offline_report
    from runtime.monitor.profile import Profile

    config = build_server_config(config_file=config_file).monitor if config_file else MonitorConfig()
    profile = Profile.load(profile_path)
    data: Any = read_table(data_path)
    if model_spec and data.num_rows:
        # The outputs the model gives on these rows, beside the rows: judged as the server
        # judges them, one family with the inputs. (No rows: offline_report says so.)
        from runtime.embedded import load
        from runtime.model_profile import model_frame

        columns = to_columns(data)
        missing = [f.name for f in profile.features if f.name not in columns]
        if missing:
            raise ValueError(f"the data lacks profiled column(s) {missing[:8]}")
        with load(model_spec) as model:
            frame = model_frame(model, {f.name: columns[f.name] for f in profile.features})
        data = {**frame.inputs, **frame.outputs}
    report = offline_report(profile, data, config)
    return {"source": str(data_path), **report}


def _from_server(url: str, model: str | None) -> list[dict[str, Any]]:
    import httpx

    base = url.rstrip("/")
    try:
        with httpx.Client(base_url=base, timeout=10.0) as client:
            if model:
                names = [model]
            else:
                stats = client.get("/v2/models/stats")
                _check(stats, base)
                names = sorted({m["name"] for m in stats.json().get("model_stats", [])})
            reports = []
            for name in names:
                r = client.get(f"/v2/models/{name}/drift")
                if r.status_code == 404 and not model:
                    continue  # served without a profile: nothing to report
                _check(r, base)
                reports.append({"source": f"{base} model {name}", **r.json()})
    except httpx.HTTPError as exc:
        raise OSError(f"cannot reach {base}: {exc}") from None
    if not reports:
        raise ValueError(f"{base} serves no model with a profile (nothing is monitored for drift)")
    return reports


def _from_prometheus(
    url: str, profile_path: str, model: str, version: str | None, window: str | None, config_file: str | None
) -> dict[str, Any]:
    """The fleet's report: every replica's bin counters summed by Prometheus, judged by
    runtime/monitor/fleet.py with the server's rule."""
    import re

    import httpx

    from runtime.config import MonitorConfig, build_server_config
    from runtime.monitor.fleet import fleet_report
    from runtime.monitor.profile import Profile

    config = build_server_config(config_file=config_file).monitor if config_file else MonitorConfig()
    profile = Profile.load(profile_path)
    if window is not None and not re.fullmatch(r"(\d+(ms|s|m|h|d|w|y))+", window):
        raise ValueError(f"--window {window!r} is not a PromQL duration such as 30m or 1h")
    base = url.rstrip("/")

    def query(expr: str) -> list[dict[str, Any]]:
        try:
            r = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=30.0)
        except httpx.HTTPError as exc:
            raise OSError(f"cannot reach Prometheus at {base}: {exc}") from None
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code != 200 or body.get("status") != "success":
            raise ValueError(f"Prometheus at {base} refused {expr!r}: {body.get('error', r.text[:200])}")
        return list(body["data"]["result"])

    if version is None:
        per_version = query(f'count by (version) (mlrt_feature_bin_total{{model="{model}"}})')
        found = {s["metric"].get("version") for s in per_version}
        if not found:
            raise ValueError(f"Prometheus has no bin counters of model {model!r}")
        if len(found) != 1:
            versions = sorted(v for v in found if v)
            raise ValueError(
                f"Prometheus has bin counters of model {model!r} for versions {versions}; "
                "name one with --version"
            )
        version = found.pop()
    counts: dict[str, dict[str, dict[str, float]]] = {}
    for section, family, label in (("features", "feature", "feature"), ("outputs", "prediction", "output")):
        series = f'mlrt_{family}_bin_total{{model="{model}",version="{version}"}}'
        expr = f"increase({series}[{window}])" if window else series
        by_name: dict[str, dict[str, float]] = {}
        for s in query(f"sum by ({label}, bin) ({expr})"):
            by_name.setdefault(s["metric"][label], {})[s["metric"]["bin"]] = float(s["value"][1])
        counts[section] = by_name
    report = fleet_report(
        profile, counts, config, {"window": window or "since load", "replicas_summed_by": base}
    )
    return {"source": f"{base} model {model} version {version}", "model_name": model,
            "model_version": version, **report}  # fmt: skip


def _check(response: Any, base: str) -> None:
    if response.status_code != 200:
        from . import server_error

        raise ValueError(f"{base}{response.request.url.path}: {server_error(response)}")


def render(reports: list[dict[str, Any]], fmt: str) -> str:
    import json

    if fmt == "json":
        doc: Any = reports[0] if len(reports) == 1 else reports
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "html":
        from runtime.server.dashboard.report import drift_html

        return drift_html(reports)
    from rich.console import Console

    console = Console(record=True, width=120, file=_Null())
    for report in reports:
        _print_table(console, report)
    return console.export_text()


class _Null:
    """A file that drops what is written: the console records, then exports as text."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def _print_table(console: Any, report: dict[str, Any]) -> None:
    from rich.table import Table

    style = {"ok": "green", "warn": "yellow", "alert": "bold red"}
    rows = report["window"]["rows"]
    ref = report["reference"]["rows"]
    columns = report["features"] + report["outputs"]
    name = report.get("model_name")
    title = f"drift of {name} v{report.get('model_version')}" if name else f"drift of {report['source']}"
    table = Table(title=f"{title}: {rows} rows against {ref} reference rows", title_justify="left")
    for col in ("feature", "kind", "PSI", "band", "p", "status", "missing"):
        # A name folds onto more lines rather than losing its end: probabilities[0] and [1]
        # cut to "probabilities[…" could not be told apart.
        table.add_column(
            col,
            justify="left" if col in ("feature", "kind", "band") else "right",
            overflow="fold" if col == "feature" else "ellipsis",
        )
    t = report["thresholds"]
    for section, items in (("", report["features"]), ("output ", report["outputs"])):
        for f in sorted(items, key=lambda f: -(f["psi"] if f["psi"] is not None else -1)):
            psi = f["psi"]
            band = (
                "-" if psi is None
                else "major" if psi > t["alert_psi"]
                else "moderate" if psi > t["warn_psi"]
                else "none"
            )  # fmt: skip
            p = f.get("p_value")
            table.add_row(
                f"{section}{f['name']}",
                f["kind"],
                "-" if psi is None else f"{psi:.4f}",
                band,
                "-" if p is None else f"{p:.2g}",
                f"[{style[f['status']]}]{f['status']}[/]",
                str(f.get("missing", "-")),
            )
    console.print(table)
    counts = {s: sum(f["status"] == s for f in columns) for s in ("alert", "warn")}
    detail = ", ".join(f"{n} in {s}" for s, n in counts.items() if n) or "no feature drifting"
    if rows < t["min_rows"]:
        # Not "no feature drifting": below min_rows nothing was judged, whatever the PSIs.
        detail = f"not judged: only {rows} rows, statuses need at least {t['min_rows']} (min_rows)"
    status = report["status"]
    console.print(f"status: [{style[status]}]{status}[/] ({detail})")
    console.print(
        LEGEND.format(n=len(columns), alpha=t["alpha"], min_rows=t["min_rows"]), style="dim"
    )
    console.print()
