"""Failures of background work (shadow copies, log writes) are reported at most once a
minute, with how many there were since the last report: a failing shadow or a full disk
must not flood the log at request rate."""

from __future__ import annotations

import math
import time

EVERY_S = 60.0


class Throttle:
    """Counts events; `due` says when to report them and how many."""

    def __init__(self, every_s: float = EVERY_S) -> None:
        self.every_s = every_s
        self._pending = 0
        self._reported_at = -math.inf

    def due(self, n: int) -> int | None:
        """Count `n` more; the count to report now (and reset), or None until a minute has passed."""
        self._pending += n
        now = time.monotonic()
        if now - self._reported_at < self.every_s:
            return None
        self._reported_at = now
        n, self._pending = self._pending, 0
        return n
