"""A lean blocking HTTP/1.1 client for runtime.client: one keep-alive connection per
thread, over TCP or a Unix socket, straight on sockets.

httpx costs ~0.5 ms of Python per call on a small machine and http.client's header
parsing ~0.1 ms, both more than a small model's whole server-side latency; this does
only what a V2 call needs: one request line, a few headers, a Content-Length or chunked
body back.

While it waits for an answer the calling thread sleeps in the kernel: it costs no CPU,
however long the server takes. `busy_poll_us` trades CPU for latency where the caller
wants that (see docs/formats.md).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

#: The most a body's buffer is given before its bytes arrive (it grows as they do).
_PREALLOC_BYTES = 64 << 20
_MAX_HEADER_BYTES = 64 * 1024
_HEADS_MAX = 256  # encoded request heads kept per client
# What one read asks for. recv() allocates that much each time before it shrinks to what
# came; past glibc's mmap threshold (128 KiB unless the process has freed larger blocks)
# every read would map and unmap memory: three system calls, ~14 µs on a small VM.
_RECV_BYTES = 65536
_POLL_BACKOFF_MAX = 64
_HEX = b"0123456789abcdefABCDEF"
_CAN_POLL = hasattr(socket, "MSG_DONTWAIT") and hasattr(os, "sched_yield")


# Header name -> what _Headers.get looks for; callers ask for the same few names.
_HEADER_KEYS: dict[str, bytes] = {}
_HEADER_KEYS_MAX = 64


class _Headers:
    """Response headers, looked up by name in any case.

    Kept as the raw header block and searched on lookup: a call reads two to four
    headers, which costs less than splitting all of them into a dict. As with a dict
    filled in order, the last of repeated headers wins.
    """

    __slots__ = ("_raw", "_lower")

    def __init__(self, raw: bytes) -> None:
        # raw: the header lines, each one preceded by CRLF (b"\r\nName: value\r\n...").
        self._raw = raw
        self._lower = raw.lower()  # ASCII only: offsets stay the same as in raw

    def get(self, name: str, default: str | None = None) -> str | None:
        key = _HEADER_KEYS.get(name)
        if key is None:
            key = b"\r\n" + name.lower().encode("latin-1") + b":"
            if len(_HEADER_KEYS) < _HEADER_KEYS_MAX:
                _HEADER_KEYS[name] = key
        i = self._lower.rfind(key)
        if i < 0:
            return default
        start = i + len(key)
        end = self._raw.find(b"\r\n", start)
        # Optional whitespace around a value is SP or HTAB only (RFC 9110), in get and items alike.
        return self._raw[start : end if end >= 0 else None].strip(b" \t").decode("latin-1")

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def items(self) -> list[tuple[str, str]]:
        pairs = []
        for line in self._raw.decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                pairs.append((name.lower(), value.strip(" \t")))
        return pairs

    def __repr__(self) -> str:
        return f"_Headers({self.items()!r})"


@dataclass(slots=True)
class Response:
    """What runtime.client reads from a response (the names httpx.Response uses)."""

    status_code: int
    reason_phrase: str
    headers: _Headers
    content: bytes


class TransportError(Exception):
    """The request could not be sent or its response not read."""

    def __init__(self, message: str, timeout: bool = False, retryable: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.retryable = retryable


class _Closed(ConnectionResetError):
    """The server closed the connection in order (a read returned nothing), where a reset
    is a plain ConnectionResetError: only the first can end a body read to the close."""


class _Connection:
    """One socket and what has been read from it but not consumed yet."""

    __slots__ = ("sock", "buf", "busy_poll_s", "in_flight", "received", "_sleep_through", "_backoff")

    def __init__(
        self, sock: socket.socket, busy_poll_s: float = 0.0, in_flight: list[None] | None = None
    ) -> None:
        self.sock = sock
        self.buf = b""
        self.busy_poll_s = busy_poll_s
        self.in_flight = in_flight if in_flight is not None else []  # one entry per call under way
        self.received = 0  # bytes read from the socket so far: did an answer begin?
        self._sleep_through = 0  # reads left to wait for asleep before polling again
        self._backoff = 0  # how many reads the last miss made us sleep through

    def _fill(self) -> None:
        try:
            if not self.busy_poll_s or len(self.in_flight) > 1:
                # Polling, if asked for, only for a lone call: other threads with calls
                # under way can use the CPU (and the GIL) better.
                chunk = self.sock.recv(_RECV_BYTES)  # asleep until the answer (or SO_RCVTIMEO)
            elif self._sleep_through:
                self._sleep_through -= 1
                chunk = self.sock.recv(_RECV_BYTES)
            else:
                chunk = self._recv_polling()
        except BlockingIOError:  # SO_RCVTIMEO ran out
            raise TimeoutError("no response within the timeout") from None
        if not chunk:
            raise _Closed("the server closed the connection")
        self.received += len(chunk)
        self.buf += chunk

    def _recv_polling(self) -> bytes:
        # Opt-in (busy_poll_us): ask without sleeping until busy_poll_s has passed, then
        # sleep as usual. A sleeping thread must be woken when the answer arrives, which
        # on a virtual machine means waking a halted vCPU: that can cost more than a small
        # model's whole answer; polling keeps a CPU busy instead.
        # Each miss doubles how many reads we then wait for asleep (up to _POLL_BACKOFF_MAX),
        # so a server slower than the budget costs at most one budget per that many calls.
        # sched_yield lets a server sharing our CPU run at once instead of after our slice.
        recv = self.sock.recv
        clock = time.perf_counter
        deadline = clock() + self.busy_poll_s
        while True:
            try:
                chunk = recv(_RECV_BYTES, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if clock() < deadline:
                    os.sched_yield()
                    continue
                self._backoff = min(max(1, 2 * self._backoff), _POLL_BACKOFF_MAX)
                self._sleep_through = self._backoff
                return recv(_RECV_BYTES)
            self._backoff = 0
            return chunk

    def read_until(self, marker: bytes, limit: int) -> bytes:
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(marker) :]
                return out
            if len(self.buf) > limit:
                raise ValueError("response header too large")
            self._fill()

    def read_exact(self, n: int) -> bytes:
        if len(self.buf) < n:
            if n - len(self.buf) > _RECV_BYTES:
                return self._read_large(n)
            while len(self.buf) < n:
                self._fill()
        if len(self.buf) == n:  # the usual case: the body is all that is left
            out, self.buf = self.buf, b""
            return out
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _read_large(self, n: int) -> bytes:
        # Straight into one buffer of the body's size: appended read after read, a large
        # body would be copied over and over. Asleep throughout: the answer is under way.
        # The buffer starts at most _PREALLOC_BYTES and doubles as the body arrives, so a
        # length the server only claims (a broken or hostile Content-Length or chunk size)
        # costs what it sends, not what it claims.
        body = bytearray(max(min(n, _PREALLOC_BYTES), len(self.buf)))
        have = len(self.buf)
        body[:have] = self.buf
        self.buf = b""
        try:
            while have < n:
                if have == len(body):
                    body.extend(bytes(min(len(body), n - have)))
                with memoryview(body) as view:
                    got = self.sock.recv_into(view[have:])
                if not got:
                    raise _Closed("the server closed the connection")
                self.received += got
                have += got
        except BlockingIOError:  # SO_RCVTIMEO ran out
            raise TimeoutError("no response within the timeout") from None
        return bytes(body)

    def read_to_close(self) -> bytes:
        chunks = [self.buf]
        self.buf = b""
        try:
            while True:
                self._fill()
                chunks.append(self.buf)
                self.buf = b""
        except _Closed:  # the end of the body; a reset (RST) is not, and is raised
            pass
        return b"".join(chunks)


class KeepAliveHTTP:
    def __init__(
        self, base_url: str, uds: str | None, timeout_s: float | None, busy_poll_us: float | None = 0
    ) -> None:
        self._busy_poll_s = _busy_poll_seconds(busy_poll_us)
        parts = urlsplit(base_url)
        if parts.scheme == "https":
            raise ValueError("the blocking client speaks plain HTTP; put TLS in a sidecar proxy")
        self._address = (parts.hostname or "localhost", parts.port or 80)
        self._host_header = parts.netloc or "localhost"
        self._prefix = parts.path.rstrip("/")
        self._uds = uds
        self._timeout = timeout_s
        self._local = threading.local()
        self._all: set[_Connection] = set()
        self._lock = threading.Lock()
        self._heads: dict[tuple[str, ...], bytes] = {}
        self._in_flight: list[None] = []  # append and pop are atomic: no lock on the hot path

    def _connect(self) -> _Connection:
        if self._uds is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: object = self._uds
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in self._address[0] else socket.AF_INET)
            target = self._address
        try:
            sock.settimeout(self._timeout)
            sock.connect(target)  # type: ignore[arg-type]
            if self._uds is None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._timeout is not None:
                # Python times out a socket by polling it before every send and receive: one
                # more system call each way. The kernel's own timeouts cost nothing until they
                # expire; reads and writes then fail with EAGAIN (see _fill and request).
                seconds = max(self._timeout, 1e-6)
                timeval = struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        conn = _Connection(sock, self._busy_poll_s, self._in_flight)
        with self._lock:
            self._all.add(conn)
        return conn

    def request(
        self, method: str, path: str, *, content: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        body = content or b""
        head = self._head(method, path, headers)
        if body or method in ("POST", "PUT"):
            raw = b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body)
        else:
            raw = head + b"\r\n"
        if not self._busy_poll_s:
            return self._exchange(raw, method)
        # Polling needs to know whether other threads have calls under way (see _fill).
        self._in_flight.append(None)
        try:
            return self._exchange(raw, method)
        finally:
            self._in_flight.pop()

    def _exchange(self, raw: bytes, method: str) -> Response:
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            received = 0
            try:
                if conn is None:
                    conn = self._local.conn = self._connect()
                received = conn.received
                conn.sock.sendall(raw)
                return self._response(conn, method)
            except (TimeoutError, BlockingIOError) as exc:  # BlockingIOError: SO_SNDTIMEO
                self._drop(conn)
                raise TransportError(f"timed out: {exc}", timeout=True) from exc
            except (BrokenPipeError, ConnectionResetError) as exc:
                self._drop(conn)
                # The server closed an idle keep-alive connection: one retry on a new one,
                # only if nothing of an answer came (else the request may have run: a POST
                # sent again would run twice).
                if fresh or attempt or conn is None or conn.received != received:
                    raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            except (OSError, ValueError) as exc:
                self._drop(conn)
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _head(self, method: str, path: str, headers: dict[str, str] | None) -> bytes:
        """Request line, Host and `headers`, encoded; the same few are sent again and again."""
        key = (method, path, *headers.items()) if headers else (method, path)
        head = self._heads.get(key)
        if head is None:
            lines = [f"{method} {self._prefix}{path} HTTP/1.1", f"Host: {self._host_header}"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
            if len(self._heads) < _HEADS_MAX:
                self._heads[key] = head
        return head

    def _response(self, conn: _Connection, method: str) -> Response:
        # Runs on every call right after the thread wakes, with its caches cold: the
        # fewer steps the better (bytes searched in place, no dict of all the headers).
        while True:
            head = conn.read_until(b"\r\n\r\n", _MAX_HEADER_BYTES)
            eol = head.find(b"\r\n")
            if eol < 0:
                eol = len(head)
            version, _, rest = head[:eol].partition(b" ")
            code, _, reason = rest.partition(b" ")
            if not version.startswith(b"HTTP/1.") or not code.isdigit():
                raise ValueError(f"not an HTTP/1.x response: {head[:80]!r}")
            status = int(code)
            if not 100 <= status < 200:
                break
            if status == 101:  # never asked for: the connection would speak something else
                raise ValueError("unexpected 101 Switching Protocols")
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
        headers = _Headers(head[eol:])
        close = version == b"HTTP/1.0"
        value = headers.get("connection")
        if value is not None and value.lower() == "close":
            close = True
        if method == "HEAD" or status in (204, 304):
            data = b""
        elif (length := headers.get("content-length")) is not None:
            if not length.isdigit():
                raise ValueError(f"invalid Content-Length {length[:40]!r}")
            if headers.get("transfer-encoding") is not None:
                # Which one frames the body? Guessing is how responses get split (RFC 9112 6.3).
                raise ValueError("both Content-Length and Transfer-Encoding in one response")
            data = conn.read_exact(int(length))
        elif (headers.get("transfer-encoding") or "").lower() == "chunked":
            data = self._chunked(conn)
        else:
            data = conn.read_to_close()
            close = True
        if close:
            self._drop(conn)
        return Response(status, reason.decode("latin-1"), headers, data)

    @staticmethod
    def _chunked(conn: _Connection) -> bytes:
        out = []
        while True:
            sent = conn.read_until(b"\r\n", 1024).split(b";")[0]
            line = sent.strip(b" \t")
            if not line or line.strip(_HEX):  # a sign, 0x, _ or anything else but hex digits
                raise ValueError(f"invalid chunk size {sent[:20]!r}")
            size = int(line, 16)
            if size == 0:
                while conn.read_until(b"\r\n", _MAX_HEADER_BYTES):  # trailers, up to a blank line
                    pass
                return b"".join(out)
            out.append(conn.read_exact(size))
            if conn.read_exact(2) != b"\r\n":
                raise ValueError("a chunk longer than its size line")

    def _drop(self, conn: _Connection | None) -> None:
        self._local.conn = None
        if conn is None:
            return
        conn.sock.close()
        with self._lock:
            self._all.discard(conn)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, set()
        for c in conns:
            c.sock.close()


def _busy_poll_seconds(busy_poll_us: float | None) -> float:
    """How long a read polls before it sleeps; 0 (the default, also None): never."""
    if busy_poll_us is None:
        return 0.0
    if busy_poll_us < 0:
        raise ValueError(f"busy_poll_us must be >= 0, got {busy_poll_us}")
    if busy_poll_us and not _CAN_POLL:
        raise ValueError("busy polling needs MSG_DONTWAIT and sched_yield, which this platform lacks")
    return busy_poll_us / 1e6
