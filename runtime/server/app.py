"""The ASGI application: infer requests into the pipeline, Starlette for everything else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.routing import Route

from ..config import ServerConfig
from ..hooks import HookDispatcher, RollbackEvent, build_hooks
from ..repository import Repository
from ..traffic import Router
from . import admin, endpoints, routes
from .dashboard.routes import routes as dashboard_routes
from .drift import DriftService
from .events import Events
from .http import HANDLERS, infer_asgi, match_infer
from .looplag import LoopLag
from .peers import SNAPSHOT_PATH, Peers
from .periodic import Periodic
from .pipeline import OFFLOAD_BYTES, Pipeline
from .reload import Reloader

log = logging.getLogger("mlrt.server")


class MlrtApp:
    """Sends infer requests into the pipeline (http.py's ASGI way in), all else to
    Starlette. Requests the direct path takes never get here (uvicorn_http.py)."""

    def __init__(self, starlette: Starlette, pipeline: Pipeline, max_body_bytes: int) -> None:
        self.starlette = starlette
        self.pipeline = pipeline
        self.max_body_bytes = max_body_bytes
        # The largest body the direct path takes: decoding it inline stays cheap.
        self.direct_max_bytes = min(OFFLOAD_BYTES, max_body_bytes)

    @property
    def state(self) -> State:
        return self.starlette.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            target = match_infer(scope["path"])
            if target is not None:
                await infer_asgi(self.pipeline, self.max_body_bytes, scope, receive, send, target)
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
        ]
    return out


def create_app(config: ServerConfig, repository: Repository, peers: Peers | None = None) -> MlrtApp:
    """Build the ASGI app around already-loaded models; `peers`: this process is one of the
    server's workers (runtime/server/peers.py)."""
    events = Events()
    # Of several workers, the leader alone tells the hooks, judging every worker's traffic.
    hooked = config.hooks and (peers is None or peers.leader)
    dispatcher = HookDispatcher(build_hooks(config.hooks), on_event=events.add) if hooked else None
    drift = DriftService(repository, config.monitor, dispatcher, events, peers)
    reloader = Reloader(repository, config, events, peers)
    if peers is None:
        repository.metrics.watch_drift(lambda: [e.monitor for e in drift.monitored()])
    # else /metrics sums the workers' drift counts and judges them (runtime/server/merged.py)

    router = Router([e.build() for e in config.endpoints])
    router.check_inputs(lambda name: repository.get(name).model)
    repository.endpoint_names = tuple(router.endpoints)
    repository.metrics.watch_endpoints(router.all)
    pipeline = Pipeline(repository, router)
    grpc = None
    if config.grpc_port is not None:
        from .grpc_server import GrpcServer

        grpc = GrpcServer(
            pipeline, repository, config.host, config.grpc_port, config.max_body_bytes, peers is not None
        )

    logs = [e.log for e in router.all() if e.log is not None]
    guarded = [e for e in router.endpoints.values() if e.rollbacks]

    def metrics_of(model: str) -> Any:
        try:
            return repository.get(model).metrics
        except Exception:  # not loaded or not ready: nothing to compare this tick
            return None

    async def watch_canaries() -> None:
        for e in guarded:
            for r in e.rollbacks:
                if r.check(e, metrics_of) is None or r.rolled_back is None:
                    continue
                events.add("rollback", r.model, f"endpoint {e.name}: rolled back ({r.rolled_back['reason']})")
                if dispatcher is None:
                    continue
                try:
                    version = repository.get(r.model).model.version
                except Exception:  # swapped out meanwhile: the event still names the model
                    version = ""
                dispatcher.notify(
                    RollbackEvent(endpoint=e.name, model=r.model, version=version, **r.rolled_back)
                )

    canaries = Periodic("canary rollback", 1.0, watch_canaries) if guarded else None

    # One watchdog per metrics registry: an app built again on the same repository reuses it.
    lag = getattr(repository.metrics, "loop_lag", None) or LoopLag(repository.metrics.registry)
    repository.metrics.loop_lag = lag  # type: ignore[attr-defined]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        lag.start()
        for predictions in logs:
            predictions.start()
        drift.restore()
        drift.start()
        reloader.start()
        if canaries is not None:
            canaries.start()
        if grpc is not None:
            await grpc.start()
        if peers is not None:
            if peers.restarted():
                from .merged import catch_up

                await catch_up(app.state)
            peers.mark_serving()
        yield
        # uvicorn has stopped accepting and waited for open requests by now; gRPC stops
        # accepting and finishes its calls within the same grace. Shutdown as a whole keeps
        # to --graceful-timeout: the models get what uvicorn's wait left of it.
        app.state.shutting_down = True
        began = getattr(app.state, "stop_began", None) or time.monotonic()

        def left() -> float:
            return max(0.0, config.graceful_timeout_s - (time.monotonic() - began))

        if grpc is not None:
            await grpc.stop(left())
        await reloader.stop()
        if canaries is not None:
            await canaries.stop()
        await repository.close(left())
        await lag.stop()
        await drift.stop()
        # Last, once nothing answers any more: the open log files become Parquet.
        loop = asyncio.get_running_loop()
        for predictions in logs:
            await loop.run_in_executor(None, predictions.close, config.graceful_timeout_s)

    starlette = Starlette(
        routes=[
            Route("/v2/health/live", routes.live, methods=["GET"]),
            Route("/v2/health/ready", routes.ready, methods=["GET"]),
            Route("/v2", routes.server_metadata, methods=["GET"]),
            Route("/v2/models/stats", routes.model_stats, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            Route("/openapi.json", routes.openapi_json, methods=["GET"]),
            *([Route(SNAPSHOT_PATH, routes.peer_snapshot, methods=["GET"])] if peers is not None else []),
            *(dashboard_routes(config.dashboard_path) if config.dashboard_path is not None else []),
            Route("/v2/repository/index", admin.index, methods=["POST", "GET"]),
            Route("/v2/repository/models/{model}/load", admin.load, methods=["POST"]),
            Route("/v2/repository/models/{model}/unload", admin.unload, methods=["POST"]),
            Route("/v2/endpoints/{endpoint}", endpoints.show, methods=["GET"]),
            Route("/v2/endpoints/{endpoint}", endpoints.set_weights, methods=["PUT"]),
            Route("/v2/endpoints/{endpoint}/feedback", endpoints.feedback, methods=["POST"]),
            Route("/v2/models/{model}/feedback", endpoints.feedback, methods=["POST"]),
            Route("/v2/models/{model}/feedback", endpoints.show, methods=["GET"]),
            *_model_routes(),
        ],
        exception_handlers=HANDLERS,  # type: ignore[arg-type]
        lifespan=lifespan,
    )
    starlette.state.config = config
    starlette.state.repository = repository
    starlette.state.shutting_down = False
    starlette.state.drift = drift
    starlette.state.events = events
    starlette.state.reloader = reloader
    starlette.state.grpc = grpc
    starlette.state.router = router
    starlette.state.pipeline = pipeline
    starlette.state.peers = peers
    return MlrtApp(starlette, pipeline, config.max_body_bytes)
