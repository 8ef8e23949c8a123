"""The ASGI application: the infer fast path, Starlette for everything else."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.routing import Route

from ..config import ServerConfig
from ..hooks import HookDispatcher, build_hooks
from ..repository import Repository
from . import admin, routes
from .drift import DriftService
from .errors import HANDLERS
from .infer import InferEndpoint, match_infer
from .reload import Reloader

log = logging.getLogger("mlrt.server")


class MlrtApp:
    """Sends `POST .../infer` to the bare endpoint, all else to Starlette."""

    def __init__(self, starlette: Starlette, infer: InferEndpoint) -> None:
        self.starlette = starlette
        self.infer = infer

    @property
    def state(self) -> State:
        return self.starlette.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = match_infer(scope["path"])
            if target is not None:
                await self.infer(scope, receive, send, target)
                return
        await self.starlette(scope, receive, send)


def _model_routes() -> list[Route]:
    out = []
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        out += [
            Route(prefix, routes.model_metadata, methods=["GET"]),
            Route(prefix + "/ready", routes.model_ready, methods=["GET"]),
            Route(prefix + "/config", routes.model_config, methods=["GET"]),
            Route(prefix + "/stats", routes.model_stats, methods=["GET"]),
            Route(prefix + "/drift", routes.model_drift, methods=["GET"]),
            # POSTs never get here (MlrtApp sends them to the fast path); other methods get 405.
            Route(prefix + "/infer", routes.model_ready, methods=["POST"]),
        ]
    return out


def create_app(config: ServerConfig, repository: Repository) -> MlrtApp:
    """Build the ASGI app around already-loaded models."""
    dispatcher = HookDispatcher(build_hooks(config.hooks)) if config.hooks else None
    drift = DriftService(repository, config.monitor, dispatcher)
    reloader = Reloader(repository, config)
    repository.metrics.watch_drift(lambda: [e.monitor for e in drift.monitored()])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        drift.restore()
        drift.start()
        reloader.start()
        yield
        # uvicorn has stopped accepting and waited for open requests by now.
        app.state.shutting_down = True
        await reloader.stop()
        await repository.close(config.graceful_timeout_s)
        await drift.stop()

    starlette = Starlette(
        routes=[
            Route("/v2/health/live", routes.live, methods=["GET"]),
            Route("/v2/health/ready", routes.ready, methods=["GET"]),
            Route("/v2", routes.server_metadata, methods=["GET"]),
            Route("/v2/models/stats", routes.model_stats, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            Route("/v2/repository/index", admin.index, methods=["POST", "GET"]),
            Route("/v2/repository/models/{model}/load", admin.load, methods=["POST"]),
            Route("/v2/repository/models/{model}/unload", admin.unload, methods=["POST"]),
            *_model_routes(),
        ],
        exception_handlers=HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    starlette.state.config = config
    starlette.state.repository = repository
    starlette.state.shutting_down = False
    starlette.state.drift = drift
    starlette.state.reloader = reloader
    return MlrtApp(starlette, InferEndpoint(repository, config.max_body_bytes))
