"""runtime.server.accept: connections left in the accept queue are accepted and served.

What a call accepted is read from `Listeners.accepted`, counted at the accept itself, and
a connection is known to be queued (select says the listener is readable) before a test
checks that nothing took it: no check here passes by waiting too little."""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Callable

import uvloop

from runtime.server.accept import ACCEPT_BATCH, Listeners


class _Echo(asyncio.Protocol):
    opened: list[_Echo] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        _Echo.opened.append(self)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())  # type: ignore[attr-defined]


async def _until(done: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.002)


async def _close_all() -> None:
    for protocol in _Echo.opened:
        protocol.transport.close()
    await asyncio.sleep(0.01)


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.setblocking(False)
    return sock


def _queued(lsock: socket.socket) -> bool:
    """A connection waits in the listener's accept queue."""
    return bool(select.select([lsock], [], [], 10)[0])


def test_queued_connections_are_accepted_in_batches_and_served() -> None:
    _Echo.opened = []
    lsock = _listener()
    clients = [socket.create_connection(lsock.getsockname(), timeout=5) for _ in range(ACCEPT_BATCH + 3)]
    listeners = Listeners([lsock])

    async def run() -> None:
        loop = asyncio.get_running_loop()
        listeners.accept_queued(loop, _Echo)
        assert listeners.accepted == ACCEPT_BATCH  # no more than a batch per call
        await _until(lambda: len(_Echo.opened) == ACCEPT_BATCH, "the first batch to open")
        listeners.accept_queued(loop, _Echo)  # the rest
        assert listeners.accepted == len(clients)
        await _until(lambda: len(_Echo.opened) == len(clients), "the rest to open")
        listeners.accept_queued(loop, _Echo)  # an empty queue is no error
        assert listeners.accepted == len(clients)
        await _close_all()

    try:
        uvloop.run(run())
    finally:
        for c in clients:
            c.close()
        lsock.close()


def test_accepted_connections_answer() -> None:
    _Echo.opened = []
    lsock = _listener()
    client = socket.create_connection(lsock.getsockname(), timeout=5)
    client.sendall(b"ping")
    listeners = Listeners([lsock])

    async def run() -> bytes:
        loop = asyncio.get_running_loop()
        listeners.accept_queued(loop, _Echo)
        answer = await loop.run_in_executor(None, client.recv, 16)
        await _close_all()
        return answer

    try:
        assert uvloop.run(run()) == b"PING"
    finally:
        client.close()
        lsock.close()


def test_nothing_is_accepted_once_stopped_or_closed() -> None:
    _Echo.opened = []
    lsock = _listener()
    first = socket.create_connection(lsock.getsockname())
    second = None
    listeners = Listeners([lsock])
    listeners.stop()

    async def run() -> None:
        nonlocal second
        loop = asyncio.get_running_loop()
        assert _queued(lsock)
        listeners.accept_queued(loop, _Echo)  # stopped: the queued connection stays queued
        assert listeners.accepted == 0
        # The same call, accepting again, takes it: there was something to take.
        listeners.accepting = True
        listeners.accept_queued(loop, _Echo)
        assert listeners.accepted == 1
        await _until(lambda: len(_Echo.opened) == 1, "the connection to open")

        second = socket.create_connection(lsock.getsockname())
        assert _queued(lsock)
        lsock.close()
        listeners.accept_queued(loop, _Echo)  # a closed listener: nothing, no error
        assert listeners.accepted == 1
        await _close_all()

    try:
        uvloop.run(run())
    finally:
        first.close()
        if second is not None:
            second.close()
        lsock.close()


def test_listeners_never_wait_on_accept() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)  # blocking, as socket() makes it
    try:
        Listeners([lsock])
        assert lsock.getblocking() is False
    finally:
        lsock.close()
