"""The checks every traffic setting shares (shadows, logs, feedback, rollbacks): one
wording for one mistake, raised at load rather than at the first request."""

from __future__ import annotations

from ..errors import ConfigError


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive(where: str, key: str, value: object) -> float:
    """A number > 0 (a duration, a ratio, a size)."""
    if not _number(value) or not value > 0:  # type: ignore[operator]
        raise ConfigError(f"{where}: {key} must be a number > 0, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def share(where: str, key: str, value: object) -> float:
    """A number from 0 to 1 (a sample, a rate)."""
    if not _number(value) or not 0.0 <= value <= 1.0:  # type: ignore[operator]
        raise ConfigError(f"{where}: {key} must be a number from 0 to 1, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def count(where: str, key: str, value: object) -> int:
    """An integer >= 1 (a queue, a window of rows)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{where}: {key} must be an integer >= 1, got {value!r}")
    return value
