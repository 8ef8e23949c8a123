"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`), on
`--grpc-port`, in the server's own event loop: `tritonclient.grpc` and KServe's V2
gRPC clients work unchanged.

A transport and nothing more: ModelInfer hands the request message to the infer
pipeline (pipeline.py) with the gRPC wire (codec_grpc.py) and awaits its answer, so
batching, datatype conversion, drift monitoring, metrics and the mapping of failures
(errors.py, then to gRPC status codes here) are the same as over HTTP. The other RPCs
answer from the repository as the HTTP routes do. RPCs mlrt does not serve (Triton's
shared memory, tracing, repository control over gRPC) answer UNIMPLEMENTED.

Needs grpcio and protobuf (the grpc extra).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .. import __version__
from ..errors import ConfigError
from ..models import Tensors
from ..repository import Repository
from . import codec_grpc
from .codec import InferRequest
from .errors import Failure
from .pipeline import Answer, Call, FutureResponder, Pipeline

log = logging.getLogger("mlrt.server")

#: The failure statuses as gRPC codes (their names in grpc.StatusCode).
GRPC_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _grpc() -> Any:
    try:
        import grpc
        import grpc.aio  # noqa: F401
    except ImportError:
        raise ConfigError("--grpc-port needs grpcio and protobuf: pip install grpcio protobuf") from None
    return grpc


class GrpcWire:
    """The infer pipeline's gRPC format: ModelInferRequest in, ModelInferResponse out."""

    def __init__(self, messages: Any) -> None:
        self.response_type = messages.ModelInferResponse

    def decode(self, payload: Any, meta: Any, model: Any) -> tuple[InferRequest, Any]:
        return codec_grpc.decode(payload), None

    def encode(self, call: Call, outputs: Tensors) -> Answer:
        return Answer(200, codec_grpc.encode(self.response_type, call.response(outputs)))

    def fail(self, failure: Failure) -> Answer:
        headers = [(b"retry-after", str(failure.retry_after_s).encode())] if failure.retry_after_s else []
        return Answer(failure.status, None, headers=headers, error=failure.message)

    def sticky_key(self, meta: Any, name: bytes) -> bytes | None:
        # gRPC requests carry no headers into the pipeline yet: drawn by weight.
        return None


class GrpcServer:
    """The gRPC listener of one mlrt server: started and stopped with the app."""

    def __init__(
        self,
        pipeline: Pipeline,
        repository: Repository,
        host: str,
        port: int,
        max_message_bytes: int,
        shared_port: bool = False,
    ) -> None:
        from .grpc_proto import Messages

        self.grpc = _grpc()
        self.pipeline = pipeline
        self.repository = repository
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.messages = Messages()
        self.wire = GrpcWire(self.messages)
        self.shutting_down = False
        self.shared_port = shared_port
        self._server: Any = None
        self._calls = 0  # RPCs in flight, so that stop() knows when only idle connections are left
        self._idle = asyncio.Event()

    async def start(self) -> None:
        grpc = self.grpc
        limit = self.max_message_bytes
        options = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # gRPC shares a port with any other SO_REUSEPORT listener by default: a taken
            # port must fail instead of splitting the traffic with a stranger. The workers of
            # one server (--workers N) share it on purpose: the kernel spreads connections.
            ("grpc.so_reuseport", 1 if self.shared_port else 0),
        ]
        server = grpc.aio.server(options=options)
        server.add_generic_rpc_handlers((self._handlers(),))
        address = f"{self.host}:{self.port}"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError(f"--grpc-port: cannot listen on {address}: {exc}") from None
        if not bound:
            raise ConfigError(f"--grpc-port: cannot listen on {address} (in use?)")
        self.port = bound
        await server.start()
        self._server = server
        log.info("gRPC (inference.GRPCInferenceService) on %s:%d", self.host, bound)

    async def stop(self, grace_s: float | None) -> None:
        self.shutting_down = True
        if self._server is None:
            return
        # gRPC's grace lasts until every connection has gone, not every call: a client that
        # holds an idle connection and never answers GOAWAY (a closed channel whose pooled
        # subchannel nobody polls) would hold shutdown for the whole grace. Once the calls in
        # flight are done, nothing is lost by cancelling what is left.
        stopping = asyncio.ensure_future(self._server.stop(grace_s))
        if self._calls and grace_s is not None:
            self._idle.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)
        if not stopping.done():
            await self._server.stop(None)
        await stopping

    def _counted(self, handler: Any) -> Any:
        async def counted(request: Any, context: Any) -> Any:
            self._calls += 1
            try:
                return await handler(request, context)
            finally:
                self._calls -= 1
                if not self._calls:
                    self._idle.set()

        return counted

    def _handlers(self) -> Any:
        from .grpc_proto import METHODS, SERVICE

        m = self.messages
        handlers = {}
        for name, (request, response) in METHODS.items():
            handlers[name] = self.grpc.unary_unary_rpc_method_handler(
                self._counted(getattr(self, f"_{name}")),
                request_deserializer=getattr(m, request).FromString,
                response_serializer=getattr(m, response).SerializeToString,
            )
        return self.grpc.method_handlers_generic_handler(SERVICE, handlers)

    async def _abort(self, context: Any, answer: Answer) -> None:
        code = getattr(self.grpc.StatusCode, GRPC_CODES.get(answer.status, "UNKNOWN"))
        if answer.headers:
            context.set_trailing_metadata(tuple((k.decode(), v.decode()) for k, v in answer.headers))
        await context.abort(code, answer.error or "error")

    async def _ModelInfer(self, request: Any, context: Any) -> Any:  # noqa: N802 - the RPC's name
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Answer] = loop.create_future()
        target = (request.model_name, request.model_version or None)
        # Only raw contents can be large enough to decode off the loop; typed contents were
        # parsed into lists by gRPC already.
        size = sum(len(b) for b in request.raw_input_contents)
        responder = FutureResponder(done)
        pending = self.pipeline.begin(responder, target, self.wire, request, None, loop, size=size)
        try:
            answer = await done
        except asyncio.CancelledError:
            if pending is not None:
                pending.cancel()  # the client went away: withdraw the request from its batch
            raise
        if answer.status != 200:
            await self._abort(context, answer)
        return answer.body

    async def _ServerLive(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self.messages.ServerLiveResponse(live=True)

    async def _ServerReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        ready = self.repository.ready and not self.shutting_down
        return self.messages.ServerReadyResponse(ready=ready)

    async def _ModelReady(self, request: Any, context: Any) -> Any:  # noqa: N802
        try:
            self.pipeline.describe(request.name, request.version or None)
        except Exception:  # unknown or not ready: not ready, as Triton answers
            return self.messages.ModelReadyResponse(ready=False)
        return self.messages.ModelReadyResponse(ready=True)

    async def _ServerMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        from .routes import EXTENSIONS

        return self.messages.ServerMetadataResponse(name="mlrt", version=__version__, extensions=EXTENSIONS)

    async def _ModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        from .errors import failure
        from .routes import metadata

        try:
            entry, is_endpoint = self.pipeline.describe(request.name, request.version or None)
        except Exception as exc:
            f = failure(exc)
            await self._abort(context, Answer(f.status, None, error=f.message))
        doc = metadata(self.repository, entry, request.name if is_endpoint else None)
        msg = self.messages.ModelMetadataResponse(
            name=doc["name"], versions=doc["versions"], platform=doc["platform"]
        )
        for section in ("inputs", "outputs"):
            for t in doc[section]:
                getattr(msg, section).add(name=t["name"], datatype=t["datatype"], shape=t["shape"])
        return msg
