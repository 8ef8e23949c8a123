"""Accepting the connections libuv leaves queued under load.

libuv (under uvloop) accepts one connection per readiness event of a listening socket
and relies on the next event for the next connection. Under load those events come a
whole batch of socket reads apart: with a thousand busy connections, tens of
milliseconds. A burst of new connections (clients reconnecting after a restart, a
load balancer opening its pool, a benchmark's 1024 connections) then waited seconds
in the kernel's accept queue, their first request already sent and unread, while
the connections accepted earlier were served.

So each new connection accepts a few more of the queued ones itself, handing them to
uvloop as accepted sockets: a burst clears in a few loop turns, and no turn does
more than a few accepts.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Sequence

log = logging.getLogger("mlrt.server")

# Connections each new connection accepts at most, per listening socket.
ACCEPT_BATCH = 8


class Listeners:
    """A server's listening sockets, while it accepts."""

    def __init__(self, socks: Sequence[socket.socket]) -> None:
        self.socks = list(socks)
        for sock in self.socks:
            sock.setblocking(False)  # accept() must never wait on the event loop (uvloop agrees)
        self.accepting = True
        # Connections taken from the queues so far. Opening one takes loop turns; this
        # counts at the accept itself, so "none taken" can be checked, not waited for.
        self.accepted = 0
        self._opening: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """Shutting down: accept nothing more."""
        self.accepting = False

    def accept_queued(self, loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol]) -> None:
        if not self.accepting:
            return
        for sock in self.socks:
            for _ in range(ACCEPT_BATCH):
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break  # the queue is empty
                except OSError:
                    break  # closed by shutdown, or out of descriptors: libuv's accept reports that
                self.accepted += 1
                task = loop.create_task(_open(loop, factory, conn))
                self._opening.add(task)
                task.add_done_callback(self._opening.discard)


async def _open(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol], conn: socket.socket
) -> None:
    try:
        await loop.connect_accepted_socket(factory, conn)
    except Exception as exc:  # the client may be gone already
        conn.close()
        log.debug("could not open an accepted connection: %s", exc)
