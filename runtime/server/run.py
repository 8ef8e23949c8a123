"""Run the server with uvicorn on uvloop and httptools."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
from dataclasses import dataclass
from urllib.parse import quote

from ..config import ServerConfig
from ..errors import MlrtError
from ..models.base import signature
from ..repository import Repository
from .accept import Listeners
from .admin import is_loopback
from .app import create_app
from .limits import ClientLimits
from .peers import Peers
from .sockets import bind_all, close_all, unix_socket
from .uvicorn_http import protocol_for, server_class

log = logging.getLogger("mlrt.server")


class ServeError(MlrtError):
    """The server failed to start (e.g. the port is taken)."""


# Control characters as escapes: \n, \r, \t, \xNN, and the Unicode line breaks.
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(32), 0x7F, 0x85)} | {
    0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029",
}  # fmt: skip


class EscapingFormatter(logging.Formatter):
    """One record, one line: a message that carries text from a client (a model name from a
    URL, a value in an error) cannot forge a log line or write a NUL."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = record.message.translate(_ESCAPES)
        return super().formatMessage(record)


def setup_logging(level: str, worker: int | None = None) -> None:
    """Log lines to stderr; a worker of several says which one it is (`mlrt.server[w1]`)."""
    who = "%(name)s" if worker is None else f"%(name)s[w{worker}]"
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(f"%(asctime)s %(levelname)s {who}: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # httpx logs every request at INFO with its whole URL: a webhook's user:password and
    # query (a token) would reach the log that the hook's own lines keep them out of.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def _model_urls(config: ServerConfig, name: str) -> str:
    """Where a model answers, for the start-up log: its infer URL on each listener."""
    path = f"/v2/models/{quote(name, safe='')}/infer"
    urls = [f"http://{config.host}:{config.port}{path}"] if config.tcp else []
    if config.uds:
        urls.append(f"{path} on unix://{config.uds}")
    return " and ".join(urls)


def settle_heap() -> None:
    """Hide what loading made (libraries, models, the app) from the garbage collector.

    It lives as long as the server, yet every full collection would walk all of it again:
    with onnxruntime, numpy and pyarrow loaded, a pause of tens of milliseconds, several
    times a minute under load, which is the p99 at 64 clients (docs/performance.md). Frozen,
    a full collection walks only what serving made since; reference counting still frees
    what loading made and later drops (a swapped-out model), cycles among it excepted."""
    gc.collect()
    gc.freeze()


@dataclass(frozen=True)
class Stopped:
    """How serving ended: model calls still running after the graceful timeout (stuck
    calls, whose threads would keep the interpreter from exiting: `mlrt serve` exits
    without them), and what failed on the way out (the drift counts not saved)."""

    left_running: int = 0
    failure: str | None = None


def served_versions(peers: Peers) -> dict[str, str]:
    """The model versions another worker serves, by name ({} when none answers: the worker
    then loads what its configuration says, as at the server's start)."""
    import orjson

    for i in peers.others():
        try:
            status, body = asyncio.run(peers.call(i, "GET", "/v2/repository/index"))
            if status == 200:
                return {m["name"]: m["version"] for m in orjson.loads(body) if m.get("version")}
        except (OSError, TimeoutError, ValueError, KeyError) as exc:
            log.warning("worker %d: cannot ask worker %d what it serves: %s", peers.index, i, exc)
    return {}


def serve(
    config: ServerConfig,
    repository: Repository | None = None,
    *,
    listeners: list[socket.socket] | None = None,
    peers: Peers | None = None,
) -> Stopped:
    """Load the configured models (unless given) and serve until SIGINT/SIGTERM.

    A worker of several (runtime/server/workers.py) is handed the server's `listeners`,
    bound by the supervisor, and its `peers`; it also answers on its private socket."""
    import uvicorn

    setup_logging(config.log_level, None if peers is None else peers.index)
    # Bind first: a taken port or socket path fails in a second, before models load
    # and before anything says it is serving (sockets.py words the error).
    socks = bind_all(config) if listeners is None else list(listeners)
    private = unix_socket(peers.socket_path(peers.index), "600") if peers is not None else None
    quiet = peers is not None and not peers.leader  # the leader alone says what is served
    try:
        if repository is None:
            # A worker started again after a crash loads the versions the others serve: its
            # models' aliases may have moved since to a version the others refused (a file
            # that does not load), and loading that one failed it again and again.
            pins = served_versions(peers) if peers is not None and peers.restarted() else None
            repository = Repository.load(
                config.models, monitor_config=config.monitor, registry=config.registry, pins=pins
            )
        for entry in [] if quiet else repository.entries():
            m = entry.model
            sig_in, sig_out = signature(m.inputs), signature(m.outputs)
            log.info("model %s v%s (%s): (%s) -> (%s)", m.name, m.version, m.platform, sig_in, sig_out)
            log.info("model %s: %s", m.name, _model_urls(config, m.name))
            if entry.monitor is not None:
                log.info(
                    "model %s v%s: drift monitoring on, profile %s (%d features, %d outputs)",
                    m.name,
                    m.version,
                    entry.config.profile,
                    len(entry.monitor.profile.features),
                    len(entry.monitor.profile.outputs),
                )
        app = create_app(config, repository, peers)
        listeners = Listeners([*socks, *([private] if private is not None else [])])
        limits = ClientLimits.from_config(config, repository.metrics.registry)
        uv_config = uvicorn.Config(
            app,
            loop="uvloop",
            http=protocol_for(app.pipeline, app.direct_max_bytes, listeners, limits),
            lifespan="on",
            log_config=None,
            log_level=config.log_level,
            access_log=False,
            timeout_graceful_shutdown=config.graceful_timeout_s,
            timeout_keep_alive=config.keep_alive_s,
        )
        server = server_class(listeners)(uv_config)
        if not quiet:
            workers = f" with {peers.count} workers" if peers is not None else ""
            log.info("mlrt serving %d model(s) on %s%s", len(repository.entries()), config.url, workers)
        if not quiet and not config.admin_token and config.tcp and not is_loopback(config.host):
            log.warning(
                "listening on %s without an admin token: the model repository and traffic routes "
                "(load, unload, weights) answer loopback clients only; set MLRT_ADMIN_TOKEN to manage "
                "models from elsewhere",
                config.host,
            )
        settle_heap()
        server.run(sockets=listeners.socks)
    finally:
        # The Unix socket file goes with the server; a worker's listeners are the
        # supervisor's to close, its private socket its own.
        if private is None:
            close_all(socks, config)
        else:
            private.close()
            with contextlib.suppress(OSError):
                os.unlink(peers.socket_path(peers.index))  # type: ignore[union-attr]
    if not server.started:
        raise ServeError(f"the server could not start on {config.url} (see the log above)")
    left = sum(e.batcher.running_calls for e in repository.entries())
    if left:
        log.warning("%d model call(s) still running after the graceful timeout; exiting without them", left)
    return Stopped(left, app.state.drift.save_error)
