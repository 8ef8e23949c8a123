"""Reading request bodies under a size limit, with gzip/deflate decoding."""

from __future__ import annotations

import zlib
from typing import Any

from ..errors import InvalidInput, PayloadTooLarge


async def read_body(receive: Any, headers: dict[bytes, bytes], limit: int) -> bytes:
    """Collect an ASGI request body, refusing it as soon as it passes `limit` bytes."""
    declared = headers.get(b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidInput(f"invalid Content-Length {declared.decode(errors='replace')!r}") from None
        if size > limit:
            raise PayloadTooLarge(size, limit)
    chunks: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client disconnected")
        chunk = message.get("body", b"")
        if chunk:
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(total, limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = headers.get(b"content-encoding", b"identity").strip().lower()
    if encoding in (b"", b"identity"):
        return body
    return _decompress(body, encoding.decode("latin-1"), limit)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif encoding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise InvalidInput(f"unsupported Content-Encoding {encoding!r}; use gzip or deflate")
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"malformed {encoding} body: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLarge(len(out), limit, encoding)
    if not d.eof:
        raise InvalidInput(f"truncated {encoding} body")
    return out


def compress(body: bytes, accept_encoding: str) -> tuple[bytes, str | None]:
    """Compress a response when the client asks for it (tritonclient can)."""
    accepted = {p.split(";")[0].strip().lower() for p in accept_encoding.split(",")}
    if "gzip" in accepted:
        c = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
        return c.compress(body) + c.flush(), "gzip"
    if "deflate" in accepted:
        return zlib.compress(body), "deflate"
    return body, None
