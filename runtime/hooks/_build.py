"""Turn the [[hooks]] tables of the config into HookSpecs.

Built-in types resolve through one table of import paths (so httpx loads only when a
webhook is configured); any other type names an entry point in the group `mlrt.hooks`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError
from ._event import FIRING_EVENTS, Hook, HookSpec
from ._options import Options

ENTRY_POINT_GROUP = "mlrt.hooks"
DEFAULT_ON = frozenset({"alert"})
DEFAULT_COOLDOWN_S = 3600.0

BUILTIN_HOOKS: Mapping[str, str] = {
    "callable": "runtime.hooks._callable:CallableHook",
    "webhook": "runtime.hooks._webhook:WebhookHook",
    "command": "runtime.hooks._command:CommandHook",
}


def build_hooks(configs: Sequence[Mapping[str, Any]]) -> list[HookSpec]:
    """Build one HookSpec per [[hooks]] table.

    Every table has `type` and may set `on` (default ``["alert"]``; any of "warn",
    "alert", "rollback") and `cooldown_s` (default 3600). Errors are ConfigErrors that name the table::

        specs = build_hooks([{"type": "command", "command": ["./retrain.sh"], "on": ["warn", "alert"]}])
        # -> [HookSpec(hook=CommandHook(['./retrain.sh'], timeout_s=60.0), on=..., cooldown_s=3600.0)]
    """
    specs = []
    for index, table in enumerate(configs, start=1):
        kind = table.get("type") if isinstance(table, Mapping) else None
        label = f"[[hooks]] #{index} (type {kind!r})"
        if not isinstance(table, Mapping):
            raise ConfigError(f"[[hooks]] #{index}: must be a table, got {type(table).__name__}")
        try:
            specs.append(_build_one(table))
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from exc.__cause__
    return specs


def _build_one(table: Mapping[str, Any]) -> HookSpec:
    options = Options(table)
    kind = options.raw("type")
    if not isinstance(kind, str) or not kind:
        raise ConfigError("missing required option 'type'")
    on = _parse_on(options.raw("on", sorted(DEFAULT_ON)))
    cooldown_s = options.number("cooldown_s", DEFAULT_COOLDOWN_S)
    if kind in BUILTIN_HOOKS:
        module_name, _, cls_name = BUILTIN_HOOKS[kind].partition(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        hook = cls.from_options(options)
    else:
        hook = _from_entry_point(kind, options.remaining())
    return HookSpec(hook=hook, on=on, cooldown_s=cooldown_s)


def _parse_on(value: Any) -> frozenset[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f'\'on\' must be a non-empty list of "warn"/"alert"/"rollback", got {value!r}')
    bad = [v for v in value if v not in FIRING_EVENTS]
    if bad:
        raise ConfigError(f'\'on\' may hold only "warn", "alert" and "rollback", got {bad!r}')
    return frozenset(value)


def _from_entry_point(kind: str, options: dict[str, Any]) -> Hook:
    found = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == kind]
    if not found:
        known = sorted(
            set(BUILTIN_HOOKS) | {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
        )
        raise ConfigError(
            f"unknown hook type; known types: {', '.join(known)} "
            f"(third-party types are entry points in the group {ENTRY_POINT_GROUP!r})"
        )
    ep = found[0]
    try:
        factory = ep.load()
    except Exception as exc:
        raise ConfigError(f"cannot load entry point {ep.value!r}: {type(exc).__name__}: {exc}") from exc
    try:
        hook = factory(options)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"factory {ep.value!r} failed: {type(exc).__name__}: {exc}") from exc
    if not callable(hook) or not isinstance(getattr(hook, "name", None), str):
        raise ConfigError(
            f"factory {ep.value!r} must return a Hook (callable with a str `name`), got {type(hook).__name__}"
        )
    return hook  # type: ignore[no-any-return]
