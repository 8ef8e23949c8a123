"""What one load run measured, mergeable across generator processes, and its summary.

`statuses` counts every measured request by outcome: an HTTP status code ("200",
"503"), or "timeout" (no answer within the request timeout), "connection_error" (the
connection dropped with the request in flight) or "connect_error" (a connection could
not be opened). Latency percentiles are over 2xx answers only; error answers are
counted, not timed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .histogram import Histogram

__all__ = ["PERCENTILES", "RunResult"]

PERCENTILES = (50.0, 90.0, 99.0, 99.9)
# The percentile curve kept for plots: 0..99.999 spaced evenly in "nines".
CURVE = tuple(100.0 * (1 - 10 ** (-k / 10)) for k in range(0, 51))


@dataclass
class RunResult:
    mode: str  # "closed" or "open"
    duration_s: float  # the measured window (warmup excluded)
    latency: Histogram = field(default_factory=Histogram)  # ns, 2xx only, from the scheduled send time
    send_lag: Histogram = field(default_factory=Histogram)  # ns, actual - scheduled send (open loop)
    statuses: dict[str, int] = field(default_factory=dict)
    delayed: int = 0  # open loop: measured requests that waited for a free connection
    connections: int = 0  # most connections open at once
    offered_rps: float | None = None  # open loop: the target rate
    concurrency: int | None = None  # closed loop
    processes: int = 1

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return sum(n for k, n in self.statuses.items() if k.isdigit() and 200 <= int(k) < 300)

    @property
    def errors(self) -> dict[str, int]:
        return {k: n for k, n in sorted(self.statuses.items()) if not (k.isdigit() and 200 <= int(k) < 300)}

    def merge(self, other: RunResult) -> None:
        """Add another process's result of the same run (same window)."""
        self.latency.merge(other.latency)
        self.send_lag.merge(other.send_lag)
        for k, n in other.statuses.items():
            self.statuses[k] = self.statuses.get(k, 0) + n
        self.delayed += other.delayed
        self.connections += other.connections
        self.duration_s = max(self.duration_s, other.duration_s)
        if other.concurrency is not None:
            self.concurrency = (self.concurrency or 0) + other.concurrency
        self.processes += other.processes

    # -- transport between processes --------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "duration_s": self.duration_s,
            "latency": self.latency.to_dict(),
            "send_lag": self.send_lag.to_dict(),
            "statuses": dict(self.statuses),
            "delayed": self.delayed,
            "connections": self.connections,
            "offered_rps": self.offered_rps,
            "concurrency": self.concurrency,
            "processes": self.processes,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> RunResult:
        return cls(
            mode=d["mode"],
            duration_s=d["duration_s"],
            latency=Histogram.from_dict(d["latency"]),
            send_lag=Histogram.from_dict(d["send_lag"]),
            statuses=dict(d["statuses"]),
            delayed=d["delayed"],
            connections=d["connections"],
            offered_rps=d["offered_rps"],
            concurrency=d["concurrency"],
            processes=d["processes"],
        )

    # -- the summary everyone reads ---------------------------------------------------------

    def summary(self, batch_size: int = 1, curve: bool = True) -> dict[str, Any]:
        """The `--json` form of one run (docs/bench.md lists the fields)."""
        d = self.duration_s or 1.0
        lat = self.latency
        ps = lat.percentiles(PERCENTILES)
        out: dict[str, Any] = {
            "mode": self.mode,
            "duration_s": round(self.duration_s, 3),
            "offered_rps": self.offered_rps,
            "concurrency": self.concurrency,
            "processes": self.processes,
            "requests": self.requests,
            "ok": self.ok,
            "throughput_rps": round(self.requests / d, 2),
            "ok_rps": round(self.ok / d, 2),
            "rows_per_s": round(self.ok * batch_size / d, 2),
            "statuses": dict(sorted(self.statuses.items())),
            "errors": self.errors,
            "error_count": sum(self.errors.values()),
            "latency_ms": {
                "p50": ps[0] / 1e6,
                "p90": ps[1] / 1e6,
                "p99": ps[2] / 1e6,
                "p99.9": ps[3] / 1e6,
                "max": lat.max / 1e6,
                "min": lat.min / 1e6,
                "mean": lat.mean / 1e6,
            },
            "connections": self.connections,
        }
        if self.mode == "open":
            lag = self.send_lag.percentiles((50.0, 99.0))
            out["send_lag_ms"] = {"p50": lag[0] / 1e6, "p99": lag[1] / 1e6, "max": self.send_lag.max / 1e6}
            out["delayed_sends"] = self.delayed
        if curve:
            out["percentile_curve_ms"] = [
                [round(p, 4), v / 1e6] for p, v in zip(CURVE, lat.percentiles(CURVE), strict=True)
            ]
        return out
