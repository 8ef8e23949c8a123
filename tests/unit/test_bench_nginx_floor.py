"""bench.nginx_floor's configuration runs a real nginx that answers POSTs (body read and
dropped), GETs and pipelined requests with the fixed JSON, on keep-alive connections."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from bench._harness import connect_when_listening, free_port
from bench.nginx_floor import available, command
from bench.wire_floor import _BODY

INSTALL = "install it (Debian: apt-get install nginx-light)"


@pytest.fixture
def nginx() -> None:
    if available() is None:
        # CI installs nginx (.ci/run) and must run this; a developer's machine may not have it.
        if os.environ.get("CI"):
            pytest.fail(f"nginx not found; {INSTALL}", pytrace=False)
        pytest.skip(f"nginx not found; {INSTALL}")


def _response(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
    """One Content-Length framed response off `sock` (and what is left after it)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, buf
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(h.split(b":")[1]) for h in lines if h.startswith(b"content-length:"))
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def test_nginx_answers_every_request_with_the_fixed_json(tmp_path: Path, nginx: None) -> None:
    port = free_port()
    proc = subprocess.Popen(command(tmp_path / "nginx", port))
    try:
        sock = connect_when_listening(port, proc, "nginx")
        body = b'{"inputs": [' + b"0.5, " * 1000 + b"0.5]}"
        post = b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        get = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
        with sock:
            sock.sendall(post + get + post)  # pipelined, on one keep-alive connection
            buf = b""
            for _ in range(3):
                answer, buf = _response(sock, buf)
                assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
                assert answer.endswith(b"\r\n\r\n" + _BODY)
                assert b"content-type: application/json" in answer.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
