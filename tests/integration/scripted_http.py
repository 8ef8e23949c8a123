"""A scripted HTTP/1.1 server on 127.0.0.1 for the load generator's tests (asyncio, in a
thread of the test process).

It reads each request (head and Content-Length body) and asks the test's `script(n,
request)` (n counts requests from 1, over all connections) how to answer: which bytes to
write, in how many parts and with what pauses (partial reads), after what delay, whether
to close the connection afterwards, or to never answer at all. It counts what it saw:
requests, connections, and the most requests it held at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoopbackServer", "Reply", "Request", "ScriptedServer", "chunked", "response"]


class LoopbackServer:
    """An asyncio server on 127.0.0.1 run in a thread of the test process, for the length
    of a `with` block; subclasses answer in `_handle` and may end their connections in
    `_closing` when the block ends."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):  # type: ignore[no-untyped-def]  # the subclass, whichever it is
        self._thread.start()
        assert self._ready.wait(10), f"{type(self).__name__} did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), f"{type(self).__name__} did not stop"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            await self._closing()

    async def _closing(self) -> None:
        pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


def response(status: int = 200, body: bytes = b"ok", headers: str = "content-length: {n}\r\n") -> bytes:
    """One HTTP/1.1 response; `{n}` in `headers` becomes the body's length."""
    return f"HTTP/1.1 {status} X\r\n{headers.format(n=len(body))}\r\n".encode() + body


def chunked(status: int, chunks: list[bytes], trailers: str = "", extension: str = "") -> bytes:
    """A response with a chunked body (each chunk's size line may carry `extension`)."""
    head = f"HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(c), extension.encode(), c) for c in chunks)
    return head + body + b"0\r\n" + trailers.encode() + b"\r\n"


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    body: bytes
    connection: int  # which connection (numbered from 1 in accept order)


@dataclass(frozen=True)
class Reply:
    parts: tuple[bytes, ...] = (response(),)  # written in this order
    delay_s: float = 0.0  # before the first part
    pause_s: float = 0.0  # between parts (so the client reads them separately)
    close: bool = False  # close the connection after the parts (with none: drop the request)
    hang: bool = False  # never answer; wait until the client goes


class ScriptedServer(LoopbackServer):
    """Answers every request as `script` says (default: 200 with body "ok", keep-alive)."""

    def __init__(self, script: Callable[[int, Request], Reply] | None = None) -> None:
        super().__init__()
        self.script = script or (lambda n, req: Reply())
        self.requests: list[Request] = []
        self.connections = 0  # accepted so far
        self.closed_by_client = 0  # connections the client ended (EOF or reset)
        self.in_flight = 0  # requests read and not yet answered
        self.max_in_flight = 0
        self._writers: set[asyncio.StreamWriter] = set()

    async def _closing(self) -> None:
        for w in list(self._writers):
            w.transport.abort()
        await asyncio.sleep(0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    self.closed_by_client += 1
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ")
                length = 0
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v)
                body = await reader.readexactly(length) if length else b""
                req = Request(method, target, body, conn)
                self.requests.append(req)
                reply = self.script(len(self.requests), req)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    if reply.hang:
                        await reader.read()  # until the client closes
                        self.closed_by_client += 1
                        return
                    if reply.delay_s:
                        await asyncio.sleep(reply.delay_s)
                    for i, part in enumerate(reply.parts):
                        if i and reply.pause_s:
                            await asyncio.sleep(reply.pause_s)
                        writer.write(part)
                        await writer.drain()
                finally:
                    self.in_flight -= 1
                if reply.close:
                    return
        except ConnectionError:
            self.closed_by_client += 1
        finally:
            self._writers.discard(writer)
            writer.close()
