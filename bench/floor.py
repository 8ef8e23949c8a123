"""The HTTP floor: a do-nothing Starlette endpoint on mlrt's server stack
(uvicorn + uvloop + httptools, with mlrt's one-write-per-response protocol),
reading the body and answering a fixed JSON. With --grpc-port, the gRPC floor too: a
grpc.aio server in the same loop answering every ModelInfer with a fixed response
(what grpcio itself costs a call, for bench.latency's gRPC row).

    python -m bench.floor --port 8001 [--grpc-port 8002]
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_BODY = b'{"model_name":"floor","outputs":[]}'


async def noop(request: Request) -> Response:
    await request.body()
    return Response(_BODY, media_type="application/json")


async def live(request: Request) -> Response:
    return Response(status_code=200)


GRPC_PORT: int | None = None


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    if GRPC_PORT is None:
        yield
        return
    import grpc

    from runtime.server.grpc_proto import SERVICE, Messages

    m = Messages()
    answer = m.ModelInferResponse(model_name="floor")

    async def infer(request: object, context: object) -> object:
        return answer

    handler = grpc.unary_unary_rpc_method_handler(
        infer,
        request_deserializer=m.ModelInferRequest.FromString,
        response_serializer=m.ModelInferResponse.SerializeToString,
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": handler}),))
    server.add_insecure_port(f"127.0.0.1:{GRPC_PORT}")
    await server.start()
    yield
    await server.stop(1)


app = Starlette(
    routes=[
        Route("/v2/models/{model}/infer", noop, methods=["POST"]),
        Route("/v2/health/ready", live, methods=["GET"]),
    ],
    lifespan=lifespan,
)


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--grpc-port", type=int, default=None)
    args = p.parse_args()
    global GRPC_PORT
    GRPC_PORT = args.grpc_port
    from runtime.server.uvicorn_http import CoalescingHttpToolsProtocol

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
