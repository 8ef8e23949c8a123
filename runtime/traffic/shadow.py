"""Shadow traffic: a copy of an endpoint's requests goes to a candidate model whose answers
are compared with the primary's and never returned.

The copy is made after the primary's answer has been handed to the transport, so the
client never waits for it. Each shadow holds at most `queue` copies in flight: past that,
or when the shadow model's own queue is full, a copy is dropped and counted
(`mlrt_shadow_dropped_total`), so a shadow model that is slow, hangs or fails costs the
primary a few list operations per request and nothing else. A shadow runs in its own
batcher (its own executor thread when it is not cheap enough to run inline), so a model
that sleeps never holds the primary's thread.

Per request, the primary pays a list append: the copies of one event-loop turn leave
together at its end, stacked into one request to the shadow's batcher, and come back as
one answer compared in one go (runtime/traffic/compare.py). Everything here runs on the
event loop's thread: the counts are plain integers, read by the Prometheus collector and
`GET /v2/endpoints/{name}`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import QueueFull
from ..metrics import LATENCY_BUCKETS, PlainHistogram
from ..models import Tensors, check_inputs
from .compare import ABS_DIFF_BUCKETS, compare
from .settings import count, share
from .throttle import Throttle

__all__ = ["DEFAULT_QUEUE", "Shadow"]


def _stack(parts: list[Tensors]) -> Tensors | None:
    """Several requests' tensors as one batch, or None where their shapes or names differ."""
    try:
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    except (KeyError, ValueError):
        return None

log = logging.getLogger("mlrt.traffic")

#: Copies one shadow may have in flight before the next is dropped. Enough for a shadow
#: as fast as the primary to keep up at a few hundred concurrent clients (copies leave in
#: batches), small enough that a hung shadow holds little memory.
DEFAULT_QUEUE = 256



