"""`type = "callable"`: call a Python function in-process with the event."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

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
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"target must look like 'package.module:function', got {target!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} of target {target!r}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"target {target!r}: {part!r} not found") from None
    if not callable(obj):
        raise ConfigError(f"target {target!r} is not callable (it is a {type(obj).__name__})")
    return obj  # type: ignore[no-any-return]
