"""uvicorn, adapted for mlrt: the only module that touches uvicorn's internals (its
httptools protocol, status lines, per-request `cycle`, default headers and signal
handling). `check()` says at import which of them a uvicorn release lacks, and
tests/unit/test_uvicorn_http.py fails loudly on such a release; pyproject.toml pins
the range this was written against.

Three changes:
- One write per response: uvicorn writes a response's header block as soon as the
  app sends `http.response.start`, and the body in a second write: two syscalls per
  response, and on loopback two wake-ups of the client. mlrt's responses are
  single-shot, so the header block is held until the body's first write and both go
  out together.
- The direct path (MlrtHttpProtocol): a small, complete infer request goes from the
  parser straight into the infer pipeline (pipeline.py), below ASGI, and its answer
  is written from a callback in one piece. One that arrives whole in one read, in the
  plainest HTTP/1.1, is read by one compiled pass (native/_http.pyx) rather than
  httptools' callback per element.
- The server (`server_class`): a graceful stop on SIGTERM/SIGINT exits with status 0,
  and connections mlrt accepted itself (accept.py) stop with uvicorn's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .._native._http import parse_request
from .accept import Listeners
from .http import HTTP_WIRE, head_block, match_infer, plain_message
from .limits import BODY, HEADERS, REFUSALS, ClientLimits
from .pipeline import Answer, Cancellable, Pipeline

#: What mlrt relies on, by where it lives: `check()` looks for the class attributes, the
#: test for this module for the instance ones (they exist once a protocol is made).
REQUIRED = {
    "HttpToolsProtocol": [
        "connection_made", "connection_lost", "data_received", "on_message_begin", "on_url",
        "on_headers_complete", "on_body", "on_message_complete", "on_response_complete", "resume_writing",
        "shutdown", "_start_asgi_task",
    ],
    "HttpToolsProtocol instance": [
        "cycle", "parser", "flow", "url", "headers", "scope", "expect_100_continue",
        "limit_concurrency", "server_state", "loop", "config", "app_state", "pipeline",
        "timeout_keep_alive_task",
    ],
    "Server": ["shutdown", "capture_signals", "handle_exit", "run", "started"],
}  # fmt: skip


def check() -> list[str]:
    """What this uvicorn lacks of what mlrt uses (empty when compatible)."""
    missing = []
    if 200 not in STATUS_LINE or not STATUS_LINE[200].startswith(b"HTTP/1.1 200"):
        missing.append("STATUS_LINE[200]")
    for name in REQUIRED["HttpToolsProtocol"]:
        if not callable(getattr(HttpToolsProtocol, name, None)):
            missing.append(f"HttpToolsProtocol.{name}")
    for name in REQUIRED["Server"]:
        if not hasattr(uvicorn.Server, name) and name != "started":
            missing.append(f"Server.{name}")
    return missing


class _CoalescingTransport:
    """Holds a write that is exactly a header block until the next write (or close)."""

    __slots__ = ("_transport", "_held")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.writelines((held, data))
        elif data.endswith(b"\r\n\r\n") and not data.startswith(b"HTTP/1.1 100"):
            # A response's status line and headers ("100 Continue" must go at once).
            self._held = data
        else:
            self._transport.write(data)

    def is_closing(self) -> bool:
        # Asked once or twice per request: spelled out, not found through __getattr__.
        return self._transport.is_closing()

    def close(self) -> None:
        if self._held is not None:
            self._transport.write(self._held)
            self._held = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport))  # type: ignore[arg-type]


class DirectRequest:
    """A request on the direct path: what uvicorn's protocol reads of `self.cycle`
    (response_complete, keep_alive, disconnected, message_event), plus the body and the
    answer."""

    __slots__ = (
        "protocol", "target", "headers", "chunks", "keep_alive", "response_complete",
        "disconnected", "pending",
    )

    def __init__(
        self, protocol: MlrtHttpProtocol, target: tuple[str, str | None], headers: dict[bytes, bytes],
        keep_alive: bool,
    ) -> None:
        self.protocol = protocol
        self.target = target
        self.headers = headers
        self.chunks: list[bytes] = []
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False
        self.pending: Cancellable | None = None  # what to cancel if the client goes away

    @property
    def message_event(self) -> DirectRequest:
        return self  # uvicorn calls cycle.message_event.set() when the connection is lost

    def set(self) -> None:
        pass

    def respond(self, answer: Answer) -> None:
        self.pending = None
        if answer.batch >= _HOLD_BATCH and len(answer.body) <= _JOIN_MAX:
            self.protocol.held_writes.hold(self.protocol.loop, self, answer)
        else:
            self.write(answer)

    def write(self, answer: Answer) -> None:
        """Write the answer whole and complete the request (a held one: from the flush, when
        the request is still in flight until then, as a graceful stop must see it)."""
        proto = self.protocol
        transport = proto.raw_transport
        if self.disconnected or transport.is_closing():
            return
        defaults = _default_head(proto.server_state.default_headers)
        body = answer.body
        if not answer.headers and self.keep_alive and len(body) <= _JOIN_MAX:
            # The common answer: one formatting, no list to join.
            transport.write(plain_message(STATUS_LINE[answer.status], defaults, answer))
            self.response_complete = True
            proto.direct_done(self)
            return
        head = [STATUS_LINE[answer.status], defaults, head_block(answer)]
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        if len(body) > _JOIN_MAX:
            transport.writelines((b"".join(head), body))
        else:
            head.append(body)
            transport.write(b"".join(head))
        self.response_complete = True
        if not self.keep_alive:
            transport.close()
        proto.direct_done(self)


class _HeldWrites:
    """Answers of a large batch, held until the callback that made them returns and then
    written back to back.

    A batch answers its requests one after another, each encoded in Python (µs apiece).
    Written as each is made, every answer may wake its client, whose next request then
    interrupts the rest of the batch, and on a VM each wake-up of an idle client costs the
    writer an interrupt to another vCPU. Held to the end of the batch's callback, they go
    out in one burst. Only for batches of _HOLD_BATCH or more: smaller ones measured slower
    held (12% fewer req/s at 8 clients), as a client waits for its answer longer than
    the burst saves. A held request completes only when its answer is written: a request
    pipelined behind it queues as behind any request in flight, and a graceful stop
    meanwhile answers it with connection: close."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held: list[tuple[DirectRequest, Answer]] = []

    def hold(self, loop: asyncio.AbstractEventLoop, request: DirectRequest, answer: Answer) -> None:
        if not self.held:
            loop.call_soon(self.flush)
        self.held.append((request, answer))

    def flush(self) -> None:
        held, self.held = self.held, []
        for request, answer in held:
            request.write(answer)


