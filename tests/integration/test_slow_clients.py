"""Slow and greedy clients never starve the others: trickled headers and stalled bodies
are cut off (408), connections past the cap are refused (503) rather than accepted and
starved, and unfinished bodies hold a bounded number of bytes. Real server, real sockets."""

from __future__ import annotations

import json
import resource
import socket
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import models as bench_models
from tests.integration.serving import start_server, stop_server

pytestmark = pytest.mark.integration

BODY = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [0.5] * 20}]}


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _answer(s: socket.socket, timeout: float = 5.0) -> bytes:
    """What the server sent before closing (b"" if it closed without a word)."""
    s.settimeout(timeout)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out


def _closed(url: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for s in family.samples:
            if s.name == "mlrt_connections_closed_total":
                out[s.labels["reason"]] = s.value
    return out


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return bench_models.mlp(tmp_path / "mlp.onnx")


def _raise_file_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"the open-file limit ({hard}) is below the {need} this test opens")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def test_a_thousand_stalled_connections_never_stop_a_normal_client(tmp_path: Path, model: Path) -> None:
    _raise_file_limit(1400)
    srv = start_server([f"mlp={model}"], tmp_path, ["--header-timeout", "2"])
    port = int(srv.host_port.rpartition(":")[2])
    stalled: list[socket.socket] = []
    try:
        for i in range(1000):
            s = _connect(port)
            if i % 2:  # half trickle a request line, half send nothing at all
                s.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\n")
            stalled.append(s)
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            for _ in range(20):
                started = time.monotonic()
                assert http.post("/v2/models/mlp/infer", json=BODY).status_code == 200
                assert time.monotonic() - started < 0.5
        # Past the header timeout (and the once-a-second sweep) every one is closed, with a 408.
        time.sleep(3.5)
        answers = [_answer(s, 2.0) for s in stalled[:50]]
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:3]
        deadline = time.monotonic() + 10
        while _closed(srv.url).get("header_timeout", 0) < 1000 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _closed(srv.url)["header_timeout"] == 1000
    finally:
        for s in stalled:
            s.close()
        stop_server(srv)


def test_a_stalled_body_is_cut_and_bodies_hold_a_bounded_budget(tmp_path: Path, model: Path) -> None:
    args = ["--body-timeout", "1", "--min-body-rate", "1048576", "--max-buffered-bytes", "5000000"]
    srv = start_server([f"mlp={model}"], tmp_path, args)
    port = int(srv.host_port.rpartition(":")[2])
    greedy: list[socket.socket] = []
    try:
        # Declares 60 MB, sends 2 MB, stalls: its deadline is 1 s + 2 MB at 1 MiB/s, about 3 s.
        head = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000\r\n\r\n"
        greedy += [_connect(port) for _ in range(3)]
        for s in greedy[:2]:
            s.sendall(head + b"x" * 2_000_000)
        time.sleep(0.5)
        # The third would take the buffered bytes past 5 MB: refused at once.
        greedy[2].sendall(head + b"x" * 2_000_000)
        assert _answer(greedy[2]).startswith(b"HTTP/1.1 503")
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            assert http.post("/v2/models/mlp/infer", json=BODY).status_code == 200
        started = time.monotonic()
        answers = [_answer(s, 10.0) for s in greedy[:2]]
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
        assert time.monotonic() - started < 6
        closed = _closed(srv.url)
        assert closed["buffer_budget"] == 1 and closed["body_timeout"] == 2
        text = httpx.get(f"{srv.url}/metrics").text
        assert "mlrt_buffered_request_bytes 0.0" in text
    finally:
        for s in greedy:
            s.close()
        stop_server(srv)


def test_connections_past_the_cap_are_refused_not_starved(tmp_path: Path, model: Path) -> None:
    srv = start_server([f"mlp={model}"], tmp_path, ["--max-connections", "20"])
    port = int(srv.host_port.rpartition(":")[2])
    held: list[socket.socket] = []
    try:
        held += [_connect(port) for _ in range(20)]
        time.sleep(0.3)
        extra = _connect(port)
        held.append(extra)
        assert _answer(extra).startswith(b"HTTP/1.1 503")
        for s in held[:5]:
            s.close()
        time.sleep(0.3)
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            assert http.post("/v2/models/mlp/infer", json=BODY).status_code == 200
        assert _closed(srv.url)["too_many_connections"] >= 1
    finally:
        for s in held:
            s.close()
        stop_server(srv)


def test_a_trickled_body_is_cut_by_its_rate(tmp_path: Path, model: Path) -> None:
    srv = start_server([f"mlp={model}"], tmp_path, ["--body-timeout", "1", "--min-body-rate", "1000"])
    port = int(srv.host_port.rpartition(":")[2])
    s = _connect(port)
    try:
        s.sendall(b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        started = time.monotonic()
        answer = b""
        # A byte every 0.3 s never leaves the body idle for the 1 s body timeout, but is
        # far behind 1000 bytes/s: cut at about 1 s (plus the once-a-second sweep).
        while time.monotonic() - started < 8:
            try:
                s.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
            s.settimeout(0.3)
            try:
                answer += s.recv(4096)
            except TimeoutError:
                continue
            if answer:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - started < 3.5
        assert _closed(srv.url)["body_timeout"] == 1
    finally:
        s.close()
        stop_server(srv)


def _request(s: socket.socket, path: str, body: bytes) -> bytes:
    """One keep-alive request; the answer's head and body (read to its Content-Length)."""
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        assert chunk, "the server closed the connection instead of answering"
        got += chunk
    head, _, rest = got.partition(b"\r\n\r\n")
    fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:])
    length = int({k.lower(): v for k, v in fields.items()}[b"content-length"])
    while len(rest) < length:
        rest += s.recv(65536)
    return head + b"\r\n\r\n" + rest


def test_idle_keep_alive_connections_close_and_busy_ones_stay(tmp_path: Path, model: Path) -> None:
    """The sweep closes a connection idle past --keep-alive (no timer per response); one in
    use, or waiting for a slow answer longer than the keep-alive, stays open."""
    srv = start_server(
        [f"mlp={model}", "long=tests.integration.slowmodels:LongDouble"], tmp_path, ["--keep-alive", "1"]
    )
    port = int(srv.host_port.rpartition(":")[2])
    body = json.dumps(BODY).encode()
    x = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [100, 2, 3, 4]}
    slow = json.dumps({"inputs": [x]})
    try:
        idle, busy, waiting = _connect(port), _connect(port), _connect(port)
        assert _request(idle, "/v2/models/mlp/infer", body).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        waiting.sendall(
            b"POST /v2/models/long/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(slow), slow.encode())
        )
        while time.monotonic() - started < 3.2:  # a request every 0.4 s: never idle 1 s
            assert _request(busy, "/v2/models/mlp/infer", body).startswith(b"HTTP/1.1 200")
            time.sleep(0.4)
        # Idle past 1 s (and the sweep, once a second): closed without a word.
        assert _answer(idle, timeout=1.0) == b""
        # The slow answer (2.5 s) came on its connection, which was never idle meanwhile.
        answer = _answer(waiting, timeout=0.5)
        assert answer.startswith(b"HTTP/1.1 200")
        assert b'"data":[201.0,5.0,7.0,9.0]' in answer.replace(b" ", b"")
        assert _closed(srv.url).get("keep_alive", 0) == 0  # idle closes are not cuts
        for s in (idle, busy, waiting):
            s.close()
    finally:
        stop_server(srv)
