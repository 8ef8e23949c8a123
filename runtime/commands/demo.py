"""Serve the bundled demo model and drive live traffic at it.

The model is a small MLP trained on the Wisconsin breast cancer data set (569
rows, 30 numeric features; bundled with scikit-learn, copied into mlrt). The
server runs as a child process on --host/--port, exactly as `mlrt serve` would;
while it runs you can query it yourself, e.g.

    curl http://127.0.0.1:8000/v2/models/demo
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time

NAME = "demo"
HELP = "serve a bundled model and drive live traffic at it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    p.add_argument("--concurrency", type=int, default=4, help="concurrent clients (default 4)")


def _wait_ready(proc: subprocess.Popen[bytes], url: str, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"the demo server exited with code {proc.returncode}:\n{err}")
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the demo server did not become ready within {timeout_s:.0f} s")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from ..demo.traffic import MODEL_PATH, drive

    console = Console()
    if args.concurrency < 1:
        console.print("mlrt demo: --concurrency must be >= 1")
        return 2
    url = f"http://{args.host}:{args.port}"
    cmd = [sys.executable, "-m", "runtime", "serve", f"demo={MODEL_PATH}",
           "--host", args.host, "--port", str(args.port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=dict(os.environ))
    try:
        try:
            _wait_ready(proc, url)
        except RuntimeError as exc:
            console.print(f"mlrt demo: {exc}")
            return 1
        console.print(f"mlrt demo: serving model 'demo' at {url} (Ctrl-C to stop)")

        def table(s: dict[str, float]) -> Table:
            t = Table(title="mlrt demo: live traffic", show_header=True)
            for col in ("elapsed", "requests", "req/s", "p50 ms", "p99 ms", "errors", "accuracy"):
                t.add_column(col, justify="right")
            t.add_row(
                f"{s['elapsed_s']:.0f}s", f"{s['requests']:.0f}", f"{s['req_per_s']:.0f}",
                f"{s['p50_ms']:.2f}", f"{s['p99_ms']:.2f}", f"{s['errors']:.0f}",
                f"{s['accuracy']:.3f}",
            )
            return t

        def line(s: dict[str, float]) -> str:
            return (
                f"{s['elapsed_s']:6.1f}s  requests {s['requests']:.0f}  {s['req_per_s']:.0f} req/s  "
                f"p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  errors {s['errors']:.0f}  "
                f"accuracy {s['accuracy']:.3f}"
            )

        try:
            if console.is_terminal:
                with Live(console=console, refresh_per_second=4) as live:
                    final = asyncio.run(drive(url, duration_s=args.duration,
                                              concurrency=args.concurrency,
                                              report=lambda s: live.update(table(s))))
            else:
                final = asyncio.run(drive(url, duration_s=args.duration,
                                          concurrency=args.concurrency,
                                          report=lambda s: print(line(s), flush=True)))
        except KeyboardInterrupt:
            return 0
        print("done: " + line(final), flush=True)
        return 0 if final["errors"] == 0 else 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
