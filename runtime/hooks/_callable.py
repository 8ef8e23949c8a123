"""`type = "callable"`: call a Python function in-process with the event."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .._imports import ImportTargetError, import_target
from ..errors import ConfigError
from ._event import DriftEvent
from ._options import Options


class CallableHook:
    """Calls `fn(event)` on a hook thread.

    Example (mlrt.toml)::

        [[hooks]]
        type = "callable"
        target = "mypkg.retrain:on_drift"     # or "mypkg.retrain:trainer.submit"
    """

    def __init__(self, fn: Callable[[DriftEvent], Any], name: str) -> None:
        if inspect.iscoroutinefunction(fn):
            raise ConfigError(f"{name}: async functions are not supported; hooks run on a thread, use a def")
        self._fn = fn
        self.name = name

    @classmethod
    def from_options(cls, options: Options) -> CallableHook:
        target = options.text("target")
        options.finish()
        return cls(load_target(target), name=f"callable:{target}")

    def __repr__(self) -> str:
        return f"CallableHook({self.name!r})"

    def __call__(self, event: DriftEvent) -> None:
        self._fn(event)


def load_target(target: str) -> Callable[..., Any]:
    """Import `module:function` or `module:obj.attr` and return the callable."""
    try:
        obj = import_target(target)
    except ImportTargetError as exc:
        if exc.kind == "format":
            raise ConfigError(f"target must look like 'package.module:function', got {target!r}") from None
        if exc.kind == "module":
            raise ConfigError(
                f"cannot import module {exc.module!r} of target {target!r}: {exc.cause}"
            ) from None
        raise ConfigError(f"target {target!r}: {exc.attribute!r} not found") from None
    if not callable(obj):
        raise ConfigError(f"target {target!r} is not callable (it is a {type(obj).__name__})")
    return obj  # type: ignore[no-any-return]
