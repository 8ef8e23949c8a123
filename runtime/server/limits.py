"""What a client may hold: time to send its headers and its body, how many connections are
open, and how many request bytes the server buffers for bodies not yet complete.

A client that trickles its headers a byte at a time, or declares a large body and stalls,
holds a connection (a file descriptor) and memory for as long as the server lets it; a few
hundred such clients starve everyone else. The rules, all configurable ([server] in the
config; docs/reliability.md):

- headers: a request's header block must be complete within `header_timeout_s` of its
  first byte (or of the connection's opening): else 408 and the connection is closed;
- body: no `body_timeout_s` without a byte of it (nginx's client_body_timeout), and on
  average at least `min_body_rate` bytes/s after a `body_timeout_s` allowance (its deadline
  is `body_timeout_s + received / min_body_rate` after the headers, as Apache's
  mod_reqtimeout counts): a large body sent steadily is fine, a stalled or trickled one is
  not; else 408 and close;
- connections: past `max_connections` open, a new one is answered 503 and closed at once,
  rather than accepted and starved (and before the process runs out of descriptors);
- buffered bytes: bodies in progress hold at most `max_buffered_bytes` in all; the request
  whose bytes would pass it is answered 503 and its connection closed.
- keep-alive: a connection idle between requests for `keep_alive_s` is closed (no answer is
  owed, so none is sent, and it is not counted as a cut).

Timeouts are checked by one sweep a second over the open connections, so a request pays
only clock reads, never a timer armed and cancelled (uvicorn arms one per response for its
keep-alive); a timeout fires within a second of its due time. Every cut is counted in
mlrt_connections_closed_total{reason}, beside the gauges of open connections and buffered
bytes.
"""

from __future__ import annotations

import asyncio
import resource
import time
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

#: Descriptors kept back from the connection cap for model files, logs and the like.
RESERVED_FDS = 64
SWEEP_S = 1.0
HEADERS, BODY = 1, 2  # what a connection is waiting for (0: nothing, between requests)

_CLOSE = b"content-length: 0\r\nconnection: close\r\n\r\n"
REFUSALS = {
    "header_timeout": b"HTTP/1.1 408 Request Timeout\r\n" + _CLOSE,
    "body_timeout": b"HTTP/1.1 408 Request Timeout\r\n" + _CLOSE,
    "too_many_connections": b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n" + _CLOSE,
    "buffer_budget": b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n" + _CLOSE,
}


class Limited(Protocol):
    """What the limits read of a connection (runtime/server/uvicorn_http.py)."""

    waiting: int
    since: float  # when the headers (or the body) began to be owed
    last_read: float  # the latest body bytes
    body_received: int

    def refuse(self, reason: str) -> None: ...

    def idle_since(self) -> float | None:
        """When its last answer went out, if it is between requests now (else None)."""
        ...

    def close_idle(self) -> None: ...


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (as nginx's
    worker_rlimit_nofile does); returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


class ClientLimits:
    def __init__(
        self,
        *,
        header_timeout_s: float,
        body_timeout_s: float,
        min_body_rate: int,
        max_connections: int,
        max_buffered_bytes: int,
        keep_alive_s: float = 5.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.header_timeout_s = header_timeout_s
        self.keep_alive_s = keep_alive_s
        self.body_timeout_s = body_timeout_s
        self.min_body_rate = min_body_rate
        self.max_connections = max_connections
        self.max_buffered_bytes = max_buffered_bytes
        self.connections: set[Limited] = set()
        self.buffered = 0
        self._sweep: asyncio.TimerHandle | None = None
        self.closed = Counter(
            "mlrt_connections_closed",
            "Connections the server closed on a client: header_timeout, body_timeout, "
            "too_many_connections, buffer_budget",
            ["reason"],
            registry=registry,
        )
        for reason in REFUSALS:
            self.closed.labels(reason)
        Gauge("mlrt_open_connections", "Open HTTP connections", registry=registry).set_function(
            lambda: len(self.connections)
        )
        Gauge(
            "mlrt_buffered_request_bytes", "Bytes of request bodies received and not yet complete",
            registry=registry,
        ).set_function(lambda: self.buffered)  # fmt: skip

    @classmethod
    def from_config(cls, config: Any, registry: CollectorRegistry | None = None) -> ClientLimits:
        max_connections = config.max_connections
        if max_connections is None:
            max_connections = max(16, raise_file_limit() - RESERVED_FDS)
        buffered = config.max_buffered_bytes
        if buffered is None:
            buffered = 4 * config.max_body_bytes
        return cls(
            header_timeout_s=config.header_timeout_s,
            body_timeout_s=config.body_timeout_s,
            min_body_rate=config.min_body_rate,
            max_connections=max_connections,
            max_buffered_bytes=buffered,
            keep_alive_s=config.keep_alive_s,
            registry=registry,
        )

    # -- connections --------------------------------------------------------------------

    def opened(self, conn: Limited, loop: asyncio.AbstractEventLoop) -> bool:
        """Count a new connection; False (and it is refused) past the cap."""
        if len(self.connections) >= self.max_connections:
            self.refuse(conn, "too_many_connections")
            return False
        self.connections.add(conn)
        if self._sweep is None:
            self._sweep = loop.call_later(SWEEP_S, self._sweep_now, loop)
        return True

    def closed_conn(self, conn: Limited, held: int) -> None:
        self.connections.discard(conn)
        self.buffered -= held

    def take(self, conn: Limited, n: int) -> bool:
        """Account `n` more buffered body bytes; False (and the request is refused) past
        the budget."""
        if self.buffered + n > self.max_buffered_bytes:
            self.refuse(conn, "buffer_budget")
            return False
        self.buffered += n
        return True

    def release(self, n: int) -> None:
        self.buffered -= n

    def refuse(self, conn: Limited, reason: str) -> None:
        self.closed.labels(reason).inc()
        conn.refuse(reason)

    # -- timeouts -----------------------------------------------------------------------

    def _sweep_now(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        now = time.monotonic()
        late = []
        idle = []
        for conn in self.connections:
            waiting = conn.waiting
            if waiting == HEADERS:
                if now - conn.since > self.header_timeout_s:
                    late.append((conn, "header_timeout"))
            elif waiting == BODY:
                allowed = self.body_timeout_s + conn.body_received / self.min_body_rate
                if now - conn.since > allowed or now - conn.last_read > self.body_timeout_s:
                    late.append((conn, "body_timeout"))
            else:
                since = conn.idle_since()
                if since is not None and now - since > self.keep_alive_s:
                    idle.append(conn)
        for conn, reason in late:
            self.refuse(conn, reason)
        for conn in idle:
            conn.close_idle()
        if self.connections:
            self._sweep = loop.call_later(SWEEP_S, self._sweep_now, loop)

    def stop(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
