"""Open loop: requests are due at times fixed before the run (constant spacing or
Poisson arrivals at `rate`), whatever the server does, and each one's latency is
measured from the time it was *due*, not from when it could be sent.

Each due request goes out on an idle connection of a pool; when none is idle the
request waits in a backlog (counted in `delayed`, and its wait is in its latency and in
`send_lag`) while another connection opens, up to `max_connections`. So a server stall
shows in the latency of every request that came due during it, as users would see it.

Timers: the dispatcher sleeps until the next due time with the event loop's timer
(uvloop's has millisecond resolution) and then sends every request due within the next
EARLY_NS (0.5 ms), so requests leave within about half a millisecond of their time,
early or late. Latency is measured from the earlier of the due time and the actual
send: a request that leaves late is charged its lateness (never hidden), and one that
leaves early is timed from when it left (never credited). `send_lag` reports how late
requests left.

Several processes split one run: with constant arrivals process k of N sends requests
k, k+N, k+2N, ... of the common schedule; with Poisson arrivals each sends an
independent Poisson stream at rate/N (their union is Poisson at the full rate).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque

import numpy as np

from ._base import RECONNECT_DELAY_S, Driver
from .connection import Connection

__all__ = ["OpenLoop", "schedule_offsets_ns"]

EARLY_NS = 500_000


def schedule_offsets_ns(
    rate: float, total_s: float, arrivals: str, process_index: int = 0, processes: int = 1, seed: int = 0
) -> np.ndarray:
    """Due times (ns from the start) of one process's share of a run."""
    total_ns = total_s * 1e9
    if arrivals == "constant":
        period = 1e9 / rate
        idx = np.arange(process_index, math.ceil(total_ns / period), processes, dtype=np.float64)
        return (idx * period).astype(np.int64)
    rng = np.random.default_rng([seed, process_index])
    share = rate / processes
    chunks, t = [], 0.0
    while t < total_ns:
        gaps = rng.exponential(1e9 / share, size=max(16, int(share * total_s * 0.25) + 16))
        c = t + np.cumsum(gaps)
        chunks.append(c)
        t = float(c[-1])
    offs = np.concatenate(chunks)
    return offs[offs < total_ns].astype(np.int64)


class OpenLoop(Driver):
    mode = "open"

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        spec = self.spec
        assert spec.rate is not None
        self.result.offered_rps = spec.rate
        self.offsets = schedule_offsets_ns(
            spec.rate,
            spec.warmup_s + spec.duration_s,
            spec.arrivals,
            spec.process_index,
            spec.processes,
            spec.seed,
        )
        self.times: list[int] = []
        self.i = 0
        self.idle: list[Connection] = []
        self.backlog: deque[int] = deque()
        self.opening = 0

    async def _prepare(self) -> None:
        opened = await asyncio.gather(*(self.open_connection() for _ in range(max(1, self.spec.connections))))
        self.idle = [c for c in opened if c is not None]

    def _begin(self) -> None:
        self.times = (self.offsets + self.start_ns).tolist()
        self._dispatch()

    # -- sending ---------------------------------------------------------------------------

    def _dispatch(self) -> None:
        now = time.perf_counter_ns()
        horizon = now + EARLY_NS
        times, i, n = self.times, self.i, len(self.times)
        while i < n and times[i] <= horizon:
            self._send_due(times[i], now)
            i += 1
        self.i = i
        if i < n:
            delay = (times[i] - EARLY_NS - time.perf_counter_ns()) / 1e9
            if delay > 0:
                self.loop.call_later(delay, self._dispatch)
            else:
                self.loop.call_soon(self._dispatch)
        else:
            self.check_done(now)

    def _send_due(self, due: int, now: int) -> None:
        if self.idle:
            # The latency origin is the earlier of due and sent (see the module docstring).
            self.idle.pop().send(self.next_request(), min(due, now), now, due)
            if self.measure_ns <= due < self.end_ns:
                self._lag.append(now - due if now > due else 0)
            return
        self.backlog.append(due)
        if self.measure_ns <= due < self.end_ns:
            self.result.delayed += 1
        self._grow()

    def _give(self, conn: Connection, now: int) -> None:
        if self.backlog:
            due = self.backlog.popleft()  # may be up to EARLY_NS ahead of now
            conn.send(self.next_request(), min(due, now), now, due)
            if self.measure_ns <= due < self.end_ns:
                self._lag.append(now - due if now > due else 0)
        else:
            self.idle.append(conn)

    def _grow(self) -> None:
        """Open another connection while requests wait for one (up to the cap)."""
        if self.opening < len(self.backlog) and len(self.conns) + self.opening < self.spec.max_connections:
            self.opening += 1
            asyncio.ensure_future(self._open_one())

    async def _open_one(self) -> None:
        c = await self.open_connection()
        self.opening -= 1
        if c is None:
            self.loop.call_later(RECONNECT_DELAY_S, self._grow)
            return
        self._give(c, time.perf_counter_ns())

    # -- the connection's owner interface ----------------------------------------------------

    def on_response(self, conn: Connection, status: int, now: int) -> None:
        self.record(conn, status, now)
        if conn.closed:
            self.drop(conn)
            self._grow()
        else:
            self._give(conn, now)
        if self.i >= len(self.times):
            self.check_done(now)

    def _replace(self, conn: Connection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)
        self._grow()
        self.check_done(time.perf_counter_ns())

    # -- ending ----------------------------------------------------------------------------

    def _tick(self) -> None:
        now = time.perf_counter_ns()
        limit = int(self.spec.timeout_s * 1e9)
        while self.backlog and now - self.backlog[0] > limit:
            self.count(self.backlog.popleft(), "timeout")
        super()._tick()

    def _give_up(self, now: int) -> None:
        super()._give_up(now)
        while self.backlog:
            self.count(self.backlog.popleft(), "timeout")

    def _finished(self, now: int) -> bool:
        return self.i >= len(self.times) and not self.backlog and not any(c.busy for c in self.conns)
