"""Closed loop: `concurrency` connections, each sending its next request as soon as the
previous answer arrives (what wrk and most benchmarks do).

Latency is measured from each request's send time. A closed loop slows down with the
server, so a stall delays only the requests in flight during it: the requests that
would have arrived meanwhile are never sent, and the percentiles do not see them
(coordinated omission; docs/bench.md). Use it to measure capacity; use the open loop
to measure latency at a given load.
"""

from __future__ import annotations

import asyncio
import time

from ._base import RECONNECT_DELAY_S, Driver
from .connection import Connection

__all__ = ["ClosedLoop"]


class ClosedLoop(Driver):
    mode = "closed"

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.result.concurrency = self.spec.concurrency
        self._reopening = 0
        self._missing = 0

    async def _prepare(self) -> None:
        n = self.spec.concurrency or 1
        opened = await asyncio.gather(*(self.open_connection() for _ in range(n)))
        self._missing = sum(c is None for c in opened)

    def _begin(self) -> None:
        now = time.perf_counter_ns()
        for c in list(self.conns):
            c.send(self.next_request(), now, now)
        for _ in range(self._missing):
            self._reopen_slot()

    def on_response(self, conn: Connection, status: int, now: int) -> None:
        # The hot path: record, then send the next request on the same connection.
        self.record(conn, status, now)
        if conn.closed:
            self.drop(conn)
            self._replace(conn)
        elif now < self.end_ns:
            # conn.send() inlined: this line runs once per request.
            conn.busy = True
            conn.sent_ns = conn.scheduled_ns = conn.due_ns = now
            i = self._next
            self._next = i + 1 if i + 1 < len(self._requests) else 0
            conn.transport.write(self._requests[i])
        else:
            self.check_done(now)

    def _replace(self, conn: Connection) -> None:
        now = time.perf_counter_ns()
        if now < self.end_ns:
            self._reopen_slot()
        else:
            self.check_done(now)

    def _reopen_slot(self) -> None:
        self._reopening += 1
        asyncio.ensure_future(self._reopen())

    async def _reopen(self) -> None:
        try:
            while time.perf_counter_ns() < self.end_ns:
                c = await self.open_connection()
                if c is not None:
                    now = time.perf_counter_ns()
                    if now < self.end_ns:
                        c.send(self.next_request(), now, now)
                    break
                await asyncio.sleep(RECONNECT_DELAY_S)
        finally:
            self._reopening -= 1
        self.check_done(time.perf_counter_ns())

    def _finished(self, now: int) -> bool:
        return now >= self.end_ns and self._reopening == 0 and not any(c.busy for c in self.conns)
