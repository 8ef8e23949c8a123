"""The open-loop driver (runtime/loadgen/open.py) where the server misbehaves, against a
scripted loopback server: the schedule is kept when every answer closes its connection
or the server closes idle connections;
requests that wait for a connection which never comes free, or for a server that cannot
be reached, are counted as timeouts, each exactly once. (test_bench_cli.py runs the open
loop against a well-behaved server; tests/unit/test_loadgen_spec.py checks the schedules.)
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import uvloop

from runtime.loadgen import LoadSpec, request_bytes, run_load
from runtime.loadgen.open import OpenLoop, schedule_offsets_ns
from runtime.loadgen.result import RunResult
from tests.integration.scripted_http import Reply, ScriptedServer, response

pytestmark = pytest.mark.integration

REQ = request_bytes("POST", "/v2/models/m/infer", "127.0.0.1", b'{"inputs":[]}')


def spec(port: int, **kw: Any) -> LoadSpec:
    args: dict[str, Any] = {"requests": (REQ,), "duration_s": 0.3, "rate": 100.0, "timeout_s": 5.0}
    args.update(kw)
    return LoadSpec(host="127.0.0.1", port=port, **args)


def in_window(s: LoadSpec) -> int:
    """How many requests of the schedule are due in the measurement window."""
    offs = schedule_offsets_ns(s.rate or 0.0, s.warmup_s + s.duration_s, s.arrivals)
    lo = int(s.warmup_s * 1e9)
    return int(((offs >= lo) & (offs < lo + int(s.duration_s * 1e9))).sum())


def test_schedule_kept_when_every_answer_closes_its_connection() -> None:
    reply = Reply(parts=(response(200, b"x", "content-length: {n}\r\nconnection: close\r\n"),))
    s = spec(0, connections=2, duration_s=0.5)
    with ScriptedServer(lambda n, req: reply) as server:
        r = run_load(spec(server.port, connections=2, duration_s=0.5))
        carried = [req.connection for req in server.requests]
    assert in_window(s) == 50
    assert r.statuses == {"200": 50} and r.offered_rps == 100
    assert r.latency.total == 50 and r.send_lag.total == 50
    # A fresh connection for every request after the first two.
    assert len(set(carried)) == len(carried) == 50


def test_idle_connections_the_server_closes_leave_the_pool() -> None:
    """The server ends each connection after its answer (no header says so): the client
    sees it lost while idle, takes it out of the pool and sends the next request on a new
    connection, so no request is sent on a closed one."""
    with ScriptedServer(lambda n, req: Reply(close=True)) as server:
        r = run_load(spec(server.port, rate=20.0, connections=1, duration_s=0.5))
        carried = [req.connection for req in server.requests]
    assert r.statuses == {"200": 10}
    assert len(set(carried)) == len(carried) == 10


def test_requests_waiting_for_a_stuck_connection_time_out() -> None:
    """One connection at most, and the server never answers: the first request holds the
    connection until it times out, the others wait in the backlog until they do."""
    with ScriptedServer(lambda n, req: Reply(hang=True)) as server:
        r = run_load(spec(server.port, connections=1, max_connections=1, timeout_s=0.1))
        sent = len(server.requests)
    assert r.statuses == {"timeout": 30}  # each of the 30 due requests, once
    assert r.ok == 0 and r.latency.total == 0
    assert r.connections == 1 and sent < 30
    assert r.delayed >= 30 - sent


def test_unreachable_server() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    t0 = time.monotonic()
    r = run_load(spec(port, duration_s=0.2, rate=50, connections=2, timeout_s=0.1))
    # Every due request waited for a connection that never opened, and timed out; the
    # attempts to open one are counted too, and the run still ends.
    assert r.statuses["timeout"] == 10 and set(r.statuses) == {"timeout", "connect_error"}
    assert r.statuses["connect_error"] >= 1
    assert r.delayed == 10 and r.connections == 0
    assert time.monotonic() - t0 < 10


def _run_with_start(s: LoadSpec, start_after_gate_ns: int) -> RunResult:
    """Run an open loop whose start (the warmup's beginning) the gate sets, as a parent
    process does for its generator processes; on uvloop, like run_load."""

    def gate() -> int:
        return time.perf_counter_ns() + start_after_gate_ns

    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(asyncio.wait_for(OpenLoop(s, None, gate).run(), 30))
    finally:
        loop.close()


def test_every_request_due_in_the_window_is_measured() -> None:
    s0 = spec(0, rate=1000.0, warmup_s=0.002, duration_s=0.048, connections=4)
    want = in_window(s0)
    assert want == 48  # 2 ms of warmup, then 48 ms: no request due at the very end
    got = []
    with ScriptedServer() as server:
        s = spec(server.port, rate=1000.0, warmup_s=0.002, duration_s=0.048, connections=4)
        # The start is in the past: the window opens 0.45 ms after the gate, so the first
        # request due in it is sent at once, a little before it is due.
        for _ in range(3):
            r = _run_with_start(s, 450_000 - 2_000_000)
            got.append((r.requests, r.send_lag.total))
    assert got == [(want, want)] * 3
