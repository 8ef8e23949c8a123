"""What the open- and closed-loop drivers share: the run's spec, the measurement window,
recording, request timeouts, progress ticks and opening connections.

All times are `time.perf_counter_ns()` (CLOCK_MONOTONIC on Linux, so the generator
processes of one run agree on the start time). A request belongs to the measurement
when the time it was *due* (its scheduled time in the open loop, its send time in the
closed loop) lies in [start + warmup, start + warmup + duration).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .connection import Connection
from .result import RunResult

__all__ = ["Driver", "LoadSpec", "ProgressFn"]

TICK_S = 0.1  # timeouts are checked this often
PROGRESS_EVERY = 5  # ticks between progress reports
RECONNECT_DELAY_S = 0.1

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class LoadSpec:
    """One run of one generator process. `rate` is the run's *total* rate; process
    `process_index` of `processes` sends its share (see open.py)."""

    host: str
    port: int
    requests: tuple[bytes, ...]
    duration_s: float
    warmup_s: float = 0.0
    concurrency: int | None = None  # closed loop: connections of this process
    rate: float | None = None  # open loop: requests/s of the whole run
    arrivals: str = "constant"  # or "poisson"
    connections: int = 8  # open loop: connections opened up front
    max_connections: int = 512  # open loop: cap of this process's pool
    timeout_s: float = 30.0
    start_ns: int | None = None  # a common start time for several processes
    process_index: int = 0
    processes: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.requests:
            raise ValueError("no requests to send")
        if self.duration_s <= 0:
            raise ValueError(f"duration must be > 0 s, got {self.duration_s}")
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError("give exactly one of concurrency (closed loop) and rate (open loop)")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be > 0 requests/s, got {self.rate}")
        if self.arrivals not in ("constant", "poisson"):
            raise ValueError(f"arrivals must be 'constant' or 'poisson', got {self.arrivals!r}")


class Driver:
    """Base of ClosedLoop and OpenLoop; subclasses implement `_begin`, `_finished`,
    `on_response` and `on_lost` (the Connection's owner interface)."""

    mode = ""

    def __init__(
        self,
        spec: LoadSpec,
        progress: ProgressFn | None = None,
        gate: Callable[[], int] | None = None,
    ) -> None:
        self.spec = spec
        self.progress = progress
        # Several processes: called (blocking) once connections are open; returns the common start.
        self.gate = gate
        self.result = RunResult(mode=self.mode, duration_s=spec.duration_s)
        self._pending: list[int] = []  # 2xx latencies not yet in the histogram
        self._codes: dict[int, int] = {}  # HTTP statuses not yet in result.statuses
        self._lag: list[int] = []
        self._requests = tuple(spec.requests)
        self._next = spec.process_index % len(self._requests)
        self.conns: set[Connection] = set()
        self.done_fut: asyncio.Future[None] | None = None
        self._ticks = 0
        self._seen = 0
        self.start_ns = 0
        self.measure_ns = 0
        self.end_ns = 0

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> RunResult:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.done_fut = loop.create_future()
        await self._prepare()
        start = self.gate() if self.gate is not None else self.spec.start_ns
        now = time.perf_counter_ns()
        self.start_ns = start if start is not None else now + 1_000_000
        self.measure_ns = self.start_ns + int(self.spec.warmup_s * 1e9)
        self.end_ns = self.measure_ns + int(self.spec.duration_s * 1e9)
        self.deadline_ns = self.end_ns + int(self.spec.timeout_s * 1e9)
        if self.start_ns > now:
            await asyncio.sleep((self.start_ns - now) / 1e9)
        self._begin()
        loop.call_later(TICK_S, self._tick)
        try:
            await self.done_fut
        finally:
            for c in list(self.conns):
                c.closed = True
                c.abort()
        self._flush()
        self.result.connections = max(self.result.connections, len(self.conns))
        return self.result

    async def _prepare(self) -> None:
        """Open the connections the run starts with."""

    def _begin(self) -> None:
        raise NotImplementedError

    def _finished(self, now: int) -> bool:
        raise NotImplementedError

    def _give_up(self, now: int) -> None:
        """Past the deadline: count what is still outstanding."""
        for c in list(self.conns):
            if c.busy:
                self._expire(c)

    # -- helpers for subclasses ------------------------------------------------------------

    def next_request(self) -> bytes:
        i = self._next
        self._next = i + 1 if i + 1 < len(self._requests) else 0
        return self._requests[i]

    def count(self, due_ns: int, outcome: str) -> None:
        if self.measure_ns <= due_ns < self.end_ns:
            s = self.result.statuses
            s[outcome] = s.get(outcome, 0) + 1

    def record(self, conn: Connection, status: int, now: int) -> None:
        # In the window by when it was due; its latency from the earlier of due and sent.
        if self.measure_ns <= conn.due_ns < self.end_ns:
            codes = self._codes
            codes[status] = codes.get(status, 0) + 1
            if 200 <= status < 300:
                self._pending.append(now - conn.scheduled_ns)

    async def open_connection(self) -> Connection | None:
        try:
            _, conn = await self.loop.create_connection(
                lambda: Connection(self), self.spec.host, self.spec.port
            )
        except OSError:
            self.count(time.perf_counter_ns(), "connect_error")
            return None
        self.conns.add(conn)
        self.result.connections = max(self.result.connections, len(self.conns))
        return conn

    def drop(self, conn: Connection) -> None:
        self.conns.discard(conn)

    def on_lost(self, conn: Connection, in_flight: bool) -> None:
        if in_flight:
            self.count(conn.due_ns, "connection_error")
        self.drop(conn)
        self._replace(conn)

    def _expire(self, conn: Connection) -> None:
        """A request that outlived the timeout: count it and give up its connection."""
        self.count(conn.due_ns, "timeout")
        conn.busy = False
        conn.closed = True  # so connection_lost does not report it again
        conn.abort()
        self.drop(conn)

    def check_done(self, now: int) -> None:
        if self.done_fut is not None and not self.done_fut.done() and self._finished(now):
            self.done_fut.set_result(None)

    def _flush(self) -> None:
        if self._codes:
            s = self.result.statuses
            for code, n in self._codes.items():
                s[str(code)] = s.get(str(code), 0) + n
            self._codes = {}
        if self._pending:
            self.result.latency.record_many(self._pending)
            self._pending = []
        if self._lag:
            self.result.send_lag.record_many(self._lag)
            self._lag = []

    def _tick(self) -> None:
        if self.done_fut is None or self.done_fut.done():
            return
        now = time.perf_counter_ns()
        limit = int(self.spec.timeout_s * 1e9)
        for c in list(self.conns):
            if c.busy and now - c.sent_ns > limit:
                self._expire(c)
                self._replace(c)
        self._ticks += 1
        if now >= self.deadline_ns:
            self._give_up(now)
            # Expiring the last busy request above may already have finished the run.
            if not self.done_fut.done():
                self.done_fut.set_result(None)
            return
        if self._ticks % PROGRESS_EVERY == 0:
            self._flush()
            if self.progress is not None:
                self.progress(self.snapshot(now))
        self.check_done(now)
        self.loop.call_later(TICK_S, self._tick)

    def _replace(self, conn: Connection) -> None:
        """A connection is gone; subclasses open another if the run needs it."""

    def snapshot(self, now: int) -> dict[str, Any]:
        r = self.result
        total = r.requests
        recent = total - self._seen
        self._seen = total
        p50, p99 = r.latency.percentiles((50.0, 99.0))
        return {
            "process": self.spec.process_index,
            "elapsed_s": (now - self.start_ns) / 1e9,
            "total_s": (self.end_ns - self.start_ns) / 1e9,
            "warmup": now < self.measure_ns,
            "requests": total,
            "ok": r.ok,
            "errors": total - r.ok,
            "recent": recent,
            "interval_s": TICK_S * PROGRESS_EVERY,
            "p50_ms": p50 / 1e6,
            "p99_ms": p99 / 1e6,
            "connections": len(self.conns),
        }


def run_sync(driver: Driver) -> RunResult:
    """Run a driver on a fresh event loop (uvloop when installed).

    The cyclic garbage collector is off during the run: the hot path makes no reference
    cycles, and a collection pass would stall sending and show up as latency."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
            return asyncio.run(driver.run())
        return uvloop.run(driver.run())
    finally:
        if was_enabled:
            gc.enable()
