"""The HTTP floor: a do-nothing Starlette endpoint on mlrt's server stack
(uvicorn + uvloop + httptools, with mlrt's one-write-per-response protocol),
reading the body and answering a fixed JSON.

    python -m bench.floor --port 8001
"""

from __future__ import annotations

import argparse

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


app = Starlette(
    routes=[
        Route("/v2/models/{model}/infer", noop, methods=["POST"]),
        Route("/v2/health/ready", live, methods=["GET"]),
    ]
)


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8001)
    args = p.parse_args()
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