class Shadow:
    """One shadow model of one endpoint, with what it was sent and how it compared."""

    def __init__(self, endpoint: str, model: str, sample: float = 1.0, queue: int = DEFAULT_QUEUE) -> None:
        where = f"endpoint {endpoint!r}, shadow {model!r}"
        share(where, "sample", sample)
        count(where, "queue", queue)
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
        # The endpoint's prediction log (set by the endpoint): shadow answers go there too,
        # under the primary's request id, so agreement can be recomputed from the log.
        self.log: Any = None
        # (inputs, primary outputs, their datatypes, request id): this turn's copies, not yet sent.
        self._queued: list[tuple[Tensors, Tensors, Mapping[str, str], str | None]] = []
        self._pending: list[tuple[Tensors, Tensors]] = []  # (primary, shadow) to compare
        self._failures = Throttle()

    def offer(
        self,
        inputs: Tensors,
        datatypes: Mapping[str, str],
        primary: Tensors,
        get: Callable[[str, str | None], Any],
        loop: asyncio.AbstractEventLoop,
        rid: str | None = None,
    ) -> None:
        """The primary has answered `inputs` (in `datatypes`) with `primary`: maybe queue a
        copy for the shadow model, which `get(name, None)` resolves. Copies queued in one
        event-loop turn leave together, as one request, at the end of the turn. `rid`: the
        request's id, for the prediction log."""
        if self.sample < 1.0 and random.random() >= self.sample:
            return
        if self.in_flight + len(self._queued) >= self.queue:
            self.dropped += 1
            return
        self._queued.append((inputs, primary, datatypes, rid))
        if len(self._queued) == 1:
            loop.call_soon(self._send, get, loop)

    def _send(self, get: Callable[[str, str | None], Any], loop: asyncio.AbstractEventLoop) -> None:
        copies, self._queued = self._queued, []
        try:
            entry = get(self.model, None)
        except Exception as exc:
            self._fail(exc, len(copies))
            return
        # Copies answered by the same primary model (the same datatypes object) can share
        # one request when their shapes allow; the rest go one by one.
        groups: dict[int, list[tuple[Tensors, Tensors, Mapping[str, str], str | None]]] = {}
        for c in copies:
            groups.setdefault(id(c[2]), []).append(c)
        for group in groups.values():
            stacked = _stack([c[0] for c in group]) if len(group) > 1 and entry.batchable else None
            if stacked is not None:
                self._submit(entry, stacked, group[0][2], [c[1] for c in group], [c[3] for c in group], loop)
            else:
                for inputs, primary, datatypes, rid in group:
                    self._submit(entry, inputs, datatypes, [primary], [rid], loop)

    def _submit(
        self,
        entry: Any,
        inputs: Tensors,
        datatypes: Mapping[str, str],
        primaries: list[Tensors],
        rids: list[str | None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        n = len(primaries)
        try:
            copy = check_inputs(entry.model, inputs, datatypes)
            timeout = entry.config.timeout_us / 1e6 if entry.config.timeout_us else None
            started = time.perf_counter()
            copies = (entry, primaries, rids, copy, started, loop)
            entry.batcher.submit(copy, timeout_s=timeout, on_done=self._answered, context=copies, loop=loop)
        except QueueFull:
            self.dropped += n
            return
        except Exception as exc:
            self._fail(exc, n)
            return
        # Held like a request: a version swapped out meanwhile finishes these copies first.
        entry.holders += 1
        self.in_flight += n
        self.sent += n

    def _answered(self, copies: tuple[Any, ...], outputs: Tensors | None, exc: BaseException | None) -> None:
        # copies: (entry, primaries, rids, inputs, started, loop), as _submit gave them.
        entry, primaries, rids, inputs, started, loop = copies
        n = len(primaries)
        entry.holders -= 1
        self.in_flight -= n
        if exc is not None:
            if not isinstance(exc, asyncio.CancelledError):
                self._fail(exc, n)
            return
        assert outputs is not None
        took = time.perf_counter() - started
        self.duration.observe(took, n)
        if self.log is not None:
            self._log(entry, rids, primaries, inputs, outputs, took)
        primary = primaries[0] if n == 1 else _stack(primaries)
        if primary is None:  # the primary's answers differ in shape: nothing to line up
            return
        self._pending.append((primary, outputs))
        if len(self._pending) == 1:
            loop.call_soon(self._compare)

    def _log(
        self,
        entry: Any,
        rids: list[str | None],
        primaries: list[Tensors],
        inputs: Tensors,
        outputs: Tensors,
        took: float,
    ) -> None:
        """The shadow's answer to each copy, logged under the copy's request id."""
        model = entry.model
        if len(rids) == 1:
            if rids[0] is not None:
                self.log.offer(rids[0], model.name, model.version, inputs, outputs, took, role="shadow")
            return
        ends = np.cumsum([len(next(iter(p.values()))) for p in primaries])[:-1]
        split_in = {k: np.split(v, ends) for k, v in inputs.items()}
        split_out = {k: np.split(v, ends) for k, v in outputs.items()}
        for i, rid in enumerate(rids):
            if rid is not None:
                part_in = {k: v[i] for k, v in split_in.items()}
                part_out = {k: v[i] for k, v in split_out.items()}
                self.log.offer(rid, model.name, model.version, part_in, part_out, took, role="shadow")

    def _compare(self) -> None:
        pairs, self._pending = self._pending, []
        try:
            c = compare(pairs)
        except Exception as exc:  # a comparison must never reach the serving path
            self._fail(exc, 0)
            return
        self.compared += c.compared
        self.agreed += c.agreed
        if c.diff_counts is not None:
            self.abs_diff.add(c.diff_counts.tolist(), c.diff_sum)

    def _fail(self, exc: BaseException, copies: int) -> None:
        self.failed += copies
        count = self._failures.due(copies)
        if count is not None:
            log.warning(
                "endpoint %s: shadow %s failed %d copies since the last report; the last: %s",
                self.endpoint, self.model, count, exc,
            )  # fmt: skip

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
