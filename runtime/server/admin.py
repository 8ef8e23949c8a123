"""Triton's model repository extension: index, load (also: reload now), unload.

These routes change what is served, so they are never open to the network by default:
with an admin token configured they need `Authorization: Bearer <token>` (compared in
constant time, never logged); without one they answer only local callers (loopback, or
the Unix socket) and refuse everyone else with 403. The traffic route
(runtime/server/endpoints.py) follows the same rule.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .http import error_response
from .reload import Reloader


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False


def _local(request: Request) -> bool:
    client = request.scope.get("client")
    # No peer address: the Unix socket, whose file permissions say who may connect.
    return client is None or is_loopback(client[0])


def from_peer(request: Request) -> bool:
    """Sent by another worker of this server (runtime/server/peers.py), with its token."""
    peers = request.app.state.peers
    return peers is not None and peers.is_peer(request.headers)


async def fan_out(request: Request) -> None:
    """A change made here, made on the server's other workers too (when it has others and
    the change did not come from one of them). Their failures are logged (peers.py)."""
    peers = request.app.state.peers
    if peers is not None and not from_peer(request):
        body = await request.body()
        kind = request.headers.get("content-type")
        headers = [("content-type", kind)] if kind else []
        await peers.broadcast(request.method, request.scope["raw_path"].decode("latin-1"), body, headers)


def authorized(request: Request) -> bool:
    if from_peer(request):
        return True
    token = request.app.state.config.admin_token
    if not token:
        return _local(request)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def denied(request: Request) -> Response:
    if not request.app.state.config.admin_token:
        return error_response(
            403,
            "the model repository and traffic routes answer local clients only when no admin token is "
            "set; start the server with MLRT_ADMIN_TOKEN (or --admin-token) to manage it remotely",
        )
    return error_response(401, "missing or invalid admin token", {"WWW-Authenticate": "Bearer"})


def _reloader(request: Request) -> Reloader:
    return request.app.state.reloader  # type: ignore[no-any-return]


async def index(request: Request) -> Response:
    if not authorized(request):
        return denied(request)
    repo = request.app.state.repository
    models: list[dict[str, Any]] = [
        {"name": e.model.name, "version": e.model.version, "state": "READY" if e.ready else "UNAVAILABLE",
         "reason": ""}
        for e in repo.entries()
    ]  # fmt: skip
    for name in sorted(_reloader(request)._unloaded):
        if name not in repo.models:
            models.append({"name": name, "version": "", "state": "UNAVAILABLE", "reason": "unloaded"})
    return Response(orjson.dumps(models), media_type="application/json")


async def load(request: Request) -> Response:
    """Load a model, or load its newest target again now (a registry alias' current version)."""
    if not authorized(request):
        return denied(request)
    entry = await _reloader(request).reload(request.path_params["model"])
    await fan_out(request)
    body = {"name": entry.model.name, "version": entry.model.version}
    return Response(orjson.dumps(body), media_type="application/json")


async def unload(request: Request) -> Response:
    if not authorized(request):
        return denied(request)
    await _reloader(request).unload(request.path_params["model"])
    await fan_out(request)
    return Response(status_code=200)
