"""The load generator's HTTP/1.1 response framing (runtime/loadgen/connection.py), fed byte
streams directly: every way a stream of responses can be cut into reads gives the same
responses in the same order, with nothing left over; Content-Length in any spelling,
chunked bodies (extensions, trailers, CRLFs inside the data), body-less answers and
pipelined answers are framed right; `Connection: close` ends the connection; a lost
connection is reported once, saying whether a request was in flight. Also the requests
`request_bytes` writes.

No socket here: tests/integration/test_loadgen_connection.py runs the same parser
against a loopback server.
"""

from __future__ import annotations

import pytest

from runtime.loadgen.connection import Connection, request_bytes


def response(status: int, body: bytes, headers: str = "content-length: {n}\r\n") -> bytes:
    """One HTTP/1.1 response; `{n}` in `headers` becomes the body's length."""
    return f"HTTP/1.1 {status} X\r\n{headers.format(n=len(body))}\r\n".encode() + body


def chunked(status: int, chunks: list[bytes], trailers: str = "", extension: str = "") -> bytes:
    """A response with a chunked body (each chunk's size line may carry `extension`)."""
    head = f"HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\n\r\n".encode()
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(c), extension.encode(), c) for c in chunks)
    return head + body + b"0\r\n" + trailers.encode() + b"\r\n"


class Recorder:
    """The connection's owner: what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int | bool]] = []
        self.closed_when_answered: list[bool] = []

    def on_response(self, conn: Connection, status: int, now_ns: int) -> None:
        assert not conn.busy, "a response is reported with the connection still busy"
        self.events.append(("response", status))
        self.closed_when_answered.append(conn.closed)

    def on_lost(self, conn: Connection, in_flight: bool) -> None:
        self.events.append(("lost", in_flight))


def feed(stream: bytes, cuts: list[int]) -> tuple[Connection, Recorder]:
    """A fresh connection (with no transport) given `stream` in reads ending at `cuts`."""
    rec = Recorder()
    conn = Connection(rec)
    conn.busy = True
    start = 0
    for end in [*cuts, len(stream)]:
        if end > start:
            conn.data_received(stream[start:end])
        start = end
    return conn, rec


STREAMS = {
    "lowercase content-length": (response(200, b"hello"), [200]),
    "Content-Length": (response(201, b"hello", "Content-Length: {n}\r\n"), [201]),
    "unusual spelling": (response(202, b"hi there", "CONTENT-LENGTH:{n}\r\nX-A: b\r\n"), [202]),
    "content-length not last": (response(200, b"abc", "content-length: {n}\r\nserver: t\r\n"), [200]),
    "empty body": (response(200, b""), [200]),
    "no length, no body": (b"HTTP/1.1 204 No Content\r\nServer: t\r\n\r\n", [204]),
    "chunked": (chunked(200, [b"hello", b" world" * 10]), [200]),
    "chunked, title case": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        [200],
    ),
    "chunked with extension and trailers": (
        chunked(200, [b"a" * 17], trailers="X-Checksum: 1\r\nX-More: 2\r\n", extension=";name=v"),
        [200],
    ),
    "chunked data holding CRLFs": (chunked(500, [b"\r\n\r\n0\r\n\r\n", b"\r\n"]), [500]),
    "body that looks like a response": (response(200, b"HTTP/1.1 503 X\r\n\r\n"), [200]),
    "pipelined": (
        response(200, b"one") + chunked(404, [b"two"]) + b"HTTP/1.1 204 X\r\n\r\n" + response(503, b""),
        [200, 404, 204, 503],
    ),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_every_split_into_two_reads(name: str) -> None:
    stream, statuses = STREAMS[name]
    for cut in range(len(stream) + 1):
        conn, rec = feed(stream, [cut])
        assert rec.events == [("response", s) for s in statuses], (name, cut)
        assert conn.buf == b"" and not conn.busy and not conn.closed, (name, cut)


@pytest.mark.parametrize("name", list(STREAMS))
def test_one_byte_at_a_time(name: str) -> None:
    stream, statuses = STREAMS[name]
    conn, rec = feed(stream, list(range(1, len(stream))))
    assert rec.events == [("response", s) for s in statuses]
    assert conn.buf == b""


def test_an_incomplete_response_is_kept_until_the_rest_arrives() -> None:
    stream = response(200, b"x" * 100) + response(201, b"y")
    conn, rec = feed(stream[:-3], [])
    assert rec.events == [("response", 200)]
    assert conn.buf == stream[len(response(200, b"x" * 100)) : -3]  # the start of the second
    conn.data_received(stream[-3:])
    assert rec.events == [("response", 200), ("response", 201)] and conn.buf == b""


def test_incomplete_chunked_bodies_wait() -> None:
    stream = chunked(200, [b"abcdef", b"g"], trailers="T: 1\r\n")
    for cut in range(len(stream)):
        conn, rec = feed(stream[:cut], [])
        assert rec.events == [], cut
        assert conn.buf == stream[:cut] and conn.busy


@pytest.mark.parametrize("header", ["Connection: close", "connection: close", "Connection: Close"])
def test_connection_close_ends_the_connection(header: str) -> None:
    stream = response(200, b"bye", f"content-length: {{n}}\r\n{header}\r\n") + response(200, b"never")
    conn, rec = feed(stream, [])
    # The owner sees the connection closed already, so it opens another instead of sending.
    assert rec.events == [("response", 200)] and rec.closed_when_answered == [True]
    # The transport's connection_lost that follows the abort is not reported again.
    conn.connection_lost(None)
    assert rec.events == [("response", 200)]


def test_keep_alive_is_not_closed() -> None:
    conn, rec = feed(response(200, b"x", "content-length: {n}\r\nconnection: keep-alive\r\n"), [])
    assert rec.closed_when_answered == [False] and not conn.closed


@pytest.mark.parametrize("busy", [True, False])
def test_lost_connection_is_reported_once(busy: bool) -> None:
    rec = Recorder()
    conn = Connection(rec)
    conn.busy = busy
    conn.connection_lost(ConnectionResetError())
    conn.connection_lost(None)
    assert rec.events == [("lost", busy)]
    assert conn.closed and not conn.busy


def test_abort_without_a_transport_does_nothing() -> None:
    conn = Connection(Recorder())
    conn.abort()
    assert not conn.closed


class _Transport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


@pytest.mark.parametrize(
    "stream",
    [b"garbage\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n"],
    ids=["status", "length"],
)
def test_a_response_that_is_not_http_drops_the_connection(stream: bytes) -> None:
    # No answer is reported and nothing raises into the event loop: the transport is aborted,
    # and its connection_lost reports the request in flight (on a real connection:
    # tests/integration/test_loadgen_closed.py).
    rec = Recorder()
    conn = Connection(rec)
    conn.transport = transport = _Transport()
    conn.busy = True
    conn.data_received(stream)
    assert transport.aborted
    assert rec.events == []


# -- request_bytes -------------------------------------------------------------------------


def test_request_bytes_post() -> None:
    raw = request_bytes(
        "POST", "/v2/models/m/infer", "h:8000", b'{"a":1}', {"Content-Type": "application/json"}
    )
    assert raw == (
        b"POST /v2/models/m/infer HTTP/1.1\r\nHost: h:8000\r\nContent-Length: 7\r\n"
        b'Content-Type: application/json\r\n\r\n{"a":1}'
    )


def test_request_bytes_without_a_body() -> None:
    assert (
        request_bytes("GET", "/v2/health/ready", "h") == b"GET /v2/health/ready HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    # A POST always says how long its (empty) body is, or the server would wait for one.
    assert request_bytes("POST", "/x", "h") == b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
