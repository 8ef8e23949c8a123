"""Shadow traffic: a copy of an endpoint's requests goes to a candidate model whose answers
are compared with the primary's and never returned.

The copy is made after the primary's answer has been handed to the transport, so the
client never waits for it. Each shadow holds at most `queue` copies in flight: past that,
or when the shadow model's own queue is full, a copy is dropped and counted
(`mlrt_shadow_dropped_total`), so a shadow model that is slow, hangs or fails costs the
primary a few list operations per request and nothing else. A shadow runs in its own
batcher (its own executor thread when it is not cheap enough to run inline), so a model
that sleeps never holds the primary's thread.

Comparisons (runtime/traffic/compare.py) are made once per event-loop turn for all the
copies answered in it. Everything here runs on the event loop's thread: the counts are
plain integers, read by the Prometheus collector and `GET /v2/endpoints/{name}`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError, QueueFull
from ..metrics import LATENCY_BUCKETS, PlainHistogram
from ..models import Tensors, check_inputs
from .compare import ABS_DIFF_BUCKETS, compare

__all__ = ["DEFAULT_QUEUE", "Shadow"]

log = logging.getLogger("mlrt.traffic")

#: Copies one shadow may have in flight before the next is dropped. Enough for a shadow
#: as fast as the primary to keep up at a few hundred concurrent clients (copies leave in
#: batches), small enough that a hung shadow holds little memory.
DEFAULT_QUEUE = 256

# A failing shadow is logged at most this often (with the count since the last line).
_LOG_EVERY_S = 60.0


class Shadow:
    """One shadow model of one endpoint, with what it was sent and how it compared."""

    def __init__(self, endpoint: str, model: str, sample: float = 1.0, queue: int = DEFAULT_QUEUE) -> None:
        where = f"endpoint {endpoint!r}, shadow {model!r}"
        if isinstance(sample, bool) or not isinstance(sample, (int, float)) or not 0.0 <= sample <= 1.0:
            raise ConfigError(f"{where}: sample must be a number from 0 to 1, got {sample!r}")
        if isinstance(queue, bool) or not isinstance(queue, int) or queue < 1:
            raise ConfigError(f"{where}: queue must be an integer >= 1, got {queue!r}")
        self.endpoint = endpoint
        self.model = model
        self.sample = float(sample)
        self.queue = queue
        self.sent = 0  # copies handed to the shadow model
        self.dropped = 0  # copies not sent: the queue was full
        self.failed = 0  # copies the shadow model failed (or could not take)
        self.in_flight = 0
        self.compared = 0  # rows compared for agreement (classifiers)
        self.agreed = 0
        self.abs_diff = PlainHistogram(ABS_DIFF_BUCKETS)
        self.duration = PlainHistogram(LATENCY_BUCKETS)  # seconds from copy to answer
        self._pending: list[tuple[Tensors, Tensors]] = []
        self._failures_unlogged = 0
        self._logged_at = -math.inf

    def offer(
        self,
        inputs: Tensors,
        datatypes: Mapping[str, str],
        primary: Tensors,
        get: Callable[[str, str | None], Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """The primary has answered `inputs` (in `datatypes`) with `primary`: maybe send a
        copy to the shadow model, which `get(name, None)` resolves."""
        if self.sample < 1.0 and random.random() >= self.sample:
            return
        if self.in_flight >= self.queue:
            self.dropped += 1
            return
        try:
            entry = get(self.model, None)
            copy = check_inputs(entry.model, inputs, datatypes)
            timeout = entry.config.timeout_us / 1e6 if entry.config.timeout_us else None
            started = time.perf_counter()
            done = functools.partial(self._answered, entry, primary, started, loop)
            entry.batcher.submit(copy, timeout_s=timeout, on_done=done, loop=loop)
        except QueueFull:
            self.dropped += 1
            return
        except Exception as exc:
            self._fail(exc)
            return
        # Held like a request: a version swapped out meanwhile finishes this copy first.
        entry.holders += 1
        self.in_flight += 1
        self.sent += 1

    def _answered(
        self,
        entry: Any,
        primary: Tensors,
        started: float,
        loop: asyncio.AbstractEventLoop,
        outputs: Tensors | None,
        exc: BaseException | None,
    ) -> None:
        entry.holders -= 1
        self.in_flight -= 1
        if exc is not None:
            if not isinstance(exc, asyncio.CancelledError):
                self._fail(exc)
            return
        assert outputs is not None
        self.duration.observe(time.perf_counter() - started)
        self._pending.append((primary, outputs))
        if len(self._pending) == 1:
            loop.call_soon(self._compare)

    def _compare(self) -> None:
        pairs, self._pending = self._pending, []
        try:
            c = compare(pairs)
        except Exception as exc:  # a comparison must never reach the serving path
            self._fail(exc)
            return
        self.compared += c.compared
        self.agreed += c.agreed
        if c.diff_counts is not None:
            self.abs_diff.add(c.diff_counts.tolist(), c.diff_sum)

    def _fail(self, exc: BaseException) -> None:
        self.failed += 1
        self._failures_unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= _LOG_EVERY_S:
            log.warning(
                "endpoint %s: shadow %s failed %d copies since the last report; the last: %s",
                self.endpoint, self.model, self._failures_unlogged, exc,
            )  # fmt: skip
            self._logged_at = now
            self._failures_unlogged = 0

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "sample": self.sample,
            "queue": self.queue,
            "sent": self.sent,
            "dropped": self.dropped,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "compared": self.compared,
            "agreed": self.agreed,
            "agreement": self.agreed / self.compared if self.compared else None,
        }
