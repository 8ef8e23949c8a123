"""Targets for tests/unit/test_hooks.py: a callable hook, an entry-point factory and misfits."""

from __future__ import annotations

from typing import Any

RECEIVED: list[Any] = []


def on_drift(event: Any) -> None:
    RECEIVED.append(event)


class Trainer:
    def submit(self, event: Any) -> None:
        RECEIVED.append(("trainer", event))


trainer = Trainer()
not_callable = 42


async def async_hook(event: Any) -> None:  # rejected: hooks run on threads
    RECEIVED.append(event)


class RecordingPluginHook:
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.name = f"plugin:{options.get('channel', '?')}"

    def __call__(self, event: Any) -> None:
        RECEIVED.append((self.name, event))


def factory(options: dict[str, Any]) -> RecordingPluginHook:
    if "channel" not in options:
        raise ValueError("plugin needs a 'channel'")
    return RecordingPluginHook(options)


def bad_factory(options: dict[str, Any]) -> object:
    return object()
