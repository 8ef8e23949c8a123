"""The wire floor: the least a Python server on uvloop does per HTTP/1.1 request. An
`asyncio.Protocol` that frames each request by its blank line and Content-Length, reads
nothing else, and answers every one (whatever its method or path, health checks included)
with the same fixed JSON, all answers for one read in one write. No HTTP library, no ASGI,
no model: what the machine and the event loop cost a request, which every server written in
Python on this stack pays before its own work. bench.serving measures mlrt against it.

    python -m bench.wire_floor --port 8003
"""

from __future__ import annotations

import argparse
import asyncio

_BODY = b'{"model_name":"floor","outputs":[]}'
ANSWER = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(_BODY)
) + _BODY
_LENGTH = b"\r\ncontent-length:"


def frame(buf: bytearray) -> int:
    """Drop the whole requests at the front of `buf`; how many there were. A request is its
    head up to the blank line, then Content-Length bytes of body (none without the header)."""
    done = 0
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return done
        head = bytes(buf[:end]).lower()
        at = head.find(_LENGTH)
        length = 0
        if at >= 0:
            stop = head.find(b"\r\n", at + len(_LENGTH))
            length = int(head[at + len(_LENGTH) : stop if stop >= 0 else len(head)])
        need = end + 4 + length
        if len(buf) < need:
            return done
        del buf[:need]
        done += 1


class FixedAnswer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = frame(self.buf)
        if n:
            self.transport.write(ANSWER * n)  # type: ignore[attr-defined]


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(FixedAnswer, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    import uvloop

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
