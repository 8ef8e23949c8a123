"""runtime._client_http: the blocking client's keep-alive HTTP/1.1, against scripted servers."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from runtime import _client_http as _http
from runtime._client_http import KeepAliveHTTP, TransportError, _Connection, _Headers
from runtime.client import Client

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


def test_headers_are_found_in_any_case_and_the_last_of_repeats_wins() -> None:
    headers = _Headers(b"\r\nContent-Type: text/plain \r\nX-Twice: 1\r\nx-twice: 2\r\nDate:  Fri, 4 Dec")
    assert headers.get("content-type") == headers["CONTENT-TYPE"] == "text/plain"
    assert headers.get("X-TWICE") == "2"  # as a dict filled in order
    assert headers.get("date") == "Fri, 4 Dec"  # the last line has no CRLF after it
    assert headers.get("type") is None and headers.get("content-length", "0") == "0"
    assert "x-twice" in headers and "twice" not in headers and 1 not in headers
    with pytest.raises(KeyError):
        headers["absent"]
    assert headers.items() == [("content-type", "text/plain"), ("x-twice", "1"), ("x-twice", "2"),
                               ("date", "Fri, 4 Dec")]  # fmt: skip


@pytest.mark.parametrize("length", [b"-1", b"5x", b""])
def test_a_bad_content_length_is_a_transport_error(scripted, length: bytes) -> None:
    def handler(conn: socket.socket, n: int) -> bool:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\nhello")
        return False

    with pytest.raises(TransportError, match="Content-Length"):
        KeepAliveHTTP(scripted(handler), None, 5.0).request("GET", "/")


# Small answers read in a fresh interpreter (as a small application that has freed no large
# block yet): it prints the page faults of its last 2000 reads.
_READS = """
import resource, socket
from runtime._client_http import _Connection
a, b = socket.socketpair()
conn = _Connection(a)
for i in range(2100):
    if i == 100:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    b.sendall(b"x" * 200)
    conn._fill()
    conn.buf = b""
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_reads_do_not_map_fresh_memory_each_time() -> None:
    # recv(n) allocates n bytes first. Past glibc's mmap threshold (128 KiB by default) that
    # is a fresh mapping per read, mapped, faulted in and unmapped again: 2 page faults and
    # 3 system calls per read (~14 µs). Below it, the same heap memory serves every read.
    out = subprocess.run([sys.executable, "-c", _READS], capture_output=True, text=True, check=True)
    assert int(out.stdout) < 200, out.stdout  # was 4000


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_large_bodies_arrive_whole(scripted, framing: str) -> None:
    body = bytes(range(256)) * 20_000  # 5 MB, many reads
    if framing == "length":
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    elif framing == "chunked":
        chunks = [body[i : i + 1_000_000] for i in range(0, len(body), 1_000_000)]
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        answer += b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    else:
        answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body

    def handler(conn: socket.socket, n: int) -> bool:
        conn.sendall(answer)
        return framing != "close"

    http = KeepAliveHTTP(scripted(handler), None, 5.0)
    for _ in range(2):
        assert http.request("GET", "/big").content == body
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


def test_a_server_that_never_answers_times_out(scripted) -> None:
    answered = threading.Event()

    def handler(conn: socket.socket, n: int) -> bool:
        answered.wait(5)  # holds the request without a word
        return False

    http = KeepAliveHTTP(scripted(handler), None, 0.2)
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        http.request("POST", "/v2/models/m/infer", content=b"{}")
    answered.set()
    assert info.value.timeout
    assert 0.15 < time.monotonic() - started < 3.0
    http.close()


def test_a_busy_polling_client_still_times_out(scripted) -> None:
    answered = threading.Event()

    def handler(conn: socket.socket, n: int) -> bool:
        answered.wait(5)
        return False

    http = KeepAliveHTTP(scripted(handler), None, 0.2, busy_poll_us=1000)
    started = time.monotonic()
    with pytest.raises(TransportError) as info:
        http.request("POST", "/v2/models/m/infer", content=b"{}")
    answered.set()
    assert info.value.timeout
    assert http._in_flight == []  # the failed call is no longer counted
    assert time.monotonic() - started < 3.0
    http.close()
    with pytest.raises(ValueError, match="busy_poll_us"):
        KeepAliveHTTP("http://127.0.0.1:1", None, 1.0, busy_poll_us=-1)


