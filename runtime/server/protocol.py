"""uvicorn's httptools protocol, writing each response in one piece.

uvicorn writes a response's header block as soon as the app sends
`http.response.start`, and the body in a second write: two syscalls per response,
and on loopback two wake-ups of the client. mlrt's responses are single-shot, so
the header block is held until the body's first write and both go out together.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
