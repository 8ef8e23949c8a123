"""The live progress line (rich, on stderr) and the final tables of `mlrt bench`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .result import RunResult
from .runner import SweepResult

__all__ = ["Progress", "print_result", "print_sweep"]


class Progress:
    """One status line updated in place from the drivers' snapshots (no refresh thread: the
    generator's own loop calls `update`, so rendering never competes with sending)."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled and console.is_terminal
        self.label = ""
        self._live: Live | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self._live = Live(Text(""), console=self.console, auto_refresh=False, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def update(self, snap: dict[str, Any]) -> None:
        if self._live is None:
            return
        phase = "warmup" if snap["warmup"] else "measuring"
        rps = snap["recent"] / snap["interval_s"] if snap["interval_s"] else 0.0
        line = (
            f"{self.label}{phase} {snap['elapsed_s']:5.1f}/{snap['total_s']:.0f} s  "
            f"{rps:9,.0f} req/s  p50 {snap['p50_ms']:7.3f} ms  p99 {snap['p99_ms']:8.3f} ms  "
            f"errors {snap['errors']:,}  conns {snap['connections']}"
        )
        self._live.update(Text(line), refresh=True)

    def say(self, message: str) -> None:
        self.console.print(message)


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 100 else f"{x:,.1f}"


def print_result(console: Console, title: str, s: dict[str, Any]) -> None:
    """The table of one run, from RunResult.summary()."""
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("metric")
    t.add_column("value", justify="right")
    if s["mode"] == "open":
        t.add_row("offered rate", f"{s['offered_rps']:,.1f} req/s")
    else:
        t.add_row("concurrency", str(s["concurrency"]))
    t.add_row("duration", f"{s['duration_s']:.1f} s")
    t.add_row("requests", f"{s['requests']:,}")
    t.add_row("throughput (2xx)", f"{s['ok_rps']:,.1f} req/s  ({s['rows_per_s']:,.0f} rows/s)")
    t.add_row("errors", ", ".join(f"{k}: {n:,}" for k, n in s["errors"].items()) or "none")
    for k in ("p50", "p90", "p99", "p99.9", "max"):
        t.add_row(f"latency {k}", f"{_ms(s['latency_ms'][k])} ms")
    if s["mode"] == "open":
        lag = s["send_lag_ms"]
        t.add_row("send lag p50 / p99", f"{_ms(lag['p50'])} / {_ms(lag['p99'])} ms")
        t.add_row("sends that waited for a connection", f"{s['delayed_sends']:,}")
    t.add_row("connections", str(s["connections"]))
    console.print(t)


def print_sweep(console: Console, sw: SweepResult, batch_size: int) -> None:
    t = Table(title=f"sweep: p99 target {sw.slo_ms:g} ms", header_style="bold")
    for col in ("offered req/s", "achieved req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", ""):
        t.add_column(col, justify="right")
    for rate, r in sw.steps:
        s = r.summary(batch_size, curve=False)
        lat = s["latency_ms"]
        t.add_row(
            f"{rate:,.0f}",
            f"{s['ok_rps']:,.0f}",
            _ms(lat["p50"]),
            _ms(lat["p99"]),
            _ms(lat["p99.9"]),
            f"{s['error_count']:,}",
            "ok" if sw.passes(r) else "over",
        )
    console.print(t)
    if sw.sustainable_rps is None:
        console.print(f"no rate met the target; {sw.stopped_because}")
    else:
        console.print(
            f"highest sustainable rate: [bold]{sw.sustainable_rps:,.0f} req/s[/bold] "
            f"(p99 <= {sw.slo_ms:g} ms); stopped because {sw.stopped_because}"
        )


def sweep_summary(sw: SweepResult, batch_size: int) -> dict[str, Any]:
    return {
        "slo_ms": sw.slo_ms,
        "max_error_rate": sw.max_error_rate,
        "sustainable_rps": sw.sustainable_rps,
        "capacity_probe_rps": sw.capacity_rps,
        "stopped_because": sw.stopped_because,
        "steps": [dict(r.summary(batch_size), passed=sw.passes(r)) for _, r in sw.steps],
    }


def result_summary(r: RunResult, batch_size: int) -> dict[str, Any]:
    return r.summary(batch_size)
