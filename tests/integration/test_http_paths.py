"""The two ways an infer request travels through the server, over raw sockets.

Small, complete, uncompressed bodies go straight from the HTTP parser to the model
(the direct path); chunked, compressed, large or pipelined-behind-a-busy-request
bodies go through ASGI. Both must answer the same bytes, keep HTTP/1.1's rules
(order of pipelined answers, Connection: close, HTTP/1.0) and drop a request whose
client went away before its batch runs.
"""

from __future__ import annotations

import gzip
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.serving import Server, start_server, stop_server
from tests.integration.slowmodels import COMPUTED_LOG_ENV, HOLD_DIR_ENV, read_computed, reference

HELD = "tests.integration.slowmodels:HeldDouble"


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    workdir = tmp_path_factory.mktemp("held")
    log = workdir / "computed.log"
    holds = workdir / "holds"
    holds.mkdir()
    srv = start_server([f"held={HELD}"], workdir, env={COMPUTED_LOG_ENV: str(log), HOLD_DIR_ENV: str(holds)})
    yield srv, log
    stop_server(srv)


def _rows(client: int, seq: int, hold: bool = False) -> np.ndarray:
    return np.array([[client, seq, 9 if hold else 0, 1.5]], np.float32)


def _json_body(x: np.ndarray) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
    ).encode()


def _post(body: bytes, *, extra: str = "", version: str = "1.1", chunked: bool = False) -> bytes:
    head = f"POST /v2/models/held/infer HTTP/{version}\r\nHost: t\r\n{extra}"
    if chunked:
        return (
            head.encode()
            + b"Transfer-Encoding: chunked\r\n\r\n"
            + f"{len(body):x}\r\n".encode()
            + body
            + b"\r\n0\r\n\r\n"
        )
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


