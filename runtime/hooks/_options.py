"""Reading one [[hooks]] table: typed getters that raise ConfigError naming the option.

The messages name the option and the bad value, except for values that may be secret
(headers), which the caller never passes to `fail`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError


class Options:
    """The options of one hook table, consumed key by key; `finish()` rejects leftovers
    so that a typo (`timeout` for `timeout_s`) is an error, not a silent default."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self._table = dict(table)
        self._used: set[str] = set()

    def raw(self, key: str, default: Any = None) -> Any:
        self._used.add(key)
        return self._table.get(key, default)

    def has(self, key: str) -> bool:
        return key in self._table

    def text(self, key: str) -> str:
        value = self.raw(key)
        if value is None:
            raise ConfigError(f"missing required option '{key}'")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"'{key}' must be a non-empty string, got {value!r}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0.0, strict: bool = False) -> float:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"'{key}' must be a number, got {value!r}")
        if value < minimum or (strict and value == minimum):
            op = ">" if strict else ">="
            raise ConfigError(f"'{key}' must be {op} {minimum:g}, got {value!r}")
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"'{key}' must be an integer >= {minimum}, got {value!r}")
        return value

    def remaining(self) -> dict[str, Any]:
        """The options not consumed yet (handed to third-party factories)."""
        return {k: v for k, v in self._table.items() if k not in self._used}

    def finish(self) -> None:
        unknown = sorted(set(self._table) - self._used)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(repr(k) for k in unknown)}")
