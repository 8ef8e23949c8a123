"""HTTP for the server: the infer pipeline's HTTP wire (V2 JSON and binary, msgpack and
Arrow bodies, chosen by Content-Type), the one writer of HTTP answers (raw bytes for
the direct path, ASGI messages, Starlette responses for the other routes), and the
ASGI way into the pipeline for requests the direct path does not take.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidInput, MlrtError
from ..models import Tensors
from .body import compress, read_body
from .codec import InferRequest, decode_request, encode_answer
from .errors import Failure, failure
from .pipeline import Answer, Call, FutureResponder, Pipeline, variant_header

JSON = b"application/json"
BINARY = b"application/octet-stream"
# Answers from this size on are compressed when the client accepts it.
COMPRESS_MIN_BYTES = 4096


def match_infer(path: str) -> tuple[str, str | None] | None:
    """(model, version) for `/v2/models/{m}[/versions/{v}]/infer`, else None. The one
    place the infer route is recognized, for the direct path and ASGI alike."""
    if not path.startswith("/v2/models/") or not path.endswith("/infer"):
        return None
    parts = path[len("/v2/models/") : -len("/infer")].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


def _header_length(headers: dict[bytes, bytes]) -> int | None:
    raw = headers.get(b"inference-header-content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(
            f"invalid Inference-Header-Content-Length {raw.decode(errors='replace')!r}"
        ) from None


class _Format:
    """A body format other than V2 JSON/binary, chosen by the request's Content-Type."""

    def __init__(self, module: Any, content_type: str) -> None:
        self.decode = module.decode
        self.encode = module.encode
        self.content_type = content_type.encode()


def _formats() -> dict[bytes, _Format]:
    from . import codec_arrow, codec_msgpack

    table = {
        ct.encode(): _Format(codec_msgpack, codec_msgpack.CONTENT_TYPES[0])
        for ct in codec_msgpack.CONTENT_TYPES
    }
    table[codec_arrow.CONTENT_TYPE.encode()] = _Format(codec_arrow, codec_arrow.CONTENT_TYPE)
    return table


_FORMATS = _formats()
_V2_TYPES = frozenset((JSON, BINARY))


def _format_of(headers: dict[bytes, bytes]) -> _Format | None:
    content_type = headers.get(b"content-type")
    if content_type is None:
        return None
    fmt = _FORMATS.get(content_type)  # as mlrt's client spells it
    if fmt is None and content_type not in _V2_TYPES:  # V2 JSON as most clients spell it: done
        fmt = _FORMATS.get(content_type.split(b";")[0].strip().lower())
    return fmt


class HttpWire:
    """The infer pipeline's HTTP formats. `meta` is the request's headers (lower-case
    names): Content-Type picks the body format, the answer comes in the same one."""

    def decode(self, payload: bytes, meta: dict[bytes, bytes], model: Any) -> tuple[InferRequest, Any]:
        # The encoder answers in the request's format, compressed as the client accepts.
        fmt = _format_of(meta)
        form = (fmt, meta.get(b"accept-encoding"))
        if fmt is None:
            return decode_request(payload, _header_length(meta), model), form
        return fmt.decode(payload, model), form

    def encode(self, call: Call, outputs: Tensors) -> Answer:
        fmt, accept = call.form
        extra: list[tuple[bytes, bytes]] = []
        if fmt is None:
            entry = call.entry
            model = entry.model
            payload, header_len = encode_answer(
                model.name, model.version, call.req.id, outputs, call.selected, entry.output_datatypes
            )
            if header_len is None:
                content_type = JSON
            else:
                content_type = BINARY
                extra.append((b"inference-header-content-length", str(header_len).encode()))
        else:
            # Answered in the format it was asked in.
            payload = fmt.encode(call.response(outputs))
            content_type = fmt.content_type
        if call.endpoint is not None and not call.endpoint.own:
            # Which variant answered a request routed through an endpoint (also in the body's
            # model_name and model_version); a model called by its own name routes nothing.
            extra.append(variant_header(call.entry.model))
        if accept and len(payload) >= COMPRESS_MIN_BYTES:
            payload, encoding = compress(payload, accept.decode("latin-1"))
            if encoding:
                extra.append((b"content-encoding", encoding.encode()))
        return Answer(200, payload, content_type, extra)

    def fail(self, failure: Failure) -> Answer:
        return error_answer(failure.status, failure.message, failure.retry_after_s)

    def sticky_key(self, meta: dict[bytes, bytes], name: bytes) -> bytes | None:
        return meta.get(name) or None