class _Reader:
    """Reads HTTP/1.1 responses (Content-Length framed) off one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert self._fill(), "connection closed before a response"
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])
        while len(self.buf) < length:
            assert self._fill(), "connection closed inside a response body"
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def closed(self) -> bool:
        self.sock.settimeout(5)
        return self.buf == b"" and not self._fill()


def _connect(server: Server, rcvbuf: int | None = None) -> socket.socket:
    host, port = server.host_port.split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: sets the window
    sock.settimeout(30)
    sock.connect((host, int(port)))
    return sock


def _outputs(body: bytes) -> np.ndarray:
    doc = json.loads(body)
    out = doc["outputs"][0]
    return np.array(out["data"], np.float32).reshape(out["shape"])


def test_direct_and_asgi_paths_answer_the_same(held: tuple[Server, Path]) -> None:
    server, _ = held
    body = _json_body(_rows(1, 1))
    answers = []
    for raw in (
        _post(body),  # direct
        _post(body, chunked=True),  # ASGI: no Content-Length
        _post(gzip.compress(body), extra="Content-Encoding: gzip\r\n"),  # ASGI: compressed
    ):
        with _connect(server) as sock:
            sock.sendall(raw)
            status, headers, payload = _Reader(sock).response()
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert "date" in headers
        answers.append(payload)
    assert answers[0] == answers[1] == answers[2]
    np.testing.assert_array_equal(_outputs(answers[0]), reference(_rows(1, 1)))


def test_errors_on_the_direct_path(held: tuple[Server, Path]) -> None:
    server, _ = held
    with _connect(server) as sock:
        reader = _Reader(sock)
        sock.sendall(_post(b'{"inputs": [}'))
        status, _, payload = reader.response()
        assert status == 400 and "malformed JSON" in json.loads(payload)["error"]
        sock.sendall(_post(b"{}").replace(b"/held/", b"/nope/"))
        status, _, payload = reader.response()
        assert status == 404 and "nope" in json.loads(payload)["error"]
        # The connection is still good.
        sock.sendall(_post(_json_body(_rows(1, 2))))
        assert reader.response()[0] == 200


def test_pipelined_requests_are_answered_in_order(held: tuple[Server, Path]) -> None:
    server, _ = held
    rows = [_rows(2, seq) for seq in range(6)]
    raws = [_post(_json_body(x)) for x in rows]
    # A GET between them goes through Starlette; a chunked one through ASGI.
    raws.insert(3, b"GET /v2/health/ready HTTP/1.1\r\nHost: t\r\n\r\n")
    raws.insert(5, _post(_json_body(_rows(2, 99)), chunked=True))
    with _connect(server) as sock:
        sock.sendall(b"".join(raws))
        reader = _Reader(sock)
        got = [reader.response() for _ in raws]
    assert [g[0] for g in got] == [200] * len(raws)
    infer = [g for i, g in enumerate(got) if i != 3]
    expected = rows[:4] + [_rows(2, 99)] + rows[4:]
    for (_, _, payload), x in zip(infer, expected, strict=True):
        np.testing.assert_array_equal(_outputs(payload), reference(x))


def test_connection_close_and_http_1_0(held: tuple[Server, Path]) -> None:
    server, _ = held
    body = _json_body(_rows(3, 1))
    for raw in (_post(body, extra="Connection: close\r\n"), _post(body, version="1.0")):
        with _connect(server) as sock:
            sock.sendall(raw)
            reader = _Reader(sock)
            status, headers, _ = reader.response()
            assert status == 200
            assert headers.get("connection") == "close"
            assert reader.closed()


def test_body_arriving_in_pieces(held: tuple[Server, Path]) -> None:
    server, _ = held
    raw = _post(_json_body(_rows(4, 1)))
    with _connect(server) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(raw), 17):
            sock.sendall(raw[i : i + 17])
            time.sleep(0.002)
        status, _, payload = _Reader(sock).response()
    assert status == 200
    np.testing.assert_array_equal(_outputs(payload), reference(_rows(4, 1)))


def test_a_client_that_reads_late_gets_every_answer(held: tuple[Server, Path]) -> None:
    # Thousands of pipelined requests while the client reads nothing: the server's write
    # buffer fills, it stops reading until the client drains it, and nothing is lost or
    # reordered.
    server, _ = held
    n = 4000
    raws = b"".join(_post(_json_body(_rows(5, seq))) for seq in range(n))
    with _connect(server, rcvbuf=4096) as sock:
        sender = threading.Thread(target=sock.sendall, args=(raws,))
        sender.start()
        time.sleep(1.0)
        reader = _Reader(sock)
        got = [reader.response() for _ in range(n)]
        sender.join()
    assert all(status == 200 for status, _, _ in got)
    seqs = [int(_outputs(payload)[0, 1]) for _, _, payload in got]
    assert seqs == [2 * seq + 1 for seq in range(n)]


def _until(done: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.005)


def _queue_depth(server: Server) -> int:
    """Rows waiting in the held model's batch queue, from /metrics."""
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    m = re.search(r'^mlrt_queue_depth\{model="held",version="1"\} (\S+)$', metrics, re.M)
    assert m, metrics
    return int(float(m.group(1)))


def test_a_request_whose_client_left_is_dropped_before_its_batch(held: tuple[Server, Path]) -> None:
    # Each step waits for what the server shows of the one before, and the model is held
    # until the test lets it go: on a slow machine the test only takes longer.
    server, log = held
    holds = log.parent / "holds"
    busy, gone, later = _connect(server), _connect(server), _connect(server)
    try:
        busy.sendall(_post(_json_body(_rows(6, 1, hold=True))))
        _until((holds / "holding-6-1").exists, "the model to hold busy's request")
        gone.sendall(_post(_json_body(_rows(6, 2))))
        _until(lambda: _queue_depth(server) == 1, "gone's request in the queue, behind the held batch")
        # The client goes away while its request waits. It closes its sending side only, so
        # that the server's close shows: the server has seen the client leave.
        gone.shutdown(socket.SHUT_WR)
        assert gone.recv(1) == b"", "the server answered a request whose client left"
        later.sendall(_post(_json_body(_rows(6, 3))))
        # The cancelled request still holds its queue place until the head is dropped.
        _until(lambda: _queue_depth(server) == 2, "later's request in the queue, behind gone's")
        (holds / "release-6-1").touch()
        assert _Reader(busy).response()[0] == 200
        status, _, payload = _Reader(later).response()
        assert status == 200
        np.testing.assert_array_equal(_outputs(payload), reference(_rows(6, 3)))
    finally:
        (holds / "release-6-1").touch()  # never leave the shared server held
        busy.close()
        gone.close()
        later.close()
    computed = {seq for client, seq in read_computed(log) if client == 6}
    assert computed == {1, 3}
    assert _queue_depth(server) == 0


