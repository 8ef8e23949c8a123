"""The infer pipeline: one request, whatever transport carried it, through the same
named stages, each written once:

    receive -> resolve -> decode -> admit -> run -> encode -> respond -> record -> shadow

`receive` and `respond` belong to the transport: HTTP straight from the parser
(protocol.py, the fast path for small bodies), HTTP through ASGI (http_infer.py, for
the rest), the Unix socket (the same HTTP), gRPC (grpc_server.py). A transport hands
the pipeline its bytes or message with a `Wire` that knows the transport's formats,
and a `Responder` that writes the `Answer`. Everything between is here: the model
version is resolved once and held until the answer; decoding and encoding of large
bodies leave the event loop; admission (queue room, deadline), batching, metrics and
the mapping of every failure to a status (errors.py) are the same for all, and so are
the last stages, after the answer is on its way: an endpoint's prediction log and its
memory for ground-truth feedback (record), and copies to its shadow models (shadow).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InvalidInput, ModelNotFound, ModelNotReady
from ..models import Tensors, check_inputs
from ..repository import LoadedModel, Repository
from ..traffic import Endpoint, Router
from ..traffic.routing import parameter_key
from .codec import InferRequest, InferResponse, select_outputs
from .errors import Failure, failure

# Payloads larger than this are decoded and encoded on a worker thread, so one big
# request never holds the event loop for more than tens of microseconds.
OFFLOAD_BYTES = 64 * 1024


@dataclass(slots=True)
class Answer:
    """What the pipeline hands a transport to write: an HTTP-style status, the encoded
    body (bytes for HTTP, a message for gRPC), its content type, extra headers (or
    metadata), and for a failure the message."""

    status: int
    body: Any
    content_type: bytes = b"application/json"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    error: str | None = None
    # One of this many answers of a batch, made one after another in one callback (0 or 1:
    # on its own); a transport may hold it to write them together (uvicorn_http._HeldWrites).
    batch: int = 1


class Responder(Protocol):
    """Where a transport takes the answer to one request (called exactly once)."""

    def respond(self, answer: Answer) -> None: ...


class FutureResponder:
    """A responder for a coroutine that awaits its answer (the ASGI and gRPC transports)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Answer]) -> None:
        self.future = future

    def respond(self, answer: Answer) -> None:
        if not self.future.done():
            self.future.set_result(answer)


class Cancellable(Protocol):
    def cancel(self) -> bool: ...


class Wire(Protocol):
    """A transport's formats: decode its payload into a request for a model (and what the
    encoder will need to answer in kind, kept as `Call.form`), encode outputs into its
    answer, and render a failure."""

    def decode(self, payload: Any, meta: Any, model: Any) -> tuple[InferRequest, Any]: ...

    def encode(self, call: Call, outputs: Tensors) -> Answer: ...

    def fail(self, failure: Failure) -> Answer: ...

    def sticky_key(self, meta: Any, name: bytes) -> bytes | None:
        """The value of the sticky-key header (or metadata) `name` in `meta`, if any."""
        ...


def variant_header(model: Any) -> tuple[bytes, bytes]:
    """Which variant answered a request routed through an endpoint: `mlrt-variant:
    name/version` (also in a V2 answer's model_name and model_version)."""
    return (b"mlrt-variant", f"{model.name}/{model.version}".encode())


@dataclass(slots=True)
class Call:
    """One request on its way through the model: the version it resolved to (held
    until the answer), the decoded request, the outputs to return, and how to answer."""

    entry: LoadedModel
    req: InferRequest
    selected: Sequence[tuple[str, bool]]
    wire: Wire
    form: Any  # what the wire's decoder left for its encoder (HTTP: format, Accept-Encoding)
    started: float
    offload: bool
    endpoint: Endpoint | None = None  # the endpoint it was routed through (runtime/traffic)
    # Where the answer goes, and the loop it is made on: set when the call is run.
    responder: Responder | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def response(self, outputs: Tensors) -> InferResponse:
        """The model's outputs as the wire's encoder takes them."""
        model = self.entry.model
        return InferResponse(
            model.name, model.version, self.req.id, outputs, self.selected, self.entry.output_datatypes
        )


def timeout_s(req: InferRequest, entry: LoadedModel) -> float | None:
    """The deadline: V2 parameter `timeout` in microseconds (as Triton's clients send it)."""
    raw = req.parameters.get("timeout")
    if raw is None:
        raw = entry.config.timeout_us
    elif not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise InvalidInput(f"parameter 'timeout' must be a non-negative integer (µs), got {raw!r}")
    return raw / 1e6 if raw else None


