"""The dynamic batcher: one per loaded model version.

Rules (Triton's, counted in rows rather than requests):
- When an instance is idle, whatever is queued is dispatched at once: a lone
  request never waits for company (max_queue_delay_us defaults to 0).
- While every instance is busy, requests pile up and leave together as one batch
  of at most max_batch_size rows. A request larger than that is split into
  chunks that are batched like any other and reassembled in order.
- Requests whose non-batch dimensions or dtypes differ are never merged.
- A cancelled request is dropped before its batch runs; a request whose deadline
  passes while queued is answered without running the model.

Where the model runs: a thread hop (submit, wake-up, call_soon_threadsafe back)
costs tens of microseconds, more than a small tabular model's whole batch (see
bench/README.md). So at load the batcher times the model at one row and at
max_batch_size rows, and runs a batch inline on the event loop when its predicted
cost is below `inline_max_us`; everything else runs on one executor thread per
instance (onnxruntime releases the GIL there). Only code whose cost is bounded runs
inline by default: an ONNX graph. A Python model's cost is whatever its code does (a
lock, a network call, one pathological row), and on the loop it would stall every
model and the health routes, so by default it always runs on its threads.

A deadline covers the whole request. Queued, it is answered 503 (overloaded, retry)
without running; running, it is answered 504 when the deadline passes, whatever the
model is doing. A call that outlives every request in its batch is left to finish on
its thread (Python cannot stop a thread) and counted as stuck; a spare thread takes its
place, up to as many spares as instances, so a model hung on one input keeps serving
the others. While every thread is stuck the model is not ready.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import ModelConfig
from .errors import DeadlineExceeded, InvalidInput, ModelFailure, ModelNotReady, ModelTimeout, QueueFull
from .models import Model, Tensors, batchable, check_outputs

log = logging.getLogger("mlrt.batching")

# Inline batches run back to back on the event loop up to about this much predicted
# compute per loop turn, then I/O gets its turn.
INLINE_TURN_US = 100.0
#: inline_max_us where the config leaves it unset, by model platform: an ONNX graph's cost
#: is bounded by its shapes; anything else (Python code) never runs on the loop.
INLINE_DEFAULT_US = {"onnxruntime_onnx": 40.0}


class _Run:
    """A batch running on an executor thread."""

    __slots__ = ("batch", "rows", "timer", "stuck")

    def __init__(self, batch: list[_Queued], rows: int) -> None:
        self.batch = batch
        self.rows = rows
        self.timer: asyncio.TimerHandle | None = None
        self.stuck = False


@dataclass(slots=True)
class BatchStats:
    """What one executed batch reports to whoever observes the batcher."""

    rows: int
    requests: int
    queue_s: list[float]
    compute_s: float
    failed: bool


class _Split(list):  # type: ignore[type-arg]
    """The answers of a batch whose call failed, each request run by itself: its outputs,
    or the ModelFailure that is its answer (Batcher._compute)."""


class _Queued:
    """What the batcher keeps of a queued request (or chunk of one), and where its
    outcome goes: done, set_result and set_exception as an asyncio.Future has them."""

    __slots__ = ("inputs", "rows", "key", "enqueued", "deadline")

    inputs: Tensors
    rows: int
    key: tuple[object, ...]
    enqueued: float
    deadline: float | None

    def done(self) -> bool:
        raise NotImplementedError

    def set_result(self, result: Tensors) -> None:
        raise NotImplementedError

    def set_exception(self, exc: BaseException) -> None:
        raise NotImplementedError


class _Pending(_Queued):
    """A queued request whose outcome goes to an asyncio.Future (Batcher.infer, and each
    chunk of a request split in chunks)."""

    __slots__ = ("future",)

    def __init__(
        self,
        inputs: Tensors,
        rows: int,
        key: tuple[object, ...],
        future: asyncio.Future[Tensors],
        deadline: float | None,
    ) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.future = future
        self.enqueued = time.monotonic()
        self.deadline = deadline

    def done(self) -> bool:
        return self.future.done()

    def set_result(self, result: Tensors) -> None:
        self.future.set_result(result)

    def set_exception(self, exc: BaseException) -> None:
        self.future.set_exception(exc)


def _batch_key(inputs: Tensors) -> tuple[object, ...]:
    if len(inputs) == 1:  # the common model: one input, and no list or tuple built for it
        for name, a in inputs.items():
            return (name, a.dtype, a.shape[1:])
    return tuple([(name, a.dtype, a.shape[1:]) for name, a in inputs.items()])


def split_rows(inputs: Tensors, size: int) -> list[Tensors]:
    """Cut a request into chunks of at most `size` rows (views, no copies)."""
    rows = next(iter(inputs.values())).shape[0]
    return [{k: v[i : i + size] for k, v in inputs.items()} for i in range(0, rows, size)]


def stack_inputs(parts: list[Tensors]) -> Tensors:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def split_outputs(outputs: Tensors, sizes: list[int]) -> list[Tensors]:
    if len(sizes) == 1:
        return [outputs]
    total = sum(sizes)
    for name, arr in outputs.items():
        if arr.ndim == 0 or arr.shape[0] != total:
            raise ValueError(
                f"output '{name}' has shape {list(arr.shape)}; expected {total} rows, one per input row"
            )
    out, start = [], 0
    if len(outputs) == 1:  # the common model: one output, sliced without a comprehension
        for name, arr in outputs.items():
            for n in sizes:
                out.append({name: arr[start : start + n]})
                start += n
        return out
    for n in sizes:
        out.append({k: v[start : start + n] for k, v in outputs.items()})
        start += n
    return out


#: on_done(context, outputs, exception): `context` is what the caller gave with it, so a
#: caller can pass one callback made once rather than a closure made per request.
Done = Callable[[Any, Tensors | None, BaseException | None], None]


class Ticket(_Queued):
    """A queued request whose outcome is handed to a callback the moment the batcher has it.

    Stands in for an asyncio.Future when the caller answers from a callback (the
    server's direct path): a future runs its callbacks a loop turn later, after all
    pending I/O (tens of milliseconds under overload), and schedules a handle per
    request. It is its own queue entry: one object per request.
    Cancelling calls back with CancelledError.
    """

    __slots__ = ("_on_done", "_context", "_done")

    def __init__(
        self,
        inputs: Tensors,
        rows: int,
        key: tuple[object, ...],
        deadline: float | None,
        on_done: Done,
        context: Any,
    ) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.enqueued = time.monotonic()
        self.deadline = deadline
        self._on_done = on_done
        self._context = context
        self._done = False

    def done(self) -> bool:
        return self._done

    def cancel(self) -> bool:
        if self._done:
            return False
        self._finish(None, asyncio.CancelledError())
        return True

    def set_exception(self, exc: BaseException) -> None:
        self._finish(None, exc)

    def _finish(self, result: Tensors | None, exc: BaseException | None = None) -> None:
        if self._done:
            raise asyncio.InvalidStateError("ticket already done")
        self._done = True
        try:
            self._on_done(self._context, result, exc)
        except Exception:  # the batcher must go on with the rest of the batch
            log.exception("a request's completion callback failed")

    # The one call per answered request: _finish itself, not a method that calls it.
    set_result = _finish


def _bridge(fut: asyncio.Future[Tensors], on_done: Done, context: Any) -> None:
    """Hand a (joined) future's outcome to an on_done callback."""

    def done(f: asyncio.Future[Tensors]) -> None:
        if f.cancelled():
            on_done(context, None, asyncio.CancelledError())
        elif f.exception() is not None:
            on_done(context, None, f.exception())
        else:
            on_done(context, f.result(), None)

    fut.add_done_callback(done)


def _joined(loop: asyncio.AbstractEventLoop, parts: list[asyncio.Future[Tensors]]) -> asyncio.Future[Tensors]:
    """One future for a request split into chunks: their outputs concatenated in order.

    The first failure fails the whole request and withdraws the chunks still queued;
    cancelling the joined future withdraws them all.
    """
    joined: asyncio.Future[Tensors] = loop.create_future()
    left = [len(parts)]

    def part_done(part: asyncio.Future[Tensors]) -> None:
        if joined.done():
            return
        if part.cancelled():
            joined.cancel()
            return
        exc = part.exception()
        if exc is not None:
            joined.set_exception(exc)
            return
        left[0] -= 1
        if not left[0]:
            results = [p.result() for p in parts]
            joined.set_result({k: np.concatenate([r[k] for r in results]) for k in results[0]})

    def joined_done(_: asyncio.Future[Tensors]) -> None:
        for p in parts:
            p.cancel()

    for p in parts:
        p.add_done_callback(part_done)
    joined.add_done_callback(joined_done)
    return joined


class Batcher:
    """Queue, batch and run requests for one model version.

    Usage (inside a running event loop)::

        batcher = Batcher(model, config)
        outputs = await batcher.infer({"input": x})
        await batcher.close()
    """

    def __init__(
        self,
        model: Model,
        config: ModelConfig,
        *,
        on_batch: Callable[[BatchStats], None] | None = None,
        observer: Callable[[Tensors, Tensors], None] | None = None,
    ) -> None:
        self.model = model
        self._observer = observer
        self._observer_failures = 0
        self.config = config
        self.max_batch_size = config.max_batch_size
        self.max_queue_rows = config.max_queue_rows
        self.delay_s = config.max_queue_delay_us / 1e6
        self.preferred = sorted(config.preferred_batch_sizes)
        self.batchable = batchable(model)
        self._on_batch = on_batch
        self._expected = frozenset(o.name for o in model.outputs)
        self._queue: collections.deque[_Queued] = collections.deque()
        self._queued_rows = 0
        self._busy = 0
        self._instances = config.instances
        # One thread per instance and as many spares, to stand in for calls stuck past
        # every deadline in their batch (`_overran`).
        self._threads = 2 * config.instances
        self._stuck = 0
        self.answering = 0  # requests of the batch being answered now (in _resolve)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._threads, thread_name_prefix=f"mlrt-{config.name}"
        )
        self._dispatch_scheduled = False
        self._delay_timer: asyncio.TimerHandle | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._expiry_at = 0.0
        self._closing = False
        self._idle: asyncio.Event | None = None
        # Predicted compute cost: fixed_us + per_row_us * rows (set by calibrate()).
        self.fixed_us = float("inf")
        self.per_row_us = float("inf")
        self.inline_max_us = (
            config.inline_max_us
            if config.inline_max_us is not None
            else INLINE_DEFAULT_US.get(model.platform, 0.0)
        )

    # -- calibration ---------------------------------------------------------

    def calibrate(self, sample: Tensors, repeats: int = 20) -> None:
        """Time the model (and the drift observer) on one row and on a full batch; this
        is also the warm-up. Runs on the caller's thread before serving starts; the
        caller resets whatever the observer counted.
        """

        def best(inputs: Tensors) -> float:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                outputs = self.model.predict(inputs)
                if self._observer is not None:  # counting is part of a batch's cost
                    self._observer(inputs, outputs)
                times.append(time.perf_counter() - t0)
            return float(np.median(times)) * 1e6

        one = {k: v[:1] for k, v in sample.items()}
        t1 = best(one)
        n = self.max_batch_size if self.batchable else 1
        if n > 1:
            big = {k: np.repeat(v[:1], n, axis=0) for k, v in sample.items()}
            tn = best(big)
            self.per_row_us = max(0.0, (tn - t1) / (n - 1))
        else:
            self.per_row_us = 0.0
        self.fixed_us = max(0.0, t1 - self.per_row_us)

    def predicted_us(self, rows: int) -> float:
        return self.fixed_us + self.per_row_us * rows

    # -- submission ----------------------------------------------------------

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def stuck_calls(self) -> int:
        """Model calls still running after every request in their batch was answered."""
        return self._stuck

    @property
    def observer_failures(self) -> int:
        """Batches the observer (the drift monitor) raised on: answered, not counted."""
        return self._observer_failures

    @property
    def healthy(self) -> bool:
        """False while every thread is stuck in a call: nothing could run a request."""
        return self._stuck < self._threads

    async def infer(
        self, inputs: Tensors, *, timeout_s: float | None = None, alone: bool = False
    ) -> Tensors:
        """Run `inputs` (all with the same number of rows) through the model.

        `alone` says the caller knows no other request is in flight: an idle model
        whose batch is cheap enough to run inline then runs it at once, without
        waiting a loop turn for company that cannot come.
        """
        result = self.submit(inputs, timeout_s=timeout_s, alone=alone)
        if isinstance(result, dict):
            return result
        return await result  # a cancelled caller cancels the future, which drops the request

    def submit(
        self,
        inputs: Tensors,
        *,
        timeout_s: float | None = None,
        alone: bool = False,
        on_done: Done | None = None,
        context: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Tensors | asyncio.Future[Tensors] | Ticket:
        """infer() without a coroutine, for callers that handle requests in callbacks.

        Returns the outputs when the model ran at once. Otherwise returns a handle whose
        cancel() withdraws the request (all of its chunks): with `on_done`, which then
        gets (context, outputs, None) or (context, None, exception) as soon as the batch
        is done, a Ticket or future; without, a future for the outputs. `loop` is the
        running loop, where the caller has it at hand (finding it costs a system call per
        request on Python 3.11).
        """
        if self._closing:
            raise ModelNotReady(self.model.name, "shutting down")
        rows = next(iter(inputs.values())).shape[0] if self.batchable else 1
        loop = loop or asyncio.get_running_loop()
        if (
            alone
            and not self._queue
            and self._busy == 0
            and rows <= self.max_batch_size
            and self.delay_s <= 0
            and self.predicted_us(rows) <= self.inline_max_us
        ):
            return self._run_now(inputs, rows, loop)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        # A request larger than the whole bound is taken when the queue is empty, or it
        # could never run.
        if self.max_queue_rows and self._queued_rows + rows > self.max_queue_rows and self._queued_rows:
            self._refuse()
        key = _batch_key(inputs) if self.batchable else ()
        split = self.batchable and rows > self.max_batch_size
        if on_done is not None and not split:
            ticket = Ticket(inputs, rows, key, deadline, on_done, context)
            self._queue.append(ticket)
            self._queued_rows += rows
            if deadline is not None:
                self._arm_expiry(loop, deadline)
            self._enqueued(loop)
            return ticket
        chunks = split_rows(inputs, self.max_batch_size) if split else [inputs]
        futures: list[asyncio.Future[Tensors]] = []
        for chunk in chunks:
            fut: asyncio.Future[Tensors] = loop.create_future()
            n = next(iter(chunk.values())).shape[0] if self.batchable else 1
            self._queue.append(_Pending(chunk, n, key, fut, deadline))
            self._queued_rows += n
            futures.append(fut)
        if deadline is not None:
            self._arm_expiry(loop, deadline)
        self._enqueued(loop)
        result = futures[0] if len(futures) == 1 else _joined(loop, futures)
        if on_done is not None:
            _bridge(result, on_done, context)
        return result

    def check_room(self) -> None:
        """Refuse at once when the queue is full: no request could join it now, so the
        caller need not decode one first."""
        if self.max_queue_rows and self._queued_rows >= self.max_queue_rows:
            self._refuse()

    def _refuse(self) -> None:
        raise QueueFull(
            f"model '{self.model.name}' queue is full ({self._queued_rows} rows queued, "
            f"limit {self.max_queue_rows})"
        )

    # -- dispatch ------------------------------------------------------------

    def _enqueued(self, loop: asyncio.AbstractEventLoop) -> None:
        """A request joined the queue: dispatch now if a full batch waits for an idle
        instance, else once this loop turn's I/O is done.

        The "now" matters under load: uvloop reads from busy sockets for many rounds
        (up to 48 x 1024 events) before it runs scheduled callbacks, and a batcher that
        only dispatched from a callback would let its queue expire meanwhile.
        """
        if self._queued_rows >= self.max_batch_size and self._busy < self._instances:
            self._dispatch_now()
        if self._queue:
            self._schedule_dispatch(loop)

    def _schedule_dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        # Deferred by one loop turn, so every request parsed in this turn joins the batch.
        if not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            loop.call_soon(self._dispatch)

    def _arm_expiry(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """One timer, for the earliest deadline in the queue."""
        if self._expiry_timer is not None:
            if self._expiry_at <= deadline:
                return
            self._expiry_timer.cancel()
        self._expiry_at = deadline
        self._expiry_timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._expire)

    def _expire(self) -> None:
        # uvloop's timers run on a cached millisecond clock and may fire a little early:
        # whatever is not due yet gets the timer again.
        self._expiry_timer = None
        now = time.monotonic()
        upcoming = None
        for p in self._queue:
            if p.deadline is None or p.done():
                continue
            if p.deadline <= now:
                p.set_exception(DeadlineExceeded(now - p.enqueued))
            elif upcoming is None or p.deadline < upcoming:
                upcoming = p.deadline
        self._drop_done_head()
        if upcoming is not None:
            self._arm_expiry(asyncio.get_running_loop(), upcoming)

    def _expire_head(self) -> None:
        """Answer requests at the head of the queue whose deadline has passed."""
        now = 0.0
        for p in self._queue:
            if p.done():
                continue
            if p.deadline is None:
                return
            now = now or time.monotonic()
            if p.deadline > now:
                return
            p.set_exception(DeadlineExceeded(now - p.enqueued))

    def _drop_done_head(self) -> None:
        q = self._queue
        while q and q[0].done():
            self._queued_rows -= q.popleft().rows
        if not q and self._busy == 0 and self._idle is not None:
            self._idle.set()

    def _take_batch(self) -> tuple[list[_Queued], int]:
        """The next batch and its rows (counted once here, not again per stage)."""
        self._expire_head()
        self._drop_done_head()
        q = self._queue
        if not q:
            return [], 0
        limit = self.max_batch_size
        if self.preferred:
            # Triton's rule: when a preferred size can be filled, send exactly that many rows.
            fits = [n for n in self.preferred if n <= self._queued_rows]
            if fits:
                limit = fits[-1]
        first = q.popleft()
        self._queued_rows -= first.rows
        batch, rows = [first], first.rows
        if not self.batchable:
            return batch, rows
        now = time.monotonic()
        while q:
            p = q[0]
            if not p.done() and p.deadline is not None and p.deadline <= now:
                p.set_exception(DeadlineExceeded(now - p.enqueued))
            if p.done():
                q.popleft()
                self._queued_rows -= p.rows
                continue
            if p.key != first.key or rows + p.rows > limit:
                break
            q.popleft()
            self._queued_rows -= p.rows
            batch.append(p)
            rows += p.rows
        return batch, rows

    def _should_wait(self, loop: asyncio.AbstractEventLoop) -> bool:
        """With a queue delay, hold a partial batch until it fills or the oldest is old enough."""
        if self.delay_s <= 0 or not self._queue:
            return False
        target = self.preferred[0] if self.preferred else self.max_batch_size
        if self._queued_rows >= target:
            return False
        age = time.monotonic() - self._queue[0].enqueued
        if age >= self.delay_s:
            return False
        if self._delay_timer is None:
            self._delay_timer = loop.call_later(self.delay_s - age, self._delay_elapsed)
        return True

    def _delay_elapsed(self) -> None:
        self._delay_timer = None
        self._schedule_dispatch(asyncio.get_running_loop())

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        self._dispatch_now()

    def _dispatch_now(self) -> None:
        loop = asyncio.get_running_loop()
        inline_us = 0.0
        while self._busy < min(self._instances, self._threads - self._stuck):
            self._drop_done_head()
            if not self._queue or self._should_wait(loop):
                return
            batch, rows = self._take_batch()
            if not batch:
                return
            cost = self.predicted_us(rows)
            if cost <= self.inline_max_us:
                self._run_inline(batch, rows, loop)
                inline_us += cost
                if self._queue and inline_us + cost > INLINE_TURN_US:
                    # Enough inline work for one loop turn: let I/O in between.
                    self._schedule_dispatch(loop)
                    return
                continue
            self._busy += 1
            started = time.monotonic()
            run = _Run(batch, rows)
            fut = loop.run_in_executor(self._executor, self._compute, batch, rows)
            fut.add_done_callback(lambda f, r=run, t=started: self._finished(r, t, f))
            deadline = min((p.deadline for p in batch if p.deadline is not None), default=None)
            if deadline is not None:
                run.timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._overran, run)

    def _overran(self, run: _Run) -> None:
        """A running batch reached a request's deadline: answer it 504 now. Once nobody
        waits on the call, its thread is stuck: a spare takes its place."""
        run.timer = None
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        upcoming = None
        for p in run.batch:
            if p.done() or p.deadline is None:
                continue
            if p.deadline <= now:
                p.set_exception(ModelTimeout(self.model.name, now - p.enqueued))
            elif upcoming is None or p.deadline < upcoming:
                upcoming = p.deadline
        if upcoming is not None:  # uvloop's timers may fire a little early
            run.timer = loop.call_later(max(0.0, upcoming - now), self._overran, run)
            return
        if run.stuck or not all(p.done() for p in run.batch):
            return
        run.stuck = True
        self._busy -= 1
        self._stuck += 1
        log.warning(
            "model '%s': a call is still running past its requests' deadline; it is left to finish "
            "and a spare thread serves meanwhile (%d of %d threads stuck)",
            self.model.name, self._stuck, self._threads,
        )  # fmt: skip
        if self._queue:
            self._schedule_dispatch(loop)

    def _predict(self, inputs: Tensors) -> Tensors:
        try:
            return self.model.predict(inputs)
        except Exception as exc:
            raise ModelFailure(self.model.name, exc) from exc

    def _check(self, outputs: Tensors, rows: int) -> Tensors:
        return check_outputs(self.model, outputs, self._expected, rows if self.batchable else None)

    def _observe_soon(self, inputs: Tensors, outputs: Tensors, loop: asyncio.AbstractEventLoop) -> None:
        # An inline batch's counting waits for the next loop turn: by then its responses
        # are written, so monitoring adds nothing to their latency (it still costs CPU).
        loop.call_soon(self._observe, inputs, outputs)

    def _observe(self, inputs: Tensors, outputs: Tensors) -> None:
        # Runs on the batch's executor thread, or on the loop right after an inline batch.
        # Monitoring must never fail a prediction.
        try:
            self._observer(inputs, outputs)  # type: ignore[misc]
        except Exception:
            self._observer_failures += 1
            if self._observer_failures in (1, 10, 100, 1000) or self._observer_failures % 10000 == 0:
                log.exception(
                    "model '%s': drift observation failed (%d times so far)",
                    self.model.name,
                    self._observer_failures,
                )

    def _compute(
        self, batch: list[_Queued], rows: int, loop: asyncio.AbstractEventLoop | None = None
    ) -> list[Tensors | ModelFailure]:
        """Each request's outputs, or the ModelFailure that is its answer."""
        # `loop`: the running loop, when the batch runs inline on it; None on an executor thread.
        inputs = stack_inputs([p.inputs for p in batch])
        try:
            outputs = self._check(self._predict(inputs), rows)
        except ModelFailure:
            if len(batch) == 1:
                raise
            # A model that raises on one request's rows (a Python model refusing a value) fails
            # the whole call: each request is then run by itself, so one client's bad input does
            # not fail the requests it happened to be batched with.
            return _Split([self._alone(p, loop) for p in batch])
        if self._observer is not None:
            if loop is not None:
                self._observe_soon(inputs, outputs, loop)
            else:
                self._observe(inputs, outputs)
        try:
            return split_outputs(outputs, [p.rows for p in batch])
        except ValueError as exc:
            raise ModelFailure(self.model.name, exc) from exc

    def _alone(self, p: _Queued, loop: asyncio.AbstractEventLoop | None) -> Tensors | ModelFailure:
        if p.done():  # answered meanwhile (expired, cancelled): nothing to run it for
            return ModelFailure(self.model.name, RuntimeError("answered before it ran"))
        try:
            outputs = self._check(self._predict(p.inputs), p.rows)
        except ModelFailure as exc:
            return exc
        if self._observer is not None:
            if loop is not None:
                self._observe_soon(p.inputs, outputs, loop)
            else:
                self._observe(p.inputs, outputs)
        return outputs

    def _run_now(self, inputs: Tensors, rows: int, loop: asyncio.AbstractEventLoop) -> Tensors:
        started = time.monotonic()
        failed = True
        try:
            outputs = self._check(self._predict(inputs), rows)
            failed = False
            if self._observer is not None:
                self._observe_soon(inputs, outputs, loop)
            return outputs
        finally:
            if self._on_batch is not None:
                # At once: counting a batch that ran is an append (runtime/metrics/serving.py),
                # cheaper than the callback that used to defer it past the answer.
                self._on_batch(BatchStats(rows, 1, [0.0], time.monotonic() - started, failed))

    def _run_inline(self, batch: list[_Queued], rows: int, loop: asyncio.AbstractEventLoop) -> None:
        started = time.monotonic()
        try:
            results = self._compute(batch, rows, loop)
        except Exception as exc:
            self._resolve(batch, rows, started, None, exc)
        else:
            self._resolve(batch, rows, started, results, None)

    def _finished(
        self, run: _Run, started: float, fut: asyncio.Future[list[Tensors | ModelFailure]]
    ) -> None:
        if run.timer is not None:
            run.timer.cancel()
        if run.stuck:
            self._stuck -= 1
            log.warning(
                "model '%s': a stuck call returned after %.1f s", self.model.name, time.monotonic() - started
            )
        else:
            self._busy -= 1
        batch = run.batch
        exc = fut.exception()
        self._resolve(batch, run.rows, started, None if exc else fut.result(), exc)
        self._drop_done_head()
        if self._queue:
            self._schedule_dispatch(asyncio.get_running_loop())

    def _resolve(
        self,
        batch: list[_Queued],
        rows: int,
        started: float,
        results: list[Tensors | ModelFailure] | None,
        exc: BaseException | None,
    ) -> None:
        ended = time.monotonic()
        if exc is not None and not isinstance(exc, ModelFailure | InvalidInput):
            exc = ModelFailure(self.model.name, exc)
        # Read by whoever answers (runtime/server/pipeline.py): how many answers this loop
        # is making one after another, which a transport may write together.
        self.answering = len(batch)
        split = results.__class__ is _Split  # each request ran by itself: some may have failed
        try:
            for i, p in enumerate(batch):
                if p.done():  # cancelled or expired meanwhile
                    continue
                if exc is not None:
                    p.set_exception(exc)
                else:
                    result = results[i]  # type: ignore[index]
                    if split and isinstance(result, ModelFailure):
                        p.set_exception(result)
                    else:
                        p.set_result(result)  # type: ignore[arg-type]
        finally:
            self.answering = 0
        if split and all(isinstance(r, ModelFailure) for r in results):  # type: ignore[union-attr]
            exc = results[0]  # type: ignore[index]  # counted as a failed batch
        if self._on_batch is not None:
            self._on_batch(
                BatchStats(
                    rows=rows,
                    requests=len(batch),
                    queue_s=[started - p.enqueued for p in batch],
                    compute_s=ended - started,
                    failed=exc is not None,
                )
            )
        if not self._queue and self._busy == 0 and self._idle is not None:
            self._idle.set()

    # -- shutdown ------------------------------------------------------------

    @property
    def running_calls(self) -> int:
        """Model calls on threads now, stuck ones included."""
        return self._busy + self._stuck

    async def close(self, timeout_s: float | None = None) -> None:
        """Refuse new requests, finish queued and running ones (for at most `timeout_s`),
        then stop the threads. A call still running then is not waited for: the process
        may exit without it (`mlrt serve` does, so shutdown keeps its bound)."""
        self._closing = True
        if self._queue or self._busy:
            self._idle = asyncio.Event()
            self._schedule_dispatch(asyncio.get_running_loop())
            try:
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            except asyncio.TimeoutError:
                log.warning(
                    "model '%s': gave up waiting for %d queued rows and %d running calls",
                    self.model.name, self._queued_rows, self.running_calls,
                )  # fmt: skip
        if self._delay_timer is not None:
            self._delay_timer.cancel()
        if self.running_calls:
            self._executor.shutdown(wait=False, cancel_futures=True)
        else:
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
