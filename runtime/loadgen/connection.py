"""One raw HTTP/1.1 keep-alive connection as an asyncio Protocol, with one request in flight.

The load generator sends pre-encoded requests (a bytes object holding request line,
headers and body) and only needs each answer's status and its end, so this parser reads
the status line, Content-Length or chunked framing, and nothing else. Responses are
handed to the owner by a plain callback from `data_received`, not through futures or
tasks: the closed loop sends its next request from inside that callback, which keeps
the generator's cost per request to a few microseconds of Python.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

__all__ = ["Connection", "Owner", "request_bytes"]

_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CONTENT_LENGTH_TITLE = b"\r\nContent-Length:"
_CHUNKED = b"\r\ntransfer-encoding: chunked"
_CLOSE = b"\r\nconnection: close"


def request_bytes(
    method: str, path: str, host: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    """A complete HTTP/1.1 request, ready to write as is."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Owner(Protocol):
    """What a connection reports to (the open or closed loop driver)."""

    def on_response(self, conn: Connection, status: int, now_ns: int) -> None: ...

    def on_lost(self, conn: Connection, in_flight: bool) -> None: ...


def _chunked_end(buf: bytes | bytearray, pos: int) -> int:
    """End offset of a chunked body starting at `pos`, or -1 if it is not complete yet."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return -1
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            # Trailers (usually none) end with an empty line.
            end = buf.find(_HEAD_END, pos - 2)
            return -1 if end < 0 else end + 4
        pos += size + 2
        if pos > len(buf):
            return -1


class Connection(asyncio.Protocol):
    """A keep-alive connection owned by a driver; `send` one request, get `on_response`."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.transport: Any = None  # asyncio.Transport (uvloop's is not a subclass)
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.sent_ns = 0  # when the request in flight was written
        self.scheduled_ns = 0  # latency origin: the earlier of due and sent (open loop); sent (closed)
        self.due_ns = 0  # when it was due, which decides whether it is in the measured window

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def send(self, raw: bytes, scheduled_ns: int, now_ns: int, due_ns: int | None = None) -> None:
        self.busy = True
        self.scheduled_ns = scheduled_ns
        self.due_ns = scheduled_ns if due_ns is None else due_ns
        self.sent_ns = now_ns
        self.transport.write(raw)

    def data_received(self, data: bytes) -> None:
        try:
            self._received(data)
        except ValueError:
            # Not HTTP (a status line, length or chunk size that does not parse): nothing
            # more of this stream can be read. Dropping the connection reports the request
            # in flight once, as a connection error, where an exception escaping here would
            # have the event loop log a traceback for every such answer.
            self.abort()

    def _received(self, data: bytes) -> None:
        buf: bytes | bytearray
        if self.buf:
            self.buf += data
            buf = self.buf
        else:
            buf = data
        while True:
            head_end = buf.find(_HEAD_END)
            if head_end < 0:
                break
            head = buf[:head_end]
            # "HTTP/1.1 200 OK": the status is always bytes 9..12.
            status = int(head[9:12])
            body_start = head_end + 4
            # Servers write the header as "content-length" (uvicorn) or "Content-Length"
            # (most others); only an unusual spelling pays for lower-casing the head.
            i = head.find(_CONTENT_LENGTH)
            if i < 0:
                i = head.find(_CONTENT_LENGTH_TITLE)
                if i < 0:
                    head = bytes(head).lower()
                    i = head.find(_CONTENT_LENGTH)
            if i >= 0:
                j = head.find(b"\r\n", i + 2)
                end = body_start + int(head[i + 17 : j if j >= 0 else len(head)])
                if end > len(buf):
                    break
            elif _CHUNKED in head:
                end = _chunked_end(buf, body_start)
                if end < 0:
                    break
            else:
                end = body_start  # 204/304 or a body-less error
            self.busy = False
            if b"lose" in head and _CLOSE in bytes(head).lower():
                # The server ends this connection: mark it closed first so that the owner,
                # seeing `closed`, opens a replacement instead of sending on it.
                self.abort()
                self.closed = True
                self.owner.on_response(self, status, time.perf_counter_ns())
                return
            if end == len(buf):
                if self.buf:
                    self.buf = bytearray()
                self.owner.on_response(self, status, time.perf_counter_ns())
                return
            rest = buf[end:]
            self.owner.on_response(self, status, time.perf_counter_ns())
            buf = self.buf = bytearray(rest)
        if buf is data:
            self.buf = bytearray(data)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        in_flight = self.busy
        self.busy = False
        self.owner.on_lost(self, in_flight)
