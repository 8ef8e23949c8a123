"""Retraining and notification hooks fired by the drift monitor and by canary rollbacks.

    specs = build_hooks(config.hooks)          # the [[hooks]] tables
    dispatcher = HookDispatcher(specs)
    dispatcher.observe(event)                   # on every status evaluation
    dispatcher.notify(rollback)                 # when a canary is rolled back

See docs/hooks.md for the event schema, the hook types and the firing rules.
"""

from __future__ import annotations

from ._build import BUILTIN_HOOKS, ENTRY_POINT_GROUP, build_hooks
from ._callable import CallableHook
from ._command import CommandHook
from ._dispatch import HookDispatcher
from ._event import EVENT_SCHEMA, STATUS_RANK, DriftEvent, Event, Hook, HookError, HookSpec, RollbackEvent

__all__ = [
    "BUILTIN_HOOKS",
    "CallableHook",
    "CommandHook",
    "DriftEvent",
    "ENTRY_POINT_GROUP",
    "Event",
    "EVENT_SCHEMA",
    "Hook",
    "HookDispatcher",
    "HookError",
    "HookSpec",
    "RollbackEvent",
    "STATUS_RANK",
    "build_hooks",
]


def __getattr__(name: str) -> object:
    # WebhookHook imports httpx; load it only when asked for.
    if name == "WebhookHook":
        from ._webhook import WebhookHook

        return WebhookHook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