def test_polling_backs_off_while_answers_are_slower_than_it_and_resumes_when_fast() -> None:
    a, b = socket.socketpair()
    conn = _Connection(a, busy_poll_s=0.0002)

    def answer_after(delay_s: float) -> None:
        threading.Timer(delay_s, b.sendall, (b"x",)).start()

    skipped = []
    for _ in range(4):  # each answer misses the 200 µs budget
        answer_after(0.1)
        conn._fill()
        skipped.append(conn._sleep_through)
        while conn._sleep_through:  # the reads that sleep at once, answered at once
            b.sendall(b"y")
            conn._fill()
    assert skipped == [1, 2, 4, 8]
    b.sendall(b"z")  # an answer waiting when polling resumes: polling caught it
    conn._fill()
    assert (conn._backoff, conn._sleep_through) == (0, 0)
    assert conn.buf.count(b"x") == 4 and conn.buf.endswith(b"z")
    a.close()
    b.close()


def test_no_polling_while_other_threads_have_calls_under_way() -> None:
    a, b = socket.socketpair()
    in_flight = [None, None]  # this call and another thread's
    conn = _Connection(a, busy_poll_s=0.0002, in_flight=in_flight)
    threading.Timer(0.1, b.sendall, (b"x",)).start()
    conn._fill()
    assert (conn._backoff, conn._sleep_through) == (0, 0)  # slept: no poll missed
    in_flight.pop()
    threading.Timer(0.1, b.sendall, (b"x",)).start()
    conn._fill()
    assert conn._backoff == 1  # alone again: polled, and missed
    a.close()
    b.close()


class _CountingSocket(socket.socket):
    """A real socket that counts reads asked not to wait which found nothing: polls."""

    misses = 0

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        try:
            return super().recv(bufsize, flags)
        except BlockingIOError:
            if flags & socket.MSG_DONTWAIT:
                self.misses += 1
            raise


def _counting_pair() -> tuple[_CountingSocket, socket.socket]:
    a, b = socket.socketpair()
    return _CountingSocket(fileno=a.detach()), b


@pytest.mark.parametrize("busy_poll_s", [0.0, 0.0002])
def test_the_default_sleeps_while_it_waits_and_polling_is_opt_in(busy_poll_s: float) -> None:
    a, b = _counting_pair()
    conn = _Connection(a, busy_poll_s=busy_poll_s)
    threading.Timer(0.1, b.sendall, (b"x",)).start()
    cpu = time.thread_time()
    conn._fill()
    cpu = time.thread_time() - cpu
    assert conn.buf == b"x"
    if busy_poll_s:
        assert a.misses > 0  # polled for the budget, then slept
    else:
        # Asleep for the whole 100 ms: not one read that found nothing, and next to no CPU.
        assert a.misses == 0
        assert cpu < 0.02
    a.close()
    b.close()


def test_no_polling_unless_asked_for() -> None:
    assert _http._busy_poll_seconds(None) == 0.0
    assert _http._busy_poll_seconds(0) == 0.0
    assert _http._busy_poll_seconds(50) == 50e-6
    assert KeepAliveHTTP("http://127.0.0.1:1", None, 1.0)._busy_poll_s == 0.0


def test_a_default_client_sleeps_while_a_server_takes_100_ms(scripted) -> None:
    def handler(conn: socket.socket, n: int) -> bool:
        if n > 1:
            time.sleep(0.1)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        return True

    with Client(scripted(handler), format="json") as c:
        assert c.is_live()  # connected
        conn = c._fast._local.conn  # type: ignore[union-attr]
        conn.sock = counting = _CountingSocket(fileno=conn.sock.detach())  # the same connection, counted
        cpu = time.thread_time()
        assert c.is_live()
        cpu = time.thread_time() - cpu
    assert counting.misses == 0  # never asked before the answer was there
    assert cpu < 0.02  # ~0 for a 100 ms wait


def test_request_heads_carry_each_calls_headers() -> None:
    # The encoded head is kept per (method, path, headers): each call must still send its own.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen()
    received = bytearray()

    def serve() -> None:
        conn, _ = lsock.accept()
        with conn:
            for _ in range(4):
                while received.count(b"\r\n\r\n") <= _:
                    received.extend(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    http = KeepAliveHTTP(f"http://127.0.0.1:{lsock.getsockname()[1]}", None, 5.0)
    for value in ("1", "2", "1"):
        assert http.request("POST", "/p", content=b"", headers={"x-n": value}).status_code == 200
    assert http.request("GET", "/q").status_code == 200
    t.join(5)
    http.close()
    lsock.close()
    requests = bytes(received).split(b"\r\n\r\n")[:4]
    assert [r.split(b"\r\n")[0] for r in requests] == [b"POST /p HTTP/1.1"] * 3 + [b"GET /q HTTP/1.1"]
    assert [r for r in requests[0].split(b"\r\n") if r.startswith(b"x-n")] == [b"x-n: 1"]
    assert b"x-n: 2" in requests[1] and b"x-n: 1" in requests[2] and b"x-n" not in requests[3]
    assert b"Content-Length: 0" in requests[0] and b"Content-Length" not in requests[3]
