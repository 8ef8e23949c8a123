"""The load generator's connection (runtime/loadgen/connection.py) on real sockets, on
uvloop (what `mlrt bench` runs) and on asyncio's own loop, against a scripted loopback
server: one keep-alive connection carries many requests; answers written in pieces with
pauses between them (partial reads) are put back together; a server that closes after
answering, one that says `Connection: close`, one that drops a request unanswered or
stops halfway through an answer are each reported as the owner needs to know.

The only timings are the pauses and deadlines the test sets itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import uvloop

from runtime.loadgen.connection import Connection, request_bytes
from tests.integration.scripted_http import Reply, Request, ScriptedServer, chunked, response

pytestmark = pytest.mark.integration

T = TypeVar("T")
WAIT_S = 5.0  # only so that a broken connection fails the test instead of hanging it


class Recorder:
    """The connection's owner: what it was told, in order, with a way to wait for it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int | bool]] = []
        self.closed_when_answered: list[bool] = []
        self.changed = asyncio.Event()

    def on_response(self, conn: Connection, status: int, now_ns: int) -> None:
        assert not conn.busy
        assert now_ns >= conn.sent_ns
        self.events.append(("response", status))
        self.closed_when_answered.append(conn.closed)
        self.changed.set()

    def on_lost(self, conn: Connection, in_flight: bool) -> None:
        self.events.append(("lost", in_flight))
        self.changed.set()

    async def wait(self, n: int) -> list[tuple[str, int | bool]]:
        """The events once there are at least `n` of them."""

        async def until() -> None:
            while len(self.events) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), WAIT_S)
        return self.events