class Pipeline:
    """The stages between a transport's receive and respond, shared by every transport."""

    def __init__(self, repository: Repository, router: Router | None = None) -> None:
        self.repository = repository
        self.router = router if router is not None else Router()
        # Infer requests between arrival and answer, across all models and transports.
        self.in_flight = 0
        # Arrivals per event-loop turn. Requests whose bodies have arrived run their
        # handlers back to back without ever yielding, so in_flight alone cannot see a
        # crowd; the previous turn's arrivals can (see _arrive).
        self._turn_arrivals = 0
        self._previous_turn_arrivals = 0
        self._turn_open = False
        # The batcher's completion callback, made once: each request's Call goes with it
        # as its context (no closure per request).
        self._on_ran = self._ran

    # -- receive (the transport's) hands over here ------------------------------------

    def arrive(self, loop: asyncio.AbstractEventLoop) -> float:
        """A request has begun: count it; returns its start time."""
        self.in_flight += 1
        if not self._turn_open:
            # Every request handler created in this turn is already in the loop's ready
            # queue, so a callback scheduled now runs after all of them: it closes the
            # turn and records how many arrived together.
            self._turn_open = True
            loop.call_soon(self._close_turn)
        self._turn_arrivals += 1
        return time.perf_counter()

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

    # -- resolve ----------------------------------------------------------------------

    def resolve(
        self, target: tuple[str, str | None], wire: Wire | None = None, meta: Any = None
    ) -> LoadedModel:
        """The model version that serves this request, held until it is answered: a
        version swapped out meanwhile finishes the request before it is retired.

        A target that names an endpoint (runtime/traffic) resolves to one of its
        variants: by the request's sticky key when the endpoint has one and the wire
        finds it in `meta`, else drawn by weight."""
        name, version = target
        endpoints = self.router.endpoints  # read directly: a method call per request costs more
        endpoint = endpoints.get(name) if endpoints else None
        if endpoint is not None:
            if version is not None:
                raise InvalidInput(f"'{name}' is an endpoint: call it without a version, or call a variant")
            if endpoint.parameter is not None:
                name = endpoint.provisional().model  # chosen once decoded (run: by_parameter)
            else:
                key = None
                if endpoint.header is not None and wire is not None:
                    key = wire.sticky_key(meta, endpoint.header)
                name = endpoint.choose(key).model
            entry = self._variant(endpoint, name)
        else:
            entry = self.repository.get(name, version)
        entry.holders += 1
        return entry

    def _variant(self, endpoint: Endpoint, name: str) -> LoadedModel:
        """The variant chosen, or, while it is unloaded or not ready, the first other
        weighted variant that is: its share goes where the rest of the traffic goes, as
        with a weight of 0, rather than a 404 naming a model the client never called. An
        endpoint with no such variant is not ready (503), as its /ready says."""
        try:
            return self.repository.get(name)
        except (ModelNotFound, ModelNotReady) as exc:
            return self._first_ready(endpoint, exc, skip=name)

    def _first_ready(self, endpoint: Endpoint, error: Exception | None = None, skip: str = "") -> LoadedModel:
        """The endpoint's first variant with a weight that is ready (but `skip`); none is
        ready: ModelNotReady (503) with the last reason a variant was not (or `error`)."""
        for variant in endpoint.variants:
            if variant.weight > 0 and variant.model != skip:
                try:
                    return self.repository.get(variant.model)
                except (ModelNotFound, ModelNotReady) as exc:
                    error = exc
        if error is None:
            raise ModelNotReady(endpoint.name, "not ready: no variant has a weight")
        raise ModelNotReady(endpoint.name, f"not ready: no variant with a weight is ready ({error})")

    def describe(self, name: str, version: str | None = None) -> tuple[LoadedModel, bool]:
        """The model version whose metadata and readiness a name shows, and whether the name
        is an endpoint. A client calls an endpoint like a model, so it asks for its metadata
        and readiness like a model's too: an endpoint shows its first variant with a weight
        that is ready (the variants take the same inputs), and is not ready while none is."""
        endpoints = self.router.endpoints
        endpoint = endpoints.get(name) if endpoints else None
        if endpoint is None:
            return self.repository.get(name, version), False
        if version is not None:
            raise InvalidInput(f"'{name}' is an endpoint: call it without a version, or call a variant")
        return self._first_ready(endpoint), True

    def _endpoint(self, target: tuple[str, str | None]) -> Endpoint | None:
        """The endpoint a request was routed through, if it named one, or the recorder of
        the model it named."""
        router = self.router
        if not (router.endpoints or router.recorders):
            return None
        return router.through(target[0])

    # -- the stages, driven -------------------------------------------------------------

    def begin(
        self,
        responder: Responder,
        target: tuple[str, str | None],
        wire: Wire,
        payload: Any,
        meta: Any,
        loop: asyncio.AbstractEventLoop,
        *,
        size: int = 0,
        started: float | None = None,
        entry: LoadedModel | None = None,
    ) -> Cancellable | None:
        """Run one request on `loop` (the running one). Returns what to cancel if the
        client goes away, or None when the answer has been handed over already.

        `size` is the payload's size in bytes: past OFFLOAD_BYTES decoding and encoding
        leave the event loop. A transport that had to wait for the payload (ASGI) calls
        `arrive` and `resolve` itself before reading it and passes `started` and `entry`."""
        if started is None:
            started = self.arrive(loop)
        try:
            if entry is None:
                entry = self.resolve(target, wire, meta)
            entry.batcher.check_room()  # admit, early: an overloaded model refuses before decoding
            if size > OFFLOAD_BYTES:
                # One big request must not hold the event loop: decode (and later encode)
                # on a worker thread, then carry on here.
                held = entry
                work = loop.run_in_executor(
                    None, self.decode, held, wire, payload, meta, started, True, self._endpoint(target)
                )
                work.add_done_callback(functools.partial(self._decoded, responder, held, wire, started, loop))
                return work
            call = self.decode(entry, wire, payload, meta, started, False, self._endpoint(target))
            return self.run(call, responder, loop)
        except Exception as exc:
            self.respond_failure(responder, wire, entry, started, exc)
            return None

    def _decoded(
        self,
        responder: Responder,
        entry: LoadedModel,
        wire: Wire,
        started: float,
        loop: asyncio.AbstractEventLoop,
        work: Any,
    ) -> None:
        if work.cancelled():
            self.abandon(entry)
            return
        try:
            call = work.result()
            self.run(call, responder, loop)
        except Exception as exc:
            self.respond_failure(responder, wire, entry, started, exc)

    # -- decode -------------------------------------------------------------------------

    def decode(
        self,
        entry: LoadedModel,
        wire: Wire,
        payload: Any,
        meta: Any,
        started: float,
        offload: bool,
        endpoint: Endpoint | None = None,
    ) -> Call:
        """Decode a payload and check it against the model (converting datatypes by the
        one rule, runtime/convert.py)."""
        model = entry.model
        req, form = wire.decode(payload, meta, model)
        by_parameter = endpoint is not None and endpoint.parameter is not None
        if not by_parameter:
            req.inputs = check_inputs(model, req.inputs, req.datatypes)
        # else checked, and its outputs chosen, against the variant the request's parameter
        # picks (by_parameter), as sent: checked against this one first, a null text the
        # chosen Python model takes was refused, FP64 was rounded to FP32 on its way to an
        # FP64 model, and outputs asked for by the chosen one's names were unknown.
        if endpoint is not None and endpoint.records and not req.id:
            # Recorded answers are found again by id (labels, the log): the answer carries it.
            req.id = endpoint.new_id()
        selected = () if by_parameter else select_outputs(req, model, entry.every_output)
        return Call(entry, req, selected, wire, form, started, offload, endpoint)

    # -- admit and run --------------------------------------------------------------------

    def run(self, call: Call, responder: Responder, loop: asyncio.AbstractEventLoop) -> Cancellable | None:
        """Admit the request (queue room, deadline) into its model's batcher and answer
        when its batch is done: at once when it ran inline."""
        call.responder = responder
        call.loop = loop
        try:
            if call.endpoint is not None and call.endpoint.parameter is not None:
                self.by_parameter(call)
            result = call.entry.batcher.submit(
                call.req.inputs,
                timeout_s=timeout_s(call.req, call.entry),
                alone=self._alone(),
                on_done=self._on_ran,
                context=call,
                loop=loop,
            )
        except Exception as exc:  # answered here: call.entry is the version now held
            self.respond_failure(responder, call.wire, call.entry, call.started, exc, call)
            return None
        if not isinstance(result, dict):
            return result
        self._ran(call, result, None)
        return None

    def by_parameter(self, call: Call) -> None:
        """Resolve, second half, for endpoints whose sticky key is a V2 request parameter:
        the variant is chosen now that the request is decoded, and the version held since
        resolve is swapped for the chosen one (on the loop's thread, as holders are counted)."""
        endpoint = call.endpoint
        assert endpoint is not None and endpoint.parameter is not None
        key = parameter_key(call.req.parameters.get(endpoint.parameter), endpoint.parameter)
        chosen = endpoint.choose(key).model
        if chosen != call.entry.model.name:
            entry = self._variant(endpoint, chosen)
            entry.holders += 1
            call.entry.holders -= 1
            call.entry = entry  # from here on, a refusal is the chosen variant's
        call.req.inputs = check_inputs(call.entry.model, call.req.inputs, call.req.datatypes)
        call.selected = select_outputs(call.req, call.entry.model, call.entry.every_output)

    def _ran(self, call: Call, outputs: Tensors | None, exc: BaseException | None) -> None:
        # Called by the batcher as soon as the request's batch is done (or it expired, or
        # the client went away).
        responder, loop = call.responder, call.loop
        assert responder is not None and loop is not None
        if isinstance(exc, asyncio.CancelledError):
            self.abandon(call.entry)
            return
        if exc is not None:
            self.respond_failure(responder, call.wire, call.entry, call.started, exc, call)
            return
        assert outputs is not None
        if call.offload:
            work = loop.run_in_executor(None, call.wire.encode, call, outputs)
            work.add_done_callback(functools.partial(self._encoded, responder, call))
        else:
            try:
                answer = call.wire.encode(call, outputs)
            except Exception as error:
                self.respond_failure(responder, call.wire, call.entry, call.started, error, call)
                return
            answer.batch = call.entry.batcher.answering
            self.respond(responder, call.entry, call.started, answer)
        endpoint = call.endpoint
        if endpoint is not None:
            if endpoint.records:
                self.record(call, outputs)
            if endpoint.shadows:
                self.shadow(call, outputs, loop)

    # -- record and shadow (after the answer is on its way) ---------------------------------

    def record(self, call: Call, outputs: Tensors) -> None:
        """Hand an answered request to its endpoint's prediction log (a queue put; the
        writer thread does the rest) and remember its prediction for feedback."""
        endpoint, model, rid = call.endpoint, call.entry.model, call.req.id
        assert endpoint is not None and rid is not None
        if endpoint.log is not None:
            took = time.perf_counter() - call.started
            endpoint.log.offer(rid, model.name, model.version, call.req.inputs, outputs, took)
        if endpoint.feedback is not None:
            classes = getattr(model, "classes", None)
            endpoint.feedback.remember_answer(rid, model.name, model.version, outputs, classes)

    def shadow(self, call: Call, outputs: Tensors, loop: asyncio.AbstractEventLoop) -> None:
        """Copy an answered request to its endpoint's shadow models (runtime/traffic/shadow.py):
        bounded, dropped and counted when they lag, never awaited."""
        assert call.endpoint is not None
        rid = call.req.id
        for s in call.endpoint.shadows:
            s.offer(call.req.inputs, call.entry.input_datatypes, outputs, self.repository.get, loop, rid)

    # -- encode and respond ---------------------------------------------------------------

    def _encoded(self, responder: Responder, call: Call, work: Any) -> None:
        try:
            answer = work.result()
        except Exception as exc:
            self.respond_failure(responder, call.wire, call.entry, call.started, exc, call)
            return
        self.respond(responder, call.entry, call.started, answer)

    def respond(
        self, responder: Responder, entry: LoadedModel | None, started: float, answer: Answer
    ) -> None:
        """Hand the answer to the transport and account for the request."""
        self.in_flight -= 1
        if entry is not None:
            entry.holders -= 1
        responder.respond(answer)
        if entry is not None:
            entry.metrics.observe_request(time.perf_counter() - started, answer.status)

    def respond_failure(
        self,
        responder: Responder,
        wire: Wire,
        entry: LoadedModel | None,
        started: float,
        exc: BaseException,
        call: Call | None = None,
    ) -> None:
        """Answer with the failure `exc` maps to (errors.py), in the transport's form. A
        request routed through an endpoint (`call`) is told which variant failed it, in
        the header its answer would have carried."""
        f = failure(exc)
        if f.reason is not None and entry is not None:
            entry.metrics.reject(f.reason)
        answer = wire.fail(f)
        if call is not None and call.endpoint is not None and not call.endpoint.own:
            answer.headers.append(variant_header(call.entry.model))
        self.respond(responder, entry, started, answer)

    def abandon(self, entry: LoadedModel | None) -> None:
        """The client went away before its answer: no answer, but the request is over."""
        self.in_flight -= 1
        if entry is not None:
            entry.holders -= 1