_HOLD_BATCH = 16

# Responses up to this size go out as one joined buffer; larger bodies are not copied.
_JOIN_MAX = 64 * 1024

# uvicorn replaces its default headers (server, date) with a new list once a second;
# their encoded block is kept with the list it was made from.
_default_block: tuple[object, bytes] = (None, b"")


def _default_head(headers: list[tuple[bytes, bytes]]) -> bytes:
    global _default_block
    made_from, block = _default_block
    if made_from is not headers:
        block = b"".join(b"%s: %s\r\n" % pair for pair in headers)
        _default_block = (headers, block)  # holding the list keeps its id from being reused
    return block


class MlrtHttpProtocol(CoalescingHttpToolsProtocol):
    """Takes `POST .../infer` with a small, complete body straight from the parser to
    the infer pipeline, below ASGI: no scope, task, receive/send messages or header
    re-validation per request. Everything else goes to the ASGI app as usual.

    `infer_pipeline`, `direct_max_bytes` and `listeners` are bound per server by
    `protocol_for` (not `pipeline`: uvicorn's protocol has its own, the queue of pipelined
    requests).
    """

    infer_pipeline: Pipeline | None = None
    direct_max_bytes = 0
    whole_max = -1  # no read is taken whole unless protocol_for binds a pipeline
    listeners: Listeners | None = None
    limits: ClientLimits | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.raw_transport = transport
        self._direct: DirectRequest | None = None
        self._reads_held = False
        # What the client owes (limits.py): headers from now, until a request completes.
        self.waiting = HEADERS
        self.since = self.last_read = time.monotonic()
        self.body_received = 0
        self._held_bytes = 0
        self._refused = False
        self._begun = False  # a request's first bytes are parsed, its headers not all
        self._draining = False
        super().connection_made(transport)
        if self.limits is not None and not self.limits.opened(self, self.loop):
            return
        if self.listeners is not None:
            # libuv accepts one connection per wake-up of a listener; see accept.py.
            self.listeners.accept_queued(self.loop, self._sibling)

    def _sibling(self) -> MlrtHttpProtocol:
        return type(self)(
            config=self.config, server_state=self.server_state, app_state=self.app_state, _loop=self.loop
        )

    def refuse(self, reason: str) -> None:
        """Answer with the refusal (408 or 503) and close: the client broke a limit."""
        if self._refused:
            return
        self._refused = True
        transport = self.raw_transport
        if not transport.is_closing():
            transport.write(REFUSALS[reason])
            transport.close()

    def on_message_begin(self) -> None:
        self._begun = True
        self.waiting = HEADERS
        self.since = time.monotonic()
        # uvicorn builds the ASGI scope here; a direct request never needs one, so it is
        # built in on_headers_complete once the request is known to go to ASGI.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []

    def on_headers_complete(self) -> None:
        self.waiting = BODY  # until on_message_complete, at once for a request without one
        self.since = self.last_read = time.monotonic()
        self.body_received = 0
        direct = self._direct_request()
        if direct is not None:
            self.cycle = self._direct = direct  # type: ignore[assignment]
            return
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.expect_100_continue = url, expect
        self.headers = self.scope["headers"] = headers
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, with connection: close

    def _direct_request(self) -> DirectRequest | None:
        parser = self.parser
        if (
            self.infer_pipeline is None
            or parser.get_method() != b"POST"
            or (self.cycle is not None and not self.cycle.response_complete)  # pipelined
            or self.expect_100_continue
            or self.limit_concurrency is not None
            or parser.should_upgrade()
        ):
            return None
        target = self._target(self.url)
        if target is None:
            return None
        headers = dict(self.headers)
        length = headers.get(b"content-length")
        if (
            length is None
            or not length.isdigit()
            or int(length) > self.direct_max_bytes
            or b"transfer-encoding" in headers
            or _encoded(headers)
        ):
            return None
        keep_alive = (
            parser.should_keep_alive() and parser.get_http_version() != "1.0" and not self._draining
        )
        return DirectRequest(self, target, headers, keep_alive)

    def _target(self, url: bytes) -> tuple[str, str | None] | None:
        """(model, version) when `url` is an infer URL the direct path takes."""
        targets = self.direct_targets
        target = targets.get(url, _UNSEEN)
        if target is _UNSEEN:
            target = _infer_target(url)
            if len(targets) < _TARGETS_MAX:
                targets[url] = target
        return target  # type: ignore[return-value]

    def data_received(self, data: bytes) -> None:
        # A whole, plain infer request in this one read, between requests, takes the
        # compiled reading (native/_http.pyx) instead of httptools' callbacks; anything
        # else (and anything it declines) is fed to httptools as before.
        cycle = self.cycle
        if (
            not self._begun
            and (cycle is None or cycle.response_complete)
            and len(data) <= self.whole_max
            and not self.pipeline
            and not self._draining
            and not self._refused
            and self.timeout_keep_alive_task is None
        ):
            parsed = parse_request(data, self.direct_max_bytes)
            if parsed is not None and self._direct_whole(*parsed):
                return
        super().data_received(data)

    def _direct_whole(self, url: bytes, headers: dict[bytes, bytes], body: bytes) -> bool:
        """Begin a direct request read whole by parse_request; False to leave it to httptools."""
        if self.limit_concurrency is not None:
            return False
        target = self._target(url)
        if target is None or _encoded(headers):
            return False
        limits = self.limits
        if limits is not None and limits.buffered + len(body) > limits.max_buffered_bytes:
            return False  # refused the usual way
        self.waiting = 0  # nothing is owed: the request is here whole
        direct = DirectRequest(self, target, headers, True)
        self.cycle = self._direct = direct  # type: ignore[assignment]
        direct.pending = self.infer_pipeline.begin(  # type: ignore[union-attr]
            direct, target, HTTP_WIRE, body, headers, self.loop
        )
        return True

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        n = len(body)
        self.body_received += n
        self.last_read = time.monotonic()
        limits = self.limits
        if limits is not None:
            if not limits.take(self, n):
                return
            self._held_bytes += n
        cycle = self.cycle
        if type(cycle) is DirectRequest:
            cycle.chunks.append(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self.waiting = 0
        self._begun = False
        if self._held_bytes:
            self.limits.release(self._held_bytes)  # type: ignore[union-attr]
            self._held_bytes = 0
        if self._refused:
            return
        cycle = self.cycle
        if type(cycle) is not DirectRequest:
            super().on_message_complete()
            return
        chunks = cycle.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        cycle.chunks = []
        # Direct-path bodies are never larger than OFFLOAD_BYTES: decoded on the loop.
        cycle.pending = self.infer_pipeline.begin(  # type: ignore[union-attr]
            cycle, cycle.target, HTTP_WIRE, body, cycle.headers, self.loop
        )

    def on_response_complete(self) -> None:
        limits = self.limits
        if limits is None:
            super().on_response_complete()
            return
        # uvicorn's, less the keep-alive timer it arms per response and cancels on the next
        # request: the limits' sweep closes idle connections instead (idle_since).
        self.server_state.total_requests += 1
        if self.raw_transport.is_closing():
            return
        self.since = time.monotonic()
        if self.flow.read_paused:
            self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)

    def _in_flight(self) -> bool:
        """A request of this connection has begun and is not yet answered."""
        cycle = self.cycle
        return self._begun or (cycle is not None and not cycle.response_complete)

    def idle_since(self) -> float | None:
        if self.waiting or self.pipeline or self._in_flight():
            return None
        return self.since

    def close_idle(self) -> None:
        if not self.raw_transport.is_closing():
            self.raw_transport.close()

    def direct_done(self, cycle: DirectRequest) -> None:
        if self._direct is cycle:
            self._direct = None
        self.on_response_complete()
        if self.flow.write_paused:
            # The client is not reading its answers: stop reading its requests until it does.
            self._reads_held = True
            self.flow.pause_reading()

    def shutdown(self) -> None:
        """A graceful stop: uvicorn closes a connection between requests at once, which
        drops a request the client has already sent and the loop has not yet read. Such a
        request (bytes waiting, or a request begun) is answered first, with
        connection: close, as is one in flight (an answer held to go out with its batch,
        _HeldWrites, included)."""
        self._draining = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
        elif not self._begun and not _unread(self.raw_transport):
            if self.limits is not None and time.monotonic() - self.since < _CLOSE_GRACE_S:
                # Its last answer went out just now (since: when it did): the client may be
                # sending its next request this very moment. Close a moment later, unless a
                # request has begun by then (it is answered, with connection: close). A batch's
                # answers written together leave many connections in this state at once.
                self.loop.call_later(_CLOSE_GRACE_S, self._close_unless_asked)
            else:
                self.raw_transport.close()

    def _close_unless_asked(self) -> None:
        if self._in_flight() or _unread(self.raw_transport):
            return  # a request came meanwhile: it is answered with connection: close
        if not self.raw_transport.is_closing():
            self.raw_transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.limits is not None:
            self.limits.closed_conn(self, self._held_bytes)
            self._held_bytes = 0
        direct = self._direct
        if direct is not None and not direct.response_complete:
            direct.disconnected = True
            if direct.pending is not None:
                # Withdraws the request from its batch if it has not run yet.
                direct.pending.cancel()
        super().connection_lost(exc)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._reads_held:
            self._reads_held = False
            self.flow.resume_reading()


