"""Map domain exceptions to HTTP responses with `{"error": ...}` bodies."""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..errors import (
    ConfigError,
    InvalidInput,
    MlrtError,
    ModelFailure,
    ModelLoadError,
    ModelNotFound,
    ModelNotReady,
    Overloaded,
    PayloadTooLarge,
)

log = logging.getLogger("mlrt.server")

STATUS: dict[type[MlrtError], int] = {
    InvalidInput: 400,
    ModelNotFound: 404,
    PayloadTooLarge: 413,
    ModelNotReady: 503,
    Overloaded: 503,
    ModelFailure: 500,
    ModelLoadError: 400,
    ConfigError: 400,
}


def status_of(exc: MlrtError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def mlrt_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MlrtError)
    status = status_of(exc)
    headers = None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(max(1, round(exc.retry_after_s)))}
    elif isinstance(exc, ModelNotReady):
        headers = {"Retry-After": "1"}
    if isinstance(exc, ModelFailure):
        log.error("%s", exc, exc_info=exc.cause)
    return error_response(status, str(exc), headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this handler, so the traceback reaches the log,
    # never the client.
    return error_response(500, "internal server error")


HANDLERS = {MlrtError: mlrt_error, HTTPException: http_error, Exception: internal_error}
