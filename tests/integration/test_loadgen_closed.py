"""The closed-loop driver (runtime/loadgen/closed.py, with what it shares in _base.py), run
through `run_load` against a scripted loopback server: it keeps exactly `concurrency`
requests in flight on that many keep-alive connections and sends the requests in turn;
it counts every measured request once, by outcome (2xx, error status, dropped
connection, timeout, refused connection) and times only the 2xx ones; warmup answers
are not measured; a server that closes connections is reconnected to; progress
snapshots report the run as it goes.

Timing bounds are only on what the server injects (its delay), and generous.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest

from runtime.loadgen import LoadSpec, request_bytes, run_load
from runtime.loadgen.result import RunResult
from tests.integration.scripted_http import Reply, Request, ScriptedServer, response

pytestmark = pytest.mark.integration

REQ = request_bytes("POST", "/v2/models/m/infer", "127.0.0.1", b'{"inputs":[]}')


def spec(port: int, **kw: object) -> LoadSpec:
    args: dict = {"requests": (REQ,), "duration_s": 0.3, "concurrency": 1, "timeout_s": 5.0}
    args.update(kw)
    return LoadSpec(host="127.0.0.1", port=port, **args)


def eventually(cond: object, timeout_s: float = 5.0) -> None:
    """Wait for the server thread to see what the client did."""
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def check_consistent(r: RunResult) -> None:
    """What holds for every result: every request counted once, only 2xx timed."""
    assert r.requests == sum(r.statuses.values())
    assert r.ok + sum(r.errors.values()) == r.requests
    assert r.latency.total == r.ok


def test_requests_counted_and_concurrency_respected() -> None:
    with ScriptedServer(lambda n, req: Reply(delay_s=0.02)) as server:
        r = run_load(spec(server.port, concurrency=3, warmup_s=0.2, duration_s=0.5))
        seen = len(server.requests)
        assert server.max_in_flight == 3
        assert server.connections == 3  # keep-alive: no connection was replaced
    check_consistent(r)
    assert (r.mode, r.concurrency, r.connections, r.processes) == ("closed", 3, 3, 1)
    assert r.errors == {} and r.statuses == {"200": r.requests}
    # The warmup's answers are not measured (about 30 of them at 3 x 50/s).
    assert 3 <= r.requests < seen
    # Each connection waits at least 20 ms per answer: at most 3 x 25 in the 0.5 s window, and
    # the latency of every answer includes the delay.
    assert r.requests <= 3 * (0.5 / 0.02 + 1)
    assert r.latency.min >= 19_000_000
    s = r.summary()
    assert s["ok_rps"] == pytest.approx(r.ok / 0.5, abs=0.01)


def test_requests_are_sent_in_turn() -> None:
    reqs = tuple(request_bytes("POST", "/infer", "h", b"%d" % i) for i in range(3))
    with ScriptedServer() as server:
        run_load(spec(server.port, requests=reqs, duration_s=0.2))
        bodies = [req.body for req in server.requests]
    assert len(bodies) >= 3
    assert bodies == [b"%d" % (i % 3) for i in range(len(bodies))]


def test_error_statuses_are_counted_not_timed() -> None:
    def script(n: int, req: Request) -> Reply:
        return Reply(parts=(response(503 if n % 3 == 0 else 200, b"x"),))

    with ScriptedServer(script) as server:
        r = run_load(spec(server.port, warmup_s=0.05, duration_s=0.3))
    check_consistent(r)
    assert set(r.statuses) == {"200", "503"} and r.errors == {"503": r.statuses["503"]}
    # One connection: the measured requests are consecutive, so every third one failed.
    m = r.requests
    assert r.statuses["503"] in (m // 3, -(-m // 3)), r.statuses


def test_connection_close_answers_are_reconnected() -> None:
    reply = Reply(parts=(response(200, b"x", "content-length: {n}\r\nconnection: close\r\n"),))
    with ScriptedServer(lambda n, req: reply) as server:
        r = run_load(spec(server.port, concurrency=2))
        eventually(lambda: server.closed_by_client >= len(server.requests))
        carried = [req.connection for req in server.requests]
        connections = server.connections
    check_consistent(r)
    assert r.errors == {} and r.ok >= 2
    # Each connection carried one request, and the client closed it after the answer.
    assert len(set(carried)) == len(carried)
    assert len(carried) <= connections <= len(carried) + 2


def test_dropped_requests_count_as_connection_errors() -> None:
    def script(n: int, req: Request) -> Reply:
        return Reply(parts=(), close=True) if n % 4 == 0 else Reply()

    with ScriptedServer(script) as server:
        r = run_load(spec(server.port, warmup_s=0.05, duration_s=0.3))
        drops = len(server.requests) // 4
        connections = server.connections
    check_consistent(r)
    assert set(r.statuses) == {"200", "connection_error"}
    m = r.requests
    assert r.statuses["connection_error"] in (m // 4, -(-m // 4)), r.statuses
    # Each dropped connection was replaced (but not the last one if the run was over).
    assert connections in (drops, drops + 1)


def test_unanswered_requests_time_out() -> None:
    with ScriptedServer(lambda n, req: Reply(hang=True)) as server:
        r = run_load(spec(server.port, concurrency=2, duration_s=0.5, timeout_s=0.15))
        timeouts = r.statuses.get("timeout", 0)
        # The client gave up on each of those connections.
        eventually(lambda: server.closed_by_client >= timeouts)
        assert server.closed_by_client >= timeouts
        sent = len(server.requests)
    check_consistent(r)
    assert set(r.statuses) == {"timeout"} and r.ok == 0
    # A connection's request times out after 0.15 s and is sent again on a new one: each of
    # the two slots times out at least once and at most once per 0.15 s.
    assert 2 <= timeouts <= 2 * (0.5 / 0.15 + 1)
    assert timeouts <= sent
    assert r.summary()["latency_ms"]["p99"] == 0.0


def test_unreachable_server_counts_connect_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    r = run_load(spec(port, concurrency=2, duration_s=0.3))
    check_consistent(r)
    # Each of the two slots tries again every 0.1 s while the run lasts.
    assert set(r.statuses) == {"connect_error"}
    assert 2 <= r.statuses["connect_error"] <= 2 * (0.3 / 0.1 + 1)
    assert r.connections == 0 and r.ok == 0


def test_progress_snapshots() -> None:
    snaps: list[dict] = []
    with ScriptedServer() as server:
        r = run_load(spec(server.port, concurrency=2, warmup_s=0.6, duration_s=0.5), progress=snaps.append)
    # Every 0.5 s: one during the warmup (at 0.5 s), one while measuring (at 1.0 s).
    assert len(snaps) >= 2
    first, last = snaps[0], snaps[-1]
    assert first["warmup"] and first["requests"] == 0
    assert not last["warmup"] and 0 < last["requests"] <= r.requests
    for s in snaps:
        assert s["process"] == 0 and s["connections"] == 2 and s["interval_s"] == pytest.approx(0.5)
        assert s["total_s"] == pytest.approx(1.1, abs=1e-6)
        assert s["ok"] == s["requests"] and s["errors"] == 0
        assert 0 <= s["p50_ms"] <= s["p99_ms"]
    assert [s["elapsed_s"] for s in snaps] == sorted(s["elapsed_s"] for s in snaps)
    assert sum(s["recent"] for s in snaps) == last["requests"]


def test_answers_that_are_not_http_count_as_connection_errors() -> None:
    with ScriptedServer(lambda n, req: Reply(parts=(b"garbage\r\n\r\n",))) as server:
        r = run_load(spec(server.port, duration_s=0.2))
    check_consistent(r)
    assert set(r.statuses) == {"connection_error"} and r.ok == 0


def test_answers_that_are_not_http_are_not_reported_as_loop_errors(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with ScriptedServer(lambda n, req: Reply(parts=(b"garbage\r\n\r\n",))) as server:
            r = run_load(spec(server.port, duration_s=0.2))
    assert set(r.statuses) == {"connection_error"}
    assert [rec.getMessage() for rec in caplog.records if rec.name == "asyncio"] == []


def test_last_timeout_at_the_deadline_finishes_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    # Ticks come every 0.1 s; a request times out at the first tick 10 ms after it was sent.
    # The last request goes out just after the tick at 0.3 s, before the end at 0.35 s; it
    # times out at the tick at 0.4 s, which is past the deadline (end + 10 ms) as well.
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        with ScriptedServer(lambda n, req: Reply(hang=True)) as server:
            r = run_load(spec(server.port, duration_s=0.35, timeout_s=0.01))
    assert set(r.statuses) == {"timeout"}  # the result itself is right
    assert [rec.getMessage() for rec in caplog.records if rec.name == "asyncio"] == []
