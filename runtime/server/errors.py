"""The one mapping of exceptions to what a client is told, whatever the transport or
route: `failure(exc)` gives the status, message, Retry-After and rejection reason.
Transports render it: HTTP as a `{"error": ...}` body (http.py), gRPC as a status code
and details (grpc_server.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import (
    ConfigError,
    InvalidInput,
    MlrtError,
    ModelFailure,
    ModelLoadError,
    ModelNotFound,
    ModelNotReady,
    ModelTimeout,
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
    ModelTimeout: 504,
    ModelLoadError: 400,
    ConfigError: 400,
}


def status_of(exc: MlrtError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


@dataclass(frozen=True, slots=True)
class Failure:
    """What an exception means to a client, whatever the transport: an HTTP-style
    status, the message, Retry-After seconds for a request worth retrying, and the
    reason counted in `mlrt_rejected_total` for a request refused unrun."""

    status: int
    message: str
    retry_after_s: int | None = None
    reason: str | None = None


def failure(exc: BaseException) -> Failure:
    """The one mapping of exceptions to failures: every route and transport uses it.

    Anything that is not an MlrtError is a bug: a 500 without details (the traceback
    goes to the log, never to the client). A model's own failure is logged with its
    cause, since the client only sees the message.
    """
    if not isinstance(exc, MlrtError):
        log.error("internal error", exc_info=exc)
        return Failure(500, "internal server error")
    if isinstance(exc, ModelFailure):
        log.error("%s", exc, exc_info=exc.cause)
    if isinstance(exc, Overloaded | ModelNotReady):
        retry = max(1, round(getattr(exc, "retry_after_s", 1.0)))
        return Failure(status_of(exc), str(exc), retry, exc.reason)
    return Failure(status_of(exc), str(exc))
