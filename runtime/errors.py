"""Domain exceptions. They carry data, never HTTP status codes: the server maps
them to responses in runtime/server/errors.py."""

from __future__ import annotations

import reprlib
from collections.abc import Iterable
from typing import Any

# A client's value quoted in a refusal, cut short: a message (and the 400 that carries it)
# must not grow with what the request holds.
_QUOTE = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxlist, _QUOTE.maxtuple, _QUOTE.maxdict = 3, 6, 6, 4
_QUOTE.maxstring, _QUOTE.maxother, _QUOTE.maxlong = 60, 60, 40


class MlrtError(Exception):
    """Base class of every error mlrt raises on purpose."""


class InvalidInput(MlrtError):
    """A request's inputs do not fit the model: shape, datatype, size, encoding."""


def quoted(value: Any) -> str:
    """`value`'s repr for a message, at most a line long: long strings, bytes and lists
    are cut with '...' (reprlib)."""
    return _QUOTE.repr(value)


class ModelNotFound(MlrtError):
    """`served`, when given, names what is there instead (models, or the model's
    versions), so the message can say which names would work."""

    def __init__(
        self,
        name: str,
        version: str | None = None,
        message: str | None = None,
        *,
        served: Iterable[str] | None = None,
        endpoints: Iterable[str] = (),
    ) -> None:
        self.name = name
        self.version = version
        if message is not None:
            msg = message
        elif version is None:
            endpoints = list(endpoints)
            also = _listing("endpoints", endpoints) if endpoints else ""
            msg = f"unknown model '{name}'{_listing('models served', served)}{also}"
        else:
            msg = f"unknown version '{version}' of model '{name}'{_listing('versions served', served)}"
        super().__init__(msg)

    @classmethod
    def no_drift(cls, name: str) -> ModelNotFound:
        return cls(
            name,
            message=f"model '{name}' is served without a reference profile, so it has no drift "
            "report; serve it with --profile REF.json",
        )


def _listing(what: str, names: Iterable[str] | None, most: int = 10) -> str:
    """'; models served: a, b, c' (at most `most` names, then how many more)."""
    if names is None:
        return ""
    names = sorted(names)
    if not names:
        return f"; no {what.split()[0]} are served"
    shown = ", ".join(f"'{n}'" for n in names[:most])
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"; {what}: {shown}{more}"


class ModelNotReady(MlrtError):
    reason = "not_ready"

    def __init__(self, name: str, state: str = "not ready") -> None:
        self.name = name
        super().__init__(f"model '{name}' is {state}")


class PayloadTooLarge(MlrtError):
    def __init__(self, size: int, limit: int, encoding: str | None = None) -> None:
        self.size = size
        self.limit = limit
        if encoding is None:
            super().__init__(f"request body of {size} bytes exceeds the limit of {limit} bytes")
        else:  # decompression stops one byte past the limit: the whole size is not known
            super().__init__(
                f"request body decompressed ({encoding}) exceeds the limit of {limit} bytes"
            )


class Overloaded(MlrtError):
    """The server cannot take this request now; the client should retry later."""

    reason = "overloaded"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class QueueFull(Overloaded):
    reason = "queue_full"


class DeadlineExceeded(Overloaded):
    """The request's deadline passed before the model could run it."""

    reason = "deadline"

    def __init__(self, waited_s: float) -> None:
        super().__init__(f"request deadline passed after {waited_s * 1e3:.1f} ms in the queue")


class ModelTimeout(MlrtError):
    """The model was still running the request's batch when the request's deadline passed."""

    reason = "timeout"

    def __init__(self, model: str, waited_s: float) -> None:
        self.model = model
        super().__init__(
            f"model '{model}' did not answer within the request's deadline ({waited_s * 1e3:.0f} ms)"
        )


class ModelFailure(MlrtError):
    """The model itself raised while computing a batch."""

    def __init__(self, name: str, cause: BaseException) -> None:
        self.name = name
        self.cause = cause
        super().__init__(f"model '{name}' failed: {type(cause).__name__}: {cause}")


class ConfigError(MlrtError):
    """Invalid configuration, model spec or command-line value."""


class ModelLoadError(MlrtError):
    """A model file or object could not be loaded."""
