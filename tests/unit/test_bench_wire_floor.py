"""bench.wire_floor frames requests as wrk and the health check send them, and answers
each once over a real socket, pipelined ones included."""

from __future__ import annotations

import subprocess
import sys

from bench._harness import connect_when_listening, free_port
from bench.wire_floor import ANSWER, frame


def _post(body: bytes, name: str = "Content-Length") -> bytes:
    head = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\n%s: %d\r\n\r\n" % (name.encode(), len(body))
    return head + body


def test_whole_requests_are_taken_from_the_front_and_a_partial_one_waits() -> None:
    get = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
    first, second = _post(b'{"inputs": []}'), _post(b"x" * 100, "content-length")
    buf = bytearray(get + first + second[:-10])
    assert frame(buf) == 2  # the GET (no body) and the first POST
    assert bytes(buf) == second[:-10]
    buf += second[-10:]
    assert frame(buf) == 1 and buf == bytearray()
    half_head = bytearray(b"POST / HTTP/1.1\r\nContent-Len")
    assert frame(half_head) == 0 and bytes(half_head) == b"POST / HTTP/1.1\r\nContent-Len"


def test_the_server_answers_every_request_on_a_real_socket() -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.wire_floor", "--port", str(port)])
    try:
        with connect_when_listening(port, proc, "bench.wire_floor") as sock:
            sock.sendall(_post(b"{}") * 3)  # pipelined: three answers, in one write or more
            got = b""
            while len(got) < 3 * len(ANSWER):
                chunk = sock.recv(65536)
                assert chunk, got
                got += chunk
        assert got == ANSWER * 3
        assert got.startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