def _batch_sizes(server: Server) -> dict[float, float]:
    """The held model's mlrt_batch_size histogram: upper bound -> cumulative count."""
    metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
    pattern = r'^mlrt_batch_size_bucket\{le="([^"]+)",model="held",version="1"\} (\S+)$'
    found = re.findall(pattern, metrics, re.M)
    return {float(le): float(n) for le, n in found}


def test_a_large_batch_answers_each_connection_its_own(held: tuple[Server, Path]) -> None:
    # 40 connections queue behind a held batch, so they run as one batch of 40 whose answers
    # are held and written together (uvicorn_http._HeldWrites); one of them has two more
    # requests pipelined behind its first, answered after it in order.
    server, log = held
    holds = log.parent / "holds"
    busy = _connect(server)
    clients = [_connect(server) for _ in range(40)]
    big_before = _batch_sizes(server)
    try:
        busy.sendall(_post(_json_body(_rows(7, 0, hold=True))))
        _until((holds / "holding-7-0").exists, "the model to hold busy's request")
        for i, sock in enumerate(clients):
            sock.sendall(_post(_json_body(_rows(100 + i, 1))))
        _until(lambda: _queue_depth(server) == 40, "40 requests in the queue behind the held batch")
        clients[0].sendall(_post(_json_body(_rows(100, 2))) + _post(_json_body(_rows(100, 3))))
        (holds / "release-7-0").touch()
        assert _Reader(busy).response()[0] == 200
        for i, sock in enumerate(clients):
            reader = _Reader(sock)
            seqs = [1, 2, 3] if i == 0 else [1]
            for seq in seqs:
                status, _, payload = reader.response()
                assert status == 200
                np.testing.assert_array_equal(_outputs(payload), reference(_rows(100 + i, seq)))
    finally:
        (holds / "release-7-0").touch()
        for sock in [busy, *clients]:
            sock.close()
    after = _batch_sizes(server)
    # A batch of more than 32 ran (so answers were held: _HOLD_BATCH is 16).
    assert after[float("inf")] - after[32.0] > big_before.get(float("inf"), 0) - big_before.get(32.0, 0)


def test_expect_100_continue_goes_through_asgi(held: tuple[Server, Path]) -> None:
    # The client waits for "100 Continue" before it sends the body; the direct path never
    # sends one, so these requests take the ASGI path, which does.
    server, _ = held
    body = _json_body(_rows(7, 1))
    head = _post(body, extra="Expect: 100-continue\r\n")[: -len(body)]
    with _connect(server) as sock:
        sock.sendall(head)
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(4096)
            assert chunk, "connection closed before 100 Continue"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100")
        reader = _Reader(sock)
        reader.buf = interim.split(b"\r\n\r\n", 1)[1]
        sock.sendall(body)
        status, _, payload = reader.response()
    assert status == 200
    np.testing.assert_array_equal(_outputs(payload), reference(_rows(7, 1)))


def test_a_burst_of_new_connections_is_served(held: tuple[Server, Path]) -> None:
    # More connections than the server accepts per wake-up of its listener: the rest are
    # accepted by the new connections themselves (runtime/server/accept.py) and must work
    # like any other.
    server, _ = held
    socks = [_connect(server) for _ in range(100)]
    try:
        for i, sock in enumerate(socks):
            sock.sendall(_post(_json_body(_rows(500 + i, 1))))
        for i, sock in enumerate(socks):
            status, _, payload = _Reader(sock).response()
            assert status == 200
            np.testing.assert_array_equal(_outputs(payload), reference(_rows(500 + i, 1)))
    finally:
        for sock in socks:
            sock.close()
