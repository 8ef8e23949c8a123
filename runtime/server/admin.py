"""Triton's model repository extension: index, load (also: reload now), unload.

When an admin token is configured these routes need `Authorization: Bearer <token>`;
the comparison is constant-time and the token is never logged.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .http import error_response
from .reload import Reloader


def authorized(request: Request) -> bool:
    token = request.app.state.config.admin_token
    if not token:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def denied() -> Response:
    return error_response(401, "missing or invalid admin token", {"WWW-Authenticate": "Bearer"})


def _reloader(request: Request) -> Reloader:
    return request.app.state.reloader  # type: ignore[no-any-return]


async def index(request: Request) -> Response:
    if not authorized(request):
        return denied()
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
        return denied()
    entry = await _reloader(request).reload(request.path_params["model"])
    body = {"name": entry.model.name, "version": entry.model.version}
    return Response(orjson.dumps(body), media_type="application/json")


async def unload(request: Request) -> Response:
    if not authorized(request):
        return denied()
    await _reloader(request).unload(request.path_params["model"])
    return Response(status_code=200)
