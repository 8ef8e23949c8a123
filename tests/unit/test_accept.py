"""runtime.server.accept: connections left in the accept queue are accepted and served."""

from __future__ import annotations

import asyncio
import socket

import uvloop

from runtime.server.accept import ACCEPT_BATCH, Listeners


class _Echo(asyncio.Protocol):
    opened: list[_Echo] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        _Echo.opened.append(self)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data.upper())  # type: ignore[attr-defined]


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


def test_queued_connections_are_accepted_in_batches_and_served() -> None:
    _Echo.opened = []
    lsock = _listener()
    clients = [socket.create_connection(lsock.getsockname(), timeout=5) for _ in range(ACCEPT_BATCH + 3)]
    listeners = Listeners([lsock])

    async def run() -> None:
        loop = asyncio.get_running_loop()
        listeners.accept_queued(loop, _Echo)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if len(_Echo.opened) == ACCEPT_BATCH:
                break
        assert len(_Echo.opened) == ACCEPT_BATCH  # no more than a batch per call
        listeners.accept_queued(loop, _Echo)  # the rest
        for _ in range(50):
            await asyncio.sleep(0.01)
            if len(_Echo.opened) == len(clients):
                break
        assert len(_Echo.opened) == len(clients)
        listeners.accept_queued(loop, _Echo)  # an empty queue is no error
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
    client = socket.create_connection(lsock.getsockname())
    listeners = Listeners([lsock])
    listeners.stop()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        listeners.accept_queued(loop, _Echo)
        await asyncio.sleep(0.05)
        assert _Echo.opened == []
        lsock.close()
        listeners.accepting = True
        listeners.accept_queued(loop, _Echo)  # a closed listener: nothing, no error
        await asyncio.sleep(0.05)
        assert _Echo.opened == []

    try:
        uvloop.run(run())
    finally:
        client.close()


def test_listeners_never_wait_on_accept() -> None:
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)  # blocking, as socket() makes it
    try:
        Listeners([lsock])
        assert lsock.getblocking() is False
    finally:
        lsock.close()
