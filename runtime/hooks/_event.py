"""The drift event a hook receives, the `Hook` protocol and `HookSpec`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import MlrtError
from ..monitor.rule import STATUS_CODE

#: Model statuses in increasing severity; a hook fires when the status rises into one of its `on` statuses.
STATUS_RANK: Mapping[str, int] = STATUS_CODE
#: Statuses a hook may be configured to fire on.
FIRING_STATUSES = frozenset({"warn", "alert"})
#: Everything a hook's `on` may hold: the drift statuses, and "rollback" for a canary
#: that the traffic router took out (runtime/traffic/rollback.py).
FIRING_EVENTS = FIRING_STATUSES | {"rollback"}
#: Bumped when a field of DriftEvent.to_json() changes meaning or disappears.
EVENT_SCHEMA = 1


class HookError(MlrtError):
    """A hook ran and failed (HTTP error, non-zero exit, timeout...)."""


@dataclass(frozen=True)
class DriftEvent:
    """A model's drift status as the monitor evaluated it.

    `features` holds one mapping per monitored column, inputs and outputs alike:
    ``{"name": "age", "section": "features", "psi": 0.31, "js": 0.12, "p_value": 1e-9,
    "status": "alert", "rows": 5120}`` (non-finite numbers are None).
    (`section` is ``"outputs"`` for prediction drift).
    """

    model: str
    version: str
    status: str
    previous: str
    features: tuple[dict[str, Any], ...]
    window_s: float
    rows: int
    time: float

    @classmethod
    def from_report(
        cls,
        *,
        model: str,
        version: str,
        status: str,
        previous: str,
        report: Sequence[Any],
        window_s: float,
        rows: int,
        time: float,
    ) -> DriftEvent:
        """The event for one evaluation of a model's drift (`ModelMonitor.report()`'s
        FeatureDrift records); the server and `runtime.load` both build it here."""
        return cls(
            model=model,
            version=version,
            status=status,
            previous=previous,
            features=tuple(
                {
                    "name": d.name,
                    "section": d.section,
                    "psi": _plain(d.psi),
                    "js": _plain(d.js),
                    "p_value": _plain(d.p_value),
                    "status": d.status,
                    "rows": d.rows,
                }
                for d in report
            ),
            window_s=float(window_s),  # 600.0 as documented, even from a TOML integer
            rows=rows,
            time=time,
        )

    #: What `on` entry fires for this event: the status it rose into.
    @property
    def kind(self) -> str:
        return self.status

    def describe(self) -> str:
        """One line for the log: the transition and the drifting columns."""
        hot = self.drifting()
        columns = ", ".join(f"{f.get('name')} psi={_fmt(f.get('psi'))} ({f.get('status')})" for f in hot)
        return f"status {self.status} (was {self.previous}); drifting: {columns or 'none'}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (non-finite floats become null)."""
        return {
            "schema": EVENT_SCHEMA,
            "event": "drift",
            "model": self.model,
            "version": self.version,
            "status": self.status,
            "previous": self.previous,
            "features": [_plain(f) for f in self.features],
            "window_s": _plain(self.window_s),
            "rows": _plain(self.rows),
            "time": _plain(self.time),
        }

    def drifting(self) -> list[dict[str, Any]]:
        """The features whose own status is warn or alert, worst first."""
        hot = [f for f in self.features if f.get("status") in FIRING_STATUSES]
        return sorted(hot, key=lambda f: -STATUS_RANK.get(str(f.get("status")), 0))


@dataclass(frozen=True)
class RollbackEvent:
    """A canary variant of an endpoint that was rolled back (its weight set to 0) because it
    served worse than the endpoint's other variants; fires the hooks whose `on` holds
    "rollback"."""

    endpoint: str
    model: str
    version: str
    reason: str
    weight_was: float
    time: float

    kind = "rollback"

    def describe(self) -> str:
        return f"rolled back on endpoint {self.endpoint} (weight {self.weight_was:g} -> 0): {self.reason}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return {
            "schema": EVENT_SCHEMA,
            "event": "rollback",
            "endpoint": self.endpoint,
            "model": self.model,
            "version": self.version,
            "reason": self.reason,
            "weight_was": _plain(self.weight_was),
            "time": _plain(self.time),
        }


#: What a hook is called with.
Event = DriftEvent | RollbackEvent


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else str(value)


def _plain(value: Any) -> Any:
    """Turn a value into something json.dumps accepts without options: numpy scalars
    (anything with .item()) to Python numbers, tuples to lists, NaN/inf to None."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)
    if callable(item):
        return _plain(item())
    return str(value)


@runtime_checkable
class Hook(Protocol):
    """What the dispatcher calls. `__call__` runs on a hook thread, may block,
    and raises on failure; `name` identifies the hook in logs (no secrets in it)."""

    name: str

    def __call__(self, event: Event) -> None: ...


@dataclass(frozen=True)
class HookSpec:
    """A hook and when it fires: on entering one of the drift statuses in `on`, or on a
    canary rollback if `on` holds "rollback"; at most once per `cooldown_s` per
    (model, version) and kind of event."""

    hook: Hook
    on: frozenset[str] = field(default=frozenset({"alert"}))
    cooldown_s: float = 3600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "on", frozenset(self.on))
        bad = sorted(set(self.on) - FIRING_EVENTS)
        if bad or not self.on:
            raise ValueError(
                f"on must be a non-empty subset of {{'warn', 'alert', 'rollback'}}, got {set(self.on)}"
            )
        if not self.cooldown_s >= 0:
            raise ValueError(f"cooldown_s must be >= 0, got {self.cooldown_s}")
