"""Serve the bundled demo model and drive live, drifting traffic at it.

The model is a small MLP trained on the Wisconsin breast cancer data set (569
rows, 30 numeric features; bundled with scikit-learn, copied into mlrt), served
with its reference profile so every feature is watched for drift. The server
runs as a child process on --host/--port, exactly as `mlrt serve` would. The
traffic replays real rows, first as the model was trained, then more and more
from malignant cases only: watch PSI and the drift status rise. While it runs:

    curl http://127.0.0.1:8000/v2/models/demo/drift
    curl http://127.0.0.1:8000/metrics | grep mlrt_feature_psi
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..demo.traffic import Shift

NAME = "demo"
HELP = "serve a bundled model and drive live, drifting traffic at it"

# A short window so the demo shows drift within a minute.
DEMO_MONITOR = """\
[monitor]
window_s = {window}
slices = 10
tick_s = {tick}
min_rows = 200
"""


def schedule(duration_s: float | None, drift_after_s: float | None) -> tuple[Shift, float]:
    """When the traffic shifts, and the drift window, scaled to the run's length: the shift
    starts after a third of it (or --drift-after), is complete a third of the remainder
    later, and the window (at least 4 s) is short enough that the last part of the run,
    all shifted, fills it. Without --duration: shift after 20 s, over 20 s, 20 s window."""
    from ..demo.traffic import Shift

    start = drift_after_s
    if start is None:
        start = duration_s / 3 if duration_s else 20.0
    ramp = max(2.0, (duration_s - start) / 3) if duration_s else 20.0
    return Shift(start_s=start, end_s=start + ramp), float(max(4, round(ramp)))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent clients (default 4)")
    p.add_argument(
        "--drift-after",
        type=float,
        default=None,
        help="seconds of unshifted traffic before the shift starts (default: a third of "
        "--duration, or 20)",
    )


def _drift_summary(doc: dict[str, Any]) -> tuple[str, list[tuple[str, float, str]]]:
    # Outputs too, and the most severe first: the model's status can come from an output
    # (the scores move when the inputs do), and a line reading "drift alert" above three
    # features in warn left a newcomer asking where the alert was.
    feats = [
        (f"{prefix}{f['name']}", f["psi"], f["status"])
        for prefix, section in (("", "features"), ("output ", "outputs"))
        for f in doc.get(section, [])
        if f.get("psi") is not None
    ]
    severity = {"alert": 0, "warn": 1}
    feats.sort(key=lambda t: (severity.get(t[2], 2), -t[1]))
    return doc.get("status", "?"), feats


def run(args: argparse.Namespace) -> int:
    import httpx
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from .._child import ServerStartError, mlrt_command, running_server
    from ..demo.traffic import MODEL_PATH, PROFILE_PATH, drive

    console = Console()
    if args.concurrency < 1:
        console.print("mlrt demo: --concurrency must be >= 1")
        return 2
    shift, window = schedule(args.duration, args.drift_after)

    url = f"http://{args.host}:{args.port}"
    import socket

    with socket.socket() as probe:
        # Otherwise the readiness check could find another server on the port and drive it.
        if probe.connect_ex((args.host, args.port)) == 0:
            console.print(f"mlrt demo: {args.host}:{args.port} is already in use; pass --port")
            return 1
    tmp = tempfile.TemporaryDirectory(prefix="mlrt-demo-")
    config = Path(tmp.name) / "mlrt.toml"
    config.write_text(DEMO_MONITOR.format(window=window, tick=min(1.0, window / 10)))
    cmd = mlrt_command(
        "serve", f"demo={MODEL_PATH}", "--profile", str(PROFILE_PATH), "--config", str(config),
        "--host", args.host, "--port", str(args.port), "--log-level", "warning",
    )  # fmt: skip
    seen: set[str] = set()
    with contextlib.ExitStack() as stack:
        stack.callback(tmp.cleanup)
        try:
            stack.enter_context(running_server(cmd, f"{url}/v2/health/ready"))
        except ServerStartError as exc:
            console.print(f"mlrt demo: the demo server did not start: {exc}")
            return 1
        print(
            f"mlrt demo: serving model 'demo' at {url} with drift monitoring "
            f"(PSI per feature over a {window:.0f} s window); traffic shifts after "
            f"{shift.start_s:.0f} s (Ctrl-C to stop)",
            flush=True,
        )
        drift_client = httpx.AsyncClient(base_url=url, timeout=5.0)

        async def fetch_drift() -> tuple[str, list[tuple[str, float, str]]]:
            try:
                r = await drift_client.get("/v2/models/demo/drift")
                return _drift_summary(r.json())
            except (httpx.HTTPError, ValueError):
                return "?", []

        def line(s: dict[str, float], status: str, top: list[tuple[str, float, str]]) -> str:
            worst = ", ".join(f"{n} {p:.2f} {st}" for n, p, st in top[:3])
            return (
                f"{s['elapsed_s']:6.1f}s  {s['req_per_s']:.0f} req/s  p50 {s['p50_ms']:.2f} ms  "
                f"p99 {s['p99_ms']:.2f} ms  errors {s['errors']:.0f}  accuracy {s['accuracy']:.3f}  "
                f"shift {s['shift']:.0%}  drift {status}, PSI: {worst}"
            )

        def table(s: dict[str, float], status: str, top: list[tuple[str, float, str]]) -> Table:
            t = Table(title=f"mlrt demo: live traffic, drift status [bold]{status}[/bold]")
            for col in ("elapsed", "req/s", "p50 ms", "p99 ms", "errors", "accuracy", "shift"):
                t.add_column(col, justify="right")
            t.add_row(
                f"{s['elapsed_s']:.0f}s", f"{s['req_per_s']:.0f}", f"{s['p50_ms']:.2f}",
                f"{s['p99_ms']:.2f}", f"{s['errors']:.0f}", f"{s['accuracy']:.3f}", f"{s['shift']:.0%}",
            )  # fmt: skip
            t.add_section()
            colors = {"ok": "green", "warn": "yellow", "alert": "red"}
            for name, psi, st in top[:5]:
                t.add_row(name, f"PSI {psi:.3f}", f"[{colors.get(st, 'white')}]{st}[/]", "", "", "", "")
            return t

        peak = ["ok"]
        order = {"ok": 0, "warn": 1, "alert": 2}

        def saw(status: str, top: list[tuple[str, float, str]]) -> None:
            if order.get(status, -1) > order.get(peak[0], -1):
                peak[0] = status
            seen.update(name for name, _, st in top if st == "alert" and not name.startswith("output "))

        async def main() -> dict[str, float]:
            live = Live(console=console, refresh_per_second=4) if console.is_terminal else None

            async def report(s: dict[str, float]) -> None:
                status, top = await fetch_drift()
                saw(status, top)
                if live is not None:
                    live.update(table(s, status, top))
                else:
                    print(line(s, status, top), flush=True)

            if live is not None:
                live.start()
            try:
                return await drive(
                    url, duration_s=args.duration, concurrency=args.concurrency, report=report, shift=shift
                )
            finally:
                if live is not None:
                    live.stop()
                await drift_client.aclose()

        try:
            final = asyncio.run(main())
        except KeyboardInterrupt:
            return 0
        status, top = asyncio.run(_final_drift(url))
        saw(status, top)
        # One line a script can check: did the traffic shift, and did drift rise with it?
        print(f"done: {final['requests']:.0f} requests, {final['errors']:.0f} errors; "
              f"traffic shift reached {final['shift']:.0%}; drift status {status} "
              f"(highest {peak[0]}); features that reached alert: {len(seen)} "
              f"({', '.join(sorted(seen)[:5])}{'...' if len(seen) > 5 else ''})", flush=True)
        return 0 if final["errors"] == 0 else 1


async def _final_drift(url: str) -> tuple[str, list[tuple[str, float, str]]]:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=5.0) as c:
        try:
            return _drift_summary((await c.get("/v2/models/demo/drift")).json())
        except (httpx.HTTPError, ValueError):
            return "?", []
