"""A watchdog on the event loop: how late it runs a short timer. Code that blocks the loop
(a slow model run inline, a long decode) shows as lateness, so the longest stall of the
last minute is a metric an operator can alert on, and stalls over 100 ms are counted.
Costs one timer every 50 ms."""

from __future__ import annotations

import collections
import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from .periodic import Periodic

INTERVAL_S = 0.05
WINDOW_S = 60
STALL_S = 0.1


class LoopLag:
    def __init__(self, registry: CollectorRegistry) -> None:
        # The longest lateness of each second of the last minute: the gauge reads their max.
        self._seconds: collections.deque[tuple[int, float]] = collections.deque(maxlen=WINDOW_S)
        self._periodic = Periodic("event loop watchdog", INTERVAL_S, self._tick)
        self._asked = time.monotonic()
        self.longest = Gauge(
            "mlrt_event_loop_stall_seconds",
            "Longest the event loop was late to run a timer in the last minute (a blocked loop)",
            registry=registry,
        )
        self.longest.set_function(self.longest_stall)
        self.stalls = Counter(
            "mlrt_event_loop_stalls",
            f"Times the event loop ran a timer more than {STALL_S * 1e3:.0f} ms late",
            registry=registry,
        )

    def longest_stall(self) -> float:
        now = int(time.monotonic())
        return max((late for second, late in self._seconds if now - second < WINDOW_S), default=0.0)

    def record(self, late: float, now: float) -> None:
        second = int(now)
        if self._seconds and self._seconds[-1][0] == second:
            if late > self._seconds[-1][1]:
                self._seconds[-1] = (second, late)
        else:
            self._seconds.append((second, late))
        if late > STALL_S:
            self.stalls.inc()

    async def _tick(self) -> None:
        # Periodic sleeps INTERVAL_S between the end of one tick and the start of the next:
        # whatever more passed, the loop was too busy to run the timer.
        now = time.monotonic()
        self.record(max(0.0, now - self._asked - INTERVAL_S), now)
        self._asked = time.monotonic()

    def start(self) -> None:
        self._asked = time.monotonic()
        self._periodic.start()

    async def stop(self) -> None:
        await self._periodic.stop()
