"""What happened to the served models, newest last: swaps, failed loads, unloads, canary
rollbacks, drift status changes and hook firings with their outcome, for the dashboard's
timeline. Bounded: the oldest go."""

from __future__ import annotations

import collections
import time
from typing import Any

KEEP = 200


class Events:
    def __init__(self, keep: int = KEEP) -> None:
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)

    def add(self, kind: str, model: str, text: str) -> None:
        """kind: swap, load_failed, unload, rollback, drift, hook. Thread-safe (a deque
        append): hooks report from their own threads."""
        self._events.append({"time": time.time(), "kind": kind, "model": model, "text": text})

    def recent(self) -> list[dict[str, Any]]:
        return list(self._events)
