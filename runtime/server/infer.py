"""POST .../infer: decode, check, batch, encode.

This is the hot path. Small plain bodies arrive straight from the HTTP parser
(`InferEndpoint.begin`, see protocol.py) and are answered from callbacks; the
rest come through ASGI (`InferEndpoint.__call__`), skipping Starlette's request,
routing and middleware objects. Both share the steps between reading and writing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..errors import InvalidInput, MlrtError, ModelFailure, ModelNotReady, Overloaded
from ..models import Tensors, check_inputs
from ..repository import LoadedModel, Repository
from .body import compress, read_body
from .codec import InferRequest, decode_request, encode_response, select_outputs
from .errors import status_of

log = logging.getLogger("mlrt.server")

# Bodies larger than this are decoded and encoded on a worker thread, so one big
# request never holds the event loop for more than tens of microseconds.
OFFLOAD_BYTES = 64 * 1024
COMPRESS_MIN_BYTES = 4096

_JSON = b"application/json"
_BINARY = b"application/octet-stream"


def match_infer(path: str) -> tuple[str, str | None] | None:
    """(model, version) for `/v2/models/{m}[/versions/{v}]/infer`, else None."""
    if not path.startswith("/v2/models/") or not path.endswith("/infer"):
        return None
    parts = path[len("/v2/models/") : -len("/infer")].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


def _timeout_s(req: InferRequest, entry: LoadedModel) -> float | None:
    """The deadline: V2 parameter `timeout` in microseconds (as Triton's clients send it)."""
    raw = req.parameters.get("timeout")
    if raw is None:
        raw = entry.config.timeout_us
    elif not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise InvalidInput(f"parameter 'timeout' must be a non-negative integer (µs), got {raw!r}")
    return raw / 1e6 if raw else None


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


async def _send(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# An answer: status, body, content type, extra headers.
Reply = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]


class Cancellable(Protocol):
    def cancel(self) -> bool: ...


class Responder(Protocol):
    """Where the direct path writes its answer (the HTTP protocol's per-request state)."""

    def respond(
        self, status: int, body: bytes, content_type: bytes, extra: list[tuple[bytes, bytes]]
    ) -> None: ...


@dataclass(slots=True)
class _Call:
    """One decoded request on its way through the model."""

    entry: LoadedModel
    req: InferRequest
    selected: list[tuple[str, bool]]
    fmt: _Format | None
    headers: dict[bytes, bytes]
    started: float


class InferEndpoint:
    """Both ways into the model: `begin` (the direct path) and the ASGI `__call__`.

    The HTTP protocol hands `begin` small, complete, uncompressed bodies straight from
    the parser: no ASGI scope, task or messages, and the answer is written in one piece
    from a callback (see protocol.py). Everything else (large, compressed, chunked or
    pipelined bodies, `Expect: 100-continue`) comes through ASGI. The steps between
    reading and writing are shared.
    """

    def __init__(self, repository: Repository, max_body_bytes: int) -> None:
        self.repository = repository
        self.max_body_bytes = max_body_bytes
        # The largest body the direct path takes: decoding it inline stays cheap.
        self.direct_max_bytes = min(OFFLOAD_BYTES, max_body_bytes)
        # Raw request target -> (model, version) or None, filled by the HTTP protocol.
        self.direct_targets: dict[bytes, tuple[str, str | None] | None] = {}
        self.output_datatypes: dict[int, dict[str, str]] = {}
        # Infer requests between arrival and response, across all models.
        self.in_flight = 0
        # Arrivals per event-loop turn. Requests whose bodies have arrived run their
        # handlers back to back without ever yielding, so in_flight alone cannot see a
        # crowd; the previous turn's arrivals can (see _arrive).
        self._turn_arrivals = 0
        self._previous_turn_arrivals = 0
        self._turn_open = False

    # -- the direct path -------------------------------------------------------

    def begin(
        self,
        responder: Responder,
        target: tuple[str, str | None],
        headers: dict[bytes, bytes],
        body: bytes,
        loop: asyncio.AbstractEventLoop,
    ) -> Cancellable | None:
        """Start one request on `loop` (the running one); returns what to cancel if the
        client goes away, or None when the answer has been written already."""
        started = time.perf_counter()
        entry: LoadedModel | None = None
        self.in_flight += 1
        self._arrive(loop)
        try:
            entry = self.repository.get(*target)
            entry.runner.check_room()  # overloaded: refuse before decoding
            # Decoded on this turn of the loop: no new version can have been swapped in meanwhile.
            call = self._decoded(entry, None, headers, body, started)
            result = entry.runner.submit(
                call.req.inputs,
                timeout_s=_timeout_s(call.req, entry),
                alone=self._alone(),
                on_done=functools.partial(self._resolved, responder, call),
                loop=loop,
            )
            if not isinstance(result, dict):
                return result
            reply = self._encoded(call, result)
        except Exception as exc:
            reply = self._failure(exc, entry)
        self._answer(responder, entry, started, reply)
        return None

    def _resolved(
        self, responder: Responder, call: _Call, outputs: Tensors | None, exc: BaseException | None
    ) -> None:
        # Called by the batcher as soon as the request's batch is done (or it expired, or
        # the client went away).
        if isinstance(exc, asyncio.CancelledError):
            self.in_flight -= 1
            return
        try:
            reply = self._failure(exc, call.entry) if exc is not None else self._encoded(call, outputs)
        except Exception as error:
            reply = self._failure(error, call.entry)
        self._answer(responder, call.entry, call.started, reply)

    def _answer(self, responder: Responder, entry: LoadedModel | None, started: float, reply: Reply) -> None:
        self.in_flight -= 1
        status, body, content_type, extra = reply
        responder.respond(status, body, content_type, extra)
        if entry is not None:
            entry.metrics.observe_request(time.perf_counter() - started, status)

    # -- the ASGI path ---------------------------------------------------------

    async def __call__(self, scope: Any, receive: Any, send: Any, target: tuple[str, str | None]) -> None:
        started = time.perf_counter()
        headers = dict(scope["headers"])  # names arrive lower-cased
        entry: LoadedModel | None = None
        self.in_flight += 1
        self._arrive(asyncio.get_running_loop())
        try:
            entry = self.repository.get(*target)
            body = await read_body(receive, headers, self.max_body_bytes)
            if len(body) > OFFLOAD_BYTES:
                # One big request must not hold the event loop: decode and encode on a thread.
                loop = asyncio.get_running_loop()
                call = await loop.run_in_executor(None, self._decoded, entry, target, headers, body, started)
                entry = call.entry
                outputs = await entry.runner.infer(
                    call.req.inputs, timeout_s=_timeout_s(call.req, entry), alone=self._alone()
                )
                reply = await loop.run_in_executor(None, self._encoded, call, outputs)
            else:
                call = self._decoded(entry, target, headers, body, started)
                entry = call.entry
                outputs = await entry.runner.infer(
                    call.req.inputs, timeout_s=_timeout_s(call.req, entry), alone=self._alone()
                )
                reply = self._encoded(call, outputs)
        except ConnectionAbortedError:
            return
        except Exception as exc:
            reply = self._failure(exc, entry)
        finally:
            self.in_flight -= 1
        status, body, content_type, extra = reply
        extra.append((b"content-type", content_type))
        await _send(send, status, body, extra)
        if entry is not None:
            entry.metrics.observe_request(time.perf_counter() - started, status)

    # -- shared steps ------------------------------------------------------------

    def _arrive(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count this request in the current loop turn.

        Every request handler that uvicorn created in this turn is already in the
        loop's ready queue, so a callback scheduled now runs after all of them: it
        closes the turn and records how many arrived together.
        """
        if not self._turn_open:
            self._turn_open = True
            loop.call_soon(self._close_turn)
        self._turn_arrivals += 1

    def _close_turn(self) -> None:
        self._previous_turn_arrivals = self._turn_arrivals
        self._turn_arrivals = 0
        self._turn_open = False

    def _alone(self) -> bool:
        """No other request can join this one's batch: the server is not under load.

        Then an idle model runs it at once; otherwise the batcher waits one loop turn
        so every request parsed in this turn joins the batch.
        """
        return self.in_flight == 1 and self._turn_arrivals == 1 and self._previous_turn_arrivals <= 1

    def _decoded(
        self,
        entry: LoadedModel,
        target: tuple[str, str | None] | None,
        headers: dict[bytes, bytes],
        body: bytes,
        started: float,
    ) -> _Call:
        """Decode and check a body against its model; with a `target`, against the version
        serving it by the time decoding is done."""
        model = entry.model
        content_type = headers.get(b"content-type")
        fmt = None
        if content_type is not None:
            fmt = _FORMATS.get(content_type)  # as mlrt's client spells it
            if fmt is None:
                fmt = _FORMATS.get(content_type.split(b";")[0].strip().lower())
        if fmt is None:
            req = decode_request(body, _header_length(headers), model)
        else:
            req = fmt.decode(body, model)
        inputs = check_inputs(model, req.inputs, req.datatypes)
        selected = select_outputs(req, model)
        current = entry if target is None else self.repository.get(*target)
        if current is not entry:
            # A new version was swapped in while this request was read or decoded: it goes
            # to the new one (the old one may be draining already), checked against it.
            entry, model = current, current.model
            inputs = check_inputs(model, req.inputs, req.datatypes)
            selected = select_outputs(req, model)
        req.inputs = inputs  # in the model's datatypes (runtime/convert.py)
        return _Call(entry, req, selected, fmt, headers, started)

    def _encoded(self, call: _Call, outputs: Tensors) -> Reply:
        entry, req = call.entry, call.req
        model = entry.model
        datatypes = self.output_datatypes.get(id(entry))
        if datatypes is None:
            datatypes = self.output_datatypes[id(entry)] = {o.name: o.datatype for o in model.outputs}
        extra: list[tuple[bytes, bytes]] = []
        encode = encode_response if call.fmt is None else call.fmt.encode
        result = encode(
            model_name=model.name,
            model_version=model.version,
            request_id=req.id,
            outputs=outputs,
            selected=call.selected,
            datatypes=datatypes,
        )
        if call.fmt is None:
            payload, header_len = result
            if header_len is None:
                content_type = _JSON
            else:
                content_type = _BINARY
                extra.append((b"inference-header-content-length", str(header_len).encode()))
        else:
            # Answered in the format it was asked in.
            payload = result
            content_type = call.fmt.content_type
        accept = call.headers.get(b"accept-encoding")
        if accept and len(payload) >= COMPRESS_MIN_BYTES:
            payload, encoding = compress(payload, accept.decode("latin-1"))
            if encoding:
                extra.append((b"content-encoding", encoding.encode()))
        return 200, payload, content_type, extra

    def _failure(self, exc: BaseException, entry: LoadedModel | None) -> Reply:
        if not isinstance(exc, MlrtError):
            log.error("internal error in infer", exc_info=exc)
            return 500, b'{"error":"internal server error"}', _JSON, []
        if isinstance(exc, ModelFailure):
            log.error("%s", exc, exc_info=exc.cause)
        extra: list[tuple[bytes, bytes]] = []
        if isinstance(exc, Overloaded | ModelNotReady):
            retry = max(1, round(getattr(exc, "retry_after_s", 1)))
            extra.append((b"retry-after", str(retry).encode()))
            if entry is not None:
                entry.metrics.reject(exc.reason)
        return status_of(exc), orjson.dumps({"error": str(exc)}), _JSON, extra


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
