"""Automatic canary rollback: a variant that declares `rollback = { ... }` is watched
against the endpoint's other variants, and when over the last `window_s` seconds its
server-error rate or its p99 latency exceeds theirs by the given factor, its weight drops
to 0: no new request goes to it, the change is logged at WARNING and shown in
`GET /v2/endpoints/{name}` (`rollbacks`) and `mlrt_endpoint_rollbacks_total`.

The figures are the per-model serving metrics (the same counts and latency histogram that
/metrics exports), read once a second and differenced over the window, so the request path
pays nothing for the watch. Errors are answers with status >= 500: a client's bad request
(4xx) says nothing about the model. A p99 is the upper bound of the histogram bucket that
holds it, coarse (buckets double), so the latency factor should be 2 or more.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..metrics import LATENCY_BUCKETS
from .settings import count, positive, share

__all__ = ["Rollback", "RollbackRule"]

log = logging.getLogger("mlrt.traffic")


@dataclass(slots=True)
class _Snap:
    t: float
    source: int  # id() of the metrics object: a new version starts a new history
    requests: int
    errors: int
    buckets: list[int]


@dataclass(slots=True)
class _Window:
    requests: int = 0
    errors: int = 0
    buckets: list[int] | None = None

    def add(self, newer: _Snap, older: _Snap) -> None:
        self.requests += newer.requests - older.requests
        self.errors += newer.errors - older.errors
        diff = [a - b for a, b in zip(newer.buckets, older.buckets, strict=True)]
        self.buckets = (
            diff if self.buckets is None else [a + b for a, b in zip(self.buckets, diff, strict=True)]
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def p99(self) -> float | None:
        if not self.requests or self.buckets is None:
            return None
        need, running = 0.99 * sum(self.buckets), 0
        for bound, n in zip((*LATENCY_BUCKETS, math.inf), self.buckets, strict=True):
            running += n
            if running >= need:
                return bound
        return math.inf


def _snap(metrics: Any, now: float) -> _Snap:
    codes = dict(metrics.codes)
    return _Snap(
        now,
        id(metrics),
        sum(codes.values()),
        sum(n for code, n in codes.items() if code >= 500),
        list(metrics.request.counts),
    )


@dataclass(frozen=True, kw_only=True)
class RollbackRule:
    """When a canary is rolled back: the `rollback = { ... }` table of its variant."""

    error_ratio: float = 2.0
    p99_ratio: float = 3.0
    window_s: float = 60.0
    min_requests: int = 20
    min_error_rate: float = 0.01

    def checked(self, where: str) -> RollbackRule:
        for key in ("error_ratio", "p99_ratio", "window_s"):
            positive(where, key, getattr(self, key))
        count(where, "min_requests", self.min_requests)
        share(where, "min_error_rate", self.min_error_rate)
        return self


class Rollback:
    """One canary variant's rollback rule and what it saw."""

    def __init__(self, endpoint: str, model: str, rule: RollbackRule | None = None) -> None:
        where = f"endpoint {endpoint!r}, variant {model!r}, rollback"
        self.endpoint = endpoint
        self.model = model
        self.rule = (rule or RollbackRule()).checked(where)
        self.rolled_back: dict[str, Any] | None = None  # when and why, once it happened
        self.count = 0  # rollbacks since start
        self._history: dict[str, deque[_Snap]] = {}

    def _window(self, model: str, metrics: Any, now: float) -> _Window:
        """What `model` served over the window, from the snapshots taken once a tick."""
        history = self._history.setdefault(model, deque())
        snap = _snap(metrics, now)
        if history and history[-1].source != snap.source:
            history.clear()  # another version now: its counts start afresh
        history.append(snap)
        while len(history) > 2 and history[1].t <= now - self.rule.window_s:
            history.popleft()
        w = _Window()
        if len(history) > 1:
            w.add(history[-1], history[0])
        return w

    def check(self, endpoint: Any, metrics_of: Callable[[str], Any], now: float | None = None) -> str | None:
        """Compare the canary with the endpoint's other variants that have a weight; roll it
        back (weight 0) and return why, when it is worse by a factor."""
        now = time.monotonic() if now is None else now
        others = _Window()
        canary = None
        for v in endpoint.variants:
            metrics = metrics_of(v.model)
            if metrics is None:
                continue
            w = self._window(v.model, metrics, now)
            if v.model == self.model:
                canary = (v, w)
            elif v.weight > 0 and w.buckets is not None:
                others.requests += w.requests
                others.errors += w.errors
                others.buckets = (
                    w.buckets
                    if others.buckets is None
                    else [a + b for a, b in zip(others.buckets, w.buckets, strict=True)]
                )
        if canary is None or canary[0].weight <= 0 or canary[1].requests < self.rule.min_requests:
            return None
        w = canary[1]
        reason = None
        rate, base = w.error_rate, others.error_rate
        if rate >= self.rule.min_error_rate and rate > self.rule.error_ratio * base:
            reason = (
                f"error rate {rate:.1%} over the last {self.rule.window_s:g} s ({w.errors} of {w.requests}), "
                f"the other variants {base:.1%}: more than {self.rule.error_ratio:g}x"
            )
        elif others.requests >= self.rule.min_requests:
            p99, base_p99 = w.p99(), others.p99()
            if p99 is not None and base_p99 is not None and p99 > self.rule.p99_ratio * base_p99:
                reason = (
                    f"p99 latency {p99 * 1e3:g} ms over the last {self.rule.window_s:g} s, the other "
                    f"variants {base_p99 * 1e3:g} ms: more than {self.rule.p99_ratio:g}x"
                )
        if reason is None:
            return None
        was = canary[0].weight
        endpoint.set_weights({self.model: 0})
        self.count += 1
        self.rolled_back = {"time": time.time(), "weight_was": was, "reason": reason}
        log.warning(
            "endpoint %s: canary %s rolled back (weight %g -> 0): %s", self.endpoint, self.model, was, reason
        )
        return reason

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            **dataclasses.asdict(self.rule),
            "rollbacks": self.count,
            "last": self.rolled_back,
        }