#: How long a graceful stop leaves a connection whose answer has just gone out, for the request
#: its client may already be sending (MlrtHttpProtocol.shutdown).
_CLOSE_GRACE_S = 0.1


def _unread(transport: asyncio.Transport) -> bool:
    """Whether the client has sent bytes the loop has not read yet (a peek on a duplicate
    of the socket: uvloop's transports expose no recv)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        with socket.socket(sock.family, sock.type, fileno=os.dup(sock.fileno())) as peek:
            return bool(peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return False


#: The header block a read taken whole by parse_request may hold.
_HEAD_MAX = 8 * 1024

# Request targets seen on the direct path, remembered per server: a client sends the
# same few URLs again and again. Bounded, since any client can send any URL.
_TARGETS_MAX = 1024
_UNSEEN = object()


def _infer_target(url: bytes) -> tuple[str, str | None] | None:
    """(model, version) when a raw request target is an infer URL the direct path takes."""
    if url[:1] != b"/" or b"?" in url:
        path = httptools.parse_url(url).path
    else:
        path = url
    if b"%" in path:
        return None  # percent-encoded names take the ASGI path, which decodes them
    try:
        return match_infer(path.decode("ascii"))
    except UnicodeDecodeError:
        return None


def _encoded(headers: dict[bytes, bytes]) -> bool:
    """Whether the body is compressed (Content-Encoding other than identity): the ASGI path
    decompresses it."""
    encoding = headers.get(b"content-encoding")
    return encoding is not None and encoding.strip().lower() not in (b"identity", b"")


def protocol_for(
    pipeline: Pipeline,
    direct_max_bytes: int,
    listeners: Listeners | None = None,
    limits: ClientLimits | None = None,
) -> type[MlrtHttpProtocol]:
    """The protocol class for one server, bound to its pipeline, listening sockets and
    client limits. Bodies up to `direct_max_bytes` take the direct path."""
    return type(
        "MlrtHttpProtocol",
        (MlrtHttpProtocol,),
        {
            "infer_pipeline": pipeline,
            "direct_max_bytes": direct_max_bytes,
            # A read longer than this cannot be one direct request (head and body).
            "whole_max": direct_max_bytes + _HEAD_MAX,
            # Raw request target -> (model, version) or None, per server.
            "direct_targets": {},
            "held_writes": _HeldWrites(),
            "listeners": listeners,
            "limits": limits,
        },
    )


def server_class(listeners: Listeners) -> type:
    class Server(uvicorn.Server):
        """uvicorn's server, but a graceful stop on SIGTERM/SIGINT exits with status 0
        (uvicorn re-raises the captured signal after shutting down, so the process would
        die by that signal even though nothing was lost), and connections accepted by
        mlrt itself (accept.py) stop with uvicorn's.
        """

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # When the graceful bound began: the app's own shutdown gets what is left of it.
            self.config.app.state.stop_began = time.monotonic()
            listeners.stop()
            await super().shutdown(sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            originals = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    return Server


_MISSING = check()
if _MISSING:  # pragma: no cover - depends on the uvicorn installed
    raise ImportError(
        f"uvicorn {uvicorn.__version__} lacks what mlrt's HTTP server uses: {', '.join(_MISSING)}; "
        "install the range pyproject.toml pins (pip install 'uvicorn>=0.29,<0.56')"
    )