def run_on(loop_kind: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run `main` on a fresh loop of that kind; fail on any error the loop reported."""
    loop = uvloop.new_event_loop() if loop_kind == "uvloop" else asyncio.new_event_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, ctx: reported.append(ctx))
    try:
        result = loop.run_until_complete(asyncio.wait_for(main(), WAIT_S * 2))
    finally:
        loop.close()
    assert not reported, reported
    return result


async def connect(port: int) -> tuple[Connection, Recorder]:
    rec = Recorder()
    _, conn = await asyncio.get_running_loop().create_connection(lambda: Connection(rec), "127.0.0.1", port)
    return conn, rec


async def close(conn: Connection, rec: Recorder) -> None:
    """Close an idle connection from this end: reported as lost with nothing in flight."""
    n = len(rec.events)
    conn.transport.close()
    assert (await rec.wait(n + 1))[n:] == [("lost", False)]


def send(conn: Connection, raw: bytes) -> None:
    now = time.perf_counter_ns()  # the drivers' clock
    conn.send(raw, now, now)


REQ = request_bytes("POST", "/v2/models/m/infer", "127.0.0.1", b'{"inputs":[]}')

LOOPS = pytest.mark.parametrize("loop_kind", ["uvloop", "asyncio"])


async def settle() -> None:
    """Let every callback already scheduled on the loop run (a report that would follow one
    already seen comes from one of them), without waiting on the clock."""
    for _ in range(20):
        await asyncio.sleep(0)


@LOOPS
def test_keep_alive_carries_many_requests(loop_kind: str) -> None:
    statuses = [200, 404, 503, 200, 201]

    def script(n: int, req: Request) -> Reply:
        return Reply(parts=(response(statuses[n - 1], b"#%d" % n),))

    async def main() -> list[tuple[str, int | bool]]:
        conn, rec = await connect(server.port)
        for i in range(len(statuses)):
            send(conn, REQ)
            assert conn.busy
            await rec.wait(i + 1)
        await close(conn, rec)
        return rec.events

    with ScriptedServer(script) as server:
        events = run_on(loop_kind, main)
        assert server.connections == 1
        # Every request reached the server whole.
        assert [(r.method, r.target, r.body) for r in server.requests] == [
            ("POST", "/v2/models/m/infer", b'{"inputs":[]}')
        ] * len(statuses)
    assert events == [*(("response", s) for s in statuses), ("lost", False)]


def _pieces(raw: bytes, cuts: list[int]) -> tuple[bytes, ...]:
    bounds = [0, *cuts, len(raw)]
    return tuple(raw[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True))


@LOOPS
def test_answers_written_in_pieces(loop_kind: str) -> None:
    plain = response(200, b"x" * 50)
    chunk = chunked(202, [b"hello\r\n", b"y" * 30], trailers="X-T: 1\r\n", extension=";e=1")
    replies = [
        # Cut in the status line, in the headers, in the blank line, in the body.
        Reply(parts=_pieces(plain, [5, 20, plain.index(b"\r\n\r\n") + 2, len(plain) - 10]), pause_s=0.02),
        # Cut in a chunk-size line, in chunk data, before the final CRLF, in the trailers.
        Reply(
            parts=_pieces(
                chunk, [chunk.index(b"7;") + 1, chunk.index(b"hel") + 2, len(chunk) - 9, len(chunk) - 2]
            ),
            pause_s=0.02,
        ),
        # Head and body in separate writes.
        Reply(parts=(b"HTTP/1.1 503 X\r\ncontent-length: 2\r\n\r\n", b"no"), pause_s=0.02),
        Reply(parts=(response(200, b"after"),)),
    ]

    async def main() -> list[tuple[str, int | bool]]:
        conn, rec = await connect(server.port)
        for i in range(len(replies)):
            send(conn, REQ)
            await rec.wait(i + 1)
            assert conn.buf == b"", i  # nothing left over for the next answer
        await close(conn, rec)
        return rec.events

    with ScriptedServer(lambda n, req: replies[n - 1]) as server:
        events = run_on(loop_kind, main)
        assert server.connections == 1
    assert events == [
        ("response", 200),
        ("response", 202),
        ("response", 503),
        ("response", 200),
        ("lost", False),
    ]


@LOOPS
def test_two_answers_in_one_write(loop_kind: str) -> None:
    async def main() -> list[tuple[str, int | bool]]:
        conn, rec = await connect(server.port)
        send(conn, REQ)
        await rec.wait(2)
        await settle()  # nothing more comes
        await close(conn, rec)
        return rec.events

    with ScriptedServer(lambda n, req: Reply(parts=(response(200, b"a") + chunked(201, [b"b"]),))) as server:
        assert run_on(loop_kind, main) == [("response", 200), ("response", 201), ("lost", False)]


@LOOPS
def test_server_closes_after_answering(loop_kind: str) -> None:
    async def main() -> tuple[list[tuple[str, int | bool]], bool]:
        conn, rec = await connect(server.port)
        send(conn, REQ)
        events = await rec.wait(2)
        return events, conn.closed

    with ScriptedServer(lambda n, req: Reply(close=True)) as server:
        events, closed = run_on(loop_kind, main)
    # Answered, then lost while idle: nothing was in flight.
    assert events == [("response", 200), ("lost", False)] and closed


@LOOPS
def test_connection_close_header(loop_kind: str) -> None:
    reply = Reply(parts=(response(200, b"bye", "content-length: {n}\r\nConnection: close\r\n"),))

    async def main() -> tuple[list[tuple[str, int | bool]], list[bool]]:
        conn, rec = await connect(server.port)
        send(conn, REQ)
        await rec.wait(1)
        for _ in range(100):  # the client ends the connection itself
            if server.closed_by_client:
                break
            await asyncio.sleep(0.01)
        await settle()  # and connection_lost, which follows, reports nothing
        return rec.events, rec.closed_when_answered

    # The server keeps its end open: only the client can end the connection here.
    with ScriptedServer(lambda n, req: reply) as server:
        events, closed_when_answered = run_on(loop_kind, main)
        assert server.closed_by_client == 1
    assert events == [("response", 200)] and closed_when_answered == [True]


@LOOPS
@pytest.mark.parametrize(
    "reply",
    [
        Reply(parts=(), close=True),  # dropped unanswered
        Reply(parts=(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part",), close=True),
        Reply(parts=(b"HTTP/1.1 200 OK\r\ncontent-le",), close=True),
    ],
    ids=["no answer", "half a body", "half a head"],
)
def test_server_closes_with_the_request_in_flight(loop_kind: str, reply: Reply) -> None:
    async def main() -> list[tuple[str, int | bool]]:
        conn, rec = await connect(server.port)
        send(conn, REQ)
        events = await rec.wait(1)
        await settle()  # reported once
        return events

    with ScriptedServer(lambda n, req: reply) as server:
        assert run_on(loop_kind, main) == [("lost", True)]


def test_an_unanswered_request_stays_in_flight() -> None:
    """The connection itself never gives up on a request (the drivers time requests out:
    tests/integration/test_loadgen_closed.py); aborting it reports nothing to the owner."""

    async def main() -> tuple[list[tuple[str, int | bool]], bool]:
        conn, rec = await connect(server.port)
        send(conn, REQ)
        await asyncio.sleep(0.2)
        busy = conn.busy
        conn.closed = True  # what a driver does before aborting a connection it gives up on
        conn.abort()
        await asyncio.sleep(0.05)
        return rec.events, busy

    with ScriptedServer(lambda n, req: Reply(hang=True)) as server:
        events, busy = run_on("uvloop", main)
        for _ in range(100):
            if server.closed_by_client:
                break
            time.sleep(0.01)
        assert server.closed_by_client == 1
    assert events == [] and busy