HTTP_WIRE = HttpWire()


# -- the one writer of HTTP answers ---------------------------------------------------------


def error_answer(status: int, message: str, retry_after_s: int | None = None) -> Answer:
    headers = [(b"retry-after", str(retry_after_s).encode())] if retry_after_s is not None else []
    return Answer(status, orjson.dumps({"error": message}), JSON, headers, message)


def json_answer(doc: Any, status: int = 200) -> Answer:
    return Answer(status, orjson.dumps(doc), JSON)


def head_lines(answer: Answer) -> list[tuple[bytes, bytes]]:
    """The answer's headers in order: its content type and length, then its own."""
    return [
        (b"content-type", answer.content_type),
        (b"content-length", str(len(answer.body)).encode()),
        *answer.headers,
    ]


def head_block(answer: Answer) -> bytes:
    """head_lines as the lines of an HTTP/1.1 header block, for the direct path's writes."""
    block = b"content-type: %s\r\ncontent-length: %d\r\n" % (answer.content_type, len(answer.body))
    for name, value in answer.headers:
        block += b"%s: %s\r\n" % (name, value)
    return block


def plain_message(lead: bytes, server_headers: bytes, answer: Answer) -> bytes:
    """The whole HTTP/1.1 message of an answer with no headers of its own on a connection
    kept alive: `lead` (the status line), the server's headers, head_block's lines, the
    blank line and the body, in one formatting (the direct path's common write)."""
    return b"%s%scontent-type: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        lead, server_headers, answer.content_type, len(answer.body), answer.body
    )


def response(answer: Answer) -> Response:
    """The answer as a Starlette response, for the routes Starlette serves."""
    return Response(
        answer.body,
        status_code=answer.status,
        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in answer.headers},
        media_type=answer.content_type.decode("latin-1"),
    )


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    answer = error_answer(status, message)
    answer.headers.extend((k.lower().encode(), v.encode("latin-1")) for k, v in (headers or {}).items())
    return response(answer)


async def _mlrt_error(request: Request, exc: Exception) -> Response:
    f = failure(exc)
    return response(error_answer(f.status, f.message, f.retry_after_s))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        # Starlette's own words for a path no route matches: say which, and the usual slip.
        path = request.url.path
        slash = " (without the trailing '/')" if path.endswith("/") and path != "/" else ""
        message = (
            f"no such path: {request.method} {path}{slash}; models answer at "
            "/v2/models/{name}/infer, and GET /openapi.json lists every route"
        )
    elif exc.status_code == 405 and message == "Method Not Allowed":
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, message, exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this handler, so the traceback reaches the log, never
    # the client.
    return response(error_answer(500, "internal server error"))


#: Starlette's exception handlers: every route's errors take the one mapping (errors.py).
HANDLERS = {MlrtError: _mlrt_error, HTTPException: _http_error, Exception: _internal_error}


async def send_answer(send: Any, answer: Answer) -> None:
    """The answer as ASGI messages."""
    await send({"type": "http.response.start", "status": answer.status, "headers": head_lines(answer)})
    await send({"type": "http.response.body", "body": answer.body})


# -- the ASGI way in -------------------------------------------------------------------------


async def infer_asgi(
    pipeline: Pipeline,
    max_body_bytes: int,
    scope: Any,
    receive: Any,
    send: Any,
    target: tuple[str, str | None],
) -> None:
    """An infer request the direct path did not take (large, compressed, chunked or
    pipelined bodies, `Expect: 100-continue`, any method): read its body and run it
    through the pipeline."""
    if scope["method"] != "POST":
        answer = error_answer(405, f"method {scope['method']} not allowed on {scope['path']}; use POST")
        answer.headers.append((b"allow", b"POST"))
        await send_answer(send, answer)
        return
    loop = asyncio.get_running_loop()
    headers = dict(scope["headers"])  # names arrive lower-cased
    done: asyncio.Future[Answer] = loop.create_future()
    responder = FutureResponder(done)
    started = pipeline.arrive(loop)
    entry = None
    try:
        entry = pipeline.resolve(target, HTTP_WIRE, headers)  # held while the body arrives
        body = await read_body(receive, headers, max_body_bytes)
    except ConnectionAbortedError:
        pipeline.abandon(entry)
        return
    except Exception as exc:
        pipeline.respond_failure(responder, HTTP_WIRE, entry, started, exc)
    else:
        pipeline.begin(
            responder, target, HTTP_WIRE, body, headers, loop, size=len(body), started=started, entry=entry
        )
    await send_answer(send, await done)
