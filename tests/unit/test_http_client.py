"""runtime._http: the blocking client's keep-alive HTTP/1.1, against scripted servers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from runtime._http import KeepAliveHTTP, TransportError

Handler = Callable[[socket.socket, int], bool]  # (connection, request number) -> keep open?


@pytest.fixture
def scripted() -> Iterator[Callable[[Handler], str]]:
    servers: list[tuple[socket.socket, threading.Thread]] = []
    stop = threading.Event()

    def start(handler: Handler) -> str:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        lsock.settimeout(0.05)  # so the loop notices `stop`
        count = [0]

        def serve() -> None:
            while not stop.is_set():
                try:
                    conn, _ = lsock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                conn.settimeout(5)
                with conn:
                    while True:
                        data = b""
                        while b"\r\n\r\n" not in data:
                            chunk = conn.recv(65536)
                            if not chunk:
                                break
                            data += chunk
                        if not data:
                            break
                        count[0] += 1
                        if not handler(conn, count[0]):
                            break

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        servers.append((lsock, t))
        return f"http://127.0.0.1:{lsock.getsockname()[1]}"

    yield start
    stop.set()
    for lsock, t in servers:
        lsock.close()
        t.join(timeout=5)


def test_content_length_and_keep_alive(scripted) -> None:
    def handler(conn: socket.socket, n: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
        return True

    http = KeepAliveHTTP(scripted(handler), None, 5.0)
    for _ in range(3):
        r = http.request("GET", "/x")
        assert (r.status_code, r.content, r.headers.get("Content-Type")) == (200, b"hello", "text/plain")
    http.close()


def test_chunked_body_and_connection_close(scripted) -> None:
    def handler(conn: socket.socket, n: int) -> bool:
        conn.sendall(
            b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b"4\r\nwiki\r\n6;ext=1\r\npedia \r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        return False

    http = KeepAliveHTTP(scripted(handler), None, 5.0)
    r = http.request("POST", "/y", content=b"{}")
    assert (r.status_code, r.reason_phrase, r.content) == (503, "Busy", b"wikipedia ")
    assert http.request("POST", "/y", content=b"{}").content == b"wikipedia "  # reconnected
    http.close()


def test_idle_connection_closed_by_the_server_is_retried_once(scripted) -> None:
    def handler(conn: socket.socket, n: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return n % 2 == 0  # close after every other answer, without saying so

    http = KeepAliveHTTP(scripted(handler), None, 5.0)
    assert [http.request("GET", "/").content for _ in range(4)] == [b"ok"] * 4
    http.close()


def test_refused_and_garbage() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError, match="Refused"):
        KeepAliveHTTP(f"http://127.0.0.1:{port}", None, 5.0).request("GET", "/")


def test_not_http(scripted) -> None:
    def handler(conn: socket.socket, n: int) -> bool:
        conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
        return False

    with pytest.raises(TransportError, match="not an HTTP"):
        KeepAliveHTTP(scripted(handler), None, 5.0).request("GET", "/")
