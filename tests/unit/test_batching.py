"""The dynamic batcher against a fake model whose behaviour is a handler function.

Every async test runs on plain asyncio and on uvloop (the loop the server uses).
The fake model can be held "busy" on a threading.Event so a test decides exactly
what is queued when the model frees up. Nothing here asserts on timing: waits are
bounded by a generous GUARD_S only so that a broken batcher fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.batching import (
    Batcher,
    BatchStats,
    DeadlineExceeded,
    split_outputs,
    split_rows,
    stack_inputs,
)
from runtime.config import ModelConfig
from runtime.errors import ModelFailure, ModelNotReady, Overloaded
from runtime.models import Model, Tensors, TensorSpec

pytestmark = pytest.mark.anyio

GUARD_S = 5.0  # only so that a broken batcher fails instead of hanging

Handler = Callable[[Tensors], Tensors]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ],
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


# -- the fake model -----------------------------------------------------------------------------


def double(inputs: Tensors) -> Tensors:
    """y = 2x + 1: every output row is a function of its own input row only."""
    return {"y": inputs["x"] * 2 + 1}


class FakeModel:
    """A Model whose predict() is a handler function (like httpx's MockTransport).

    Records a copy of every batch it is given and the thread that ran it. With
    `hold=True` every predict() blocks until `release()`, so the test can keep the
    model busy while it queues requests.
    """

    platform = "fake"

    def __init__(
        self,
        handler: Handler = double,
        *,
        hold: bool = False,
        inputs: tuple[TensorSpec, ...] = (TensorSpec("x", "FP32", (-1, 2)),),
        outputs: tuple[TensorSpec, ...] = (TensorSpec("y", "FP32", (-1, 2)),),
    ) -> None:
        self.name = "fake"
        self.version = "1"
        self.inputs = inputs
        self.outputs = outputs
        self.handler = handler
        self.calls: list[Tensors] = []
        self.threads: list[threading.Thread] = []
        self.entered = threading.Event()
        self._released = threading.Event()
        if not hold:
            self._released.set()
        self._lock = threading.Lock()
        self.closed = False

    def predict(self, inputs: Tensors) -> Tensors:
        with self._lock:
            self.calls.append({k: np.array(v, copy=True) for k, v in inputs.items()})
            self.threads.append(threading.current_thread())
        self.entered.set()
        if not self._released.wait(GUARD_S):
            raise RuntimeError("the test never released the model")
        return self.handler(inputs)

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.closed = True

    @property
    def batch_sizes(self) -> list[int]:
        return [len(next(iter(c.values()))) for c in self.calls]

    def saw(self, caller: int) -> bool:
        """Did any batch contain a row of `caller` (see `rows`)?"""
        return any((c["x"][:, 0] == caller).any() for c in self.calls)


def test_fake_model_implements_the_protocol() -> None:
    assert isinstance(FakeModel(), Model)


def rows(caller: int, n: int, width: int = 2, dtype: Any = np.float32) -> Tensors:
    """n rows tagged with the caller (column 0) and their index (column 1)."""
    x = np.zeros((n, width), dtype)
    x[:, 0] = caller
    x[:, 1] = np.arange(n)
    return {"x": x}


def expected(caller: int, n: int, width: int = 2, dtype: Any = np.float32) -> np.ndarray:
    return double(rows(caller, n, width, dtype))["y"]


def config(**fields: Any) -> ModelConfig:
    return ModelConfig(name="fake", source="tests.unit.test_batching:FakeModel", **fields)


@contextlib.asynccontextmanager
async def started(model: FakeModel, **fields: Any) -> AsyncIterator[tuple[Batcher, list[BatchStats]]]:
    """A batcher over `model`; on exit the model is released and the batcher closed.

    Also fails the test if anything reached the loop's exception handler (an
    InvalidStateError in a callback, a task exception never retrieved).
    """
    stats: list[BatchStats] = []
    batcher = Batcher(model, config(**fields), on_batch=stats.append)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield batcher, stats
    except BaseException:
        # The test already failed: clean up without hiding why.
        model.release()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(batcher.close(), 1.0)
        loop.set_exception_handler(previous)
        raise
    model.release()
    try:
        await asyncio.wait_for(batcher.close(), GUARD_S)
    finally:
        loop.set_exception_handler(previous)
    assert not errors, f"errors reached the event loop: {errors}"


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until `condition()` holds."""
    deadline = asyncio.get_running_loop().time() + GUARD_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.001)


def submit(batcher: Batcher, inputs: Tensors, **kwargs: Any) -> asyncio.Task[Tensors]:
    return asyncio.create_task(batcher.infer(inputs, **kwargs))


async def hold_busy(batcher: Batcher, model: FakeModel) -> asyncio.Task[Tensors]:
    """Start caller 0's one-row request and wait until the (held) model is running it."""
    first = submit(batcher, rows(0, 1))
    await until(model.entered.is_set, "the model to start the first batch")
    return first


async def finish(task: asyncio.Task[Tensors]) -> Tensors:
    return await asyncio.wait_for(task, GUARD_S)


# -- split and merge ----------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=30),
    max_batch_size=st.integers(1, 64),
    instances=st.integers(1, 3),
    inline=st.booleans(),
)
async def test_every_caller_gets_exactly_its_own_rows(
    sizes: list[int], max_batch_size: int, instances: int, inline: bool
) -> None:
    model = FakeModel()
    # inline: calibrated, and every batch cheap enough to run on the loop; else all on threads.
    fields = {"inline_max_us": 1e12} if inline else {}
    async with started(model, max_batch_size=max_batch_size, instances=instances, **fields) as (b, stats):
        if inline:
            b.calibrate(rows(0, 1))
            model.calls.clear()
        results = await asyncio.wait_for(
            asyncio.gather(*(b.infer(rows(i + 1, n)) for i, n in enumerate(sizes))), GUARD_S
        )
    for i, (n, out) in enumerate(zip(sizes, results, strict=True)):
        assert list(out) == ["y"]
        np.testing.assert_array_equal(out["y"], expected(i + 1, n))
    assert all(0 < s <= max_batch_size for s in model.batch_sizes)
    assert sum(model.batch_sizes) == sum(sizes)
    assert [s.rows for s in stats] == model.batch_sizes
    assert not any(s.failed for s in stats)


async def test_request_larger_than_max_batch_size_is_split_and_reassembled() -> None:
    model = FakeModel()
    async with started(model, max_batch_size=4) as (b, _):
        out = await finish(submit(b, rows(1, 10)))
    np.testing.assert_array_equal(out["y"], expected(1, 10))
    assert sum(model.batch_sizes) == 10
    assert max(model.batch_sizes) == 4
    # The chunks reach the model in order.
    np.testing.assert_array_equal(np.concatenate([c["x"] for c in model.calls]), rows(1, 10)["x"])


async def test_request_larger_than_max_batch_size_alone_is_split() -> None:
    model = FakeModel()
    async with started(model, max_batch_size=3, inline_max_us=1e12) as (b, _):
        b.calibrate(rows(0, 1))
        model.calls.clear()
        out = await finish(submit(b, rows(1, 7), alone=True))
    np.testing.assert_array_equal(out["y"], expected(1, 7))
    assert model.batch_sizes == [3, 3, 1]


async def test_idle_model_dispatches_a_lone_request_at_once() -> None:
    model = FakeModel()
    async with started(model, max_batch_size=64) as (b, stats):
        out = await finish(submit(b, rows(1, 1)))
    np.testing.assert_array_equal(out["y"], expected(1, 1))
    assert model.batch_sizes == [1]
    assert [(s.rows, s.requests, s.failed) for s in stats] == [(1, 1, False)]


async def test_idle_inline_request_needs_no_timer() -> None:
    """Inline, a lone request completes within a few loop turns: nothing waits on a timer."""
    model = FakeModel()
    async with started(model, max_batch_size=64, inline_max_us=1e12) as (b, _):
        b.calibrate(rows(0, 1))
        model.calls.clear()
        task = submit(b, rows(1, 1))
        for _ in range(3):
            await asyncio.sleep(0)
        assert task.done(), "a lone request on an idle model waited for company"
        np.testing.assert_array_equal(task.result()["y"], expected(1, 1))
    assert model.batch_sizes == [1]


async def test_requests_queued_while_busy_leave_as_one_batch() -> None:
    model = FakeModel(hold=True)
    async with started(model, max_batch_size=16) as (b, stats):
        first = await hold_busy(b, model)
        sizes = [1, 3, 2, 1, 4, 1]
        tasks = [submit(b, rows(i + 1, n)) for i, n in enumerate(sizes)]
        await until(lambda: b.queued_rows == sum(sizes), "all requests to queue")
        assert model.batch_sizes == [1]  # nothing else ran while the model was busy
        model.release()
        await finish(first)
        results = [await finish(t) for t in tasks]
    for i, (n, out) in enumerate(zip(sizes, results, strict=True)):
        np.testing.assert_array_equal(out["y"], expected(i + 1, n))
    assert model.batch_sizes == [1, sum(sizes)]
    assert [(s.rows, s.requests) for s in stats] == [(1, 1), (sum(sizes), len(sizes))]
    assert len(stats[1].queue_s) == len(sizes)


async def test_batches_formed_while_busy_never_exceed_max_batch_size() -> None:
    model = FakeModel(hold=True)
    async with started(model, max_batch_size=16) as (b, _):
        first = await hold_busy(b, model)
        sizes = [5, 5, 5, 5, 5, 16, 1]
        tasks = [submit(b, rows(i + 1, n)) for i, n in enumerate(sizes)]
        await until(lambda: b.queued_rows == sum(sizes), "all requests to queue")
        model.release()
        await finish(first)
        results = [await finish(t) for t in tasks]
    for i, (n, out) in enumerate(zip(sizes, results, strict=True)):
        np.testing.assert_array_equal(out["y"], expected(i + 1, n))
    # First in, first out, each batch filled as far as the next request allows.
    assert model.batch_sizes == [1, 15, 10, 16, 1]


async def test_each_instance_runs_a_batch_concurrently() -> None:
    model = FakeModel(hold=True)
    async with started(model, instances=2) as (b, _):
        first = await hold_busy(b, model)
        second = submit(b, rows(1, 2))
        await until(lambda: len(model.calls) == 2, "the second instance to start a batch")
        model.release()
        await finish(first)
        np.testing.assert_array_equal((await finish(second))["y"], expected(1, 2))
    assert len({t.ident for t in model.threads}) == 2


async def test_requests_with_different_non_batch_dims_are_not_merged() -> None:
    model = FakeModel(
        hold=True,
        inputs=(TensorSpec("x", "FP32", (-1, -1)),),
        outputs=(TensorSpec("y", "FP32", (-1, -1)),),
    )
    widths = [2, 3, 2, 3, 3, 2]
    async with started(model) as (b, _):
        first = await hold_busy(b, model)
        tasks = [submit(b, rows(i + 1, 2, width=w)) for i, w in enumerate(widths)]
        await until(lambda: b.queued_rows == 2 * len(widths), "all requests to queue")
        model.release()
        await finish(first)
        results = [await finish(t) for t in tasks]
    for i, (w, out) in enumerate(zip(widths, results, strict=True)):
        np.testing.assert_array_equal(out["y"], expected(i + 1, 2, width=w))
    for call in model.calls[1:]:
        callers = {int(c) for c in call["x"][:, 0]}
        assert len({widths[c - 1] for c in callers}) == 1
    assert len(model.calls) > 2  # the queued requests could not all go together


async def test_requests_with_different_dtypes_are_not_merged() -> None:
    model = FakeModel(hold=True)
    dtypes = [np.float32, np.float64, np.float32, np.float64]
    async with started(model) as (b, _):
        first = await hold_busy(b, model)
        tasks = [submit(b, rows(i + 1, 2, dtype=d)) for i, d in enumerate(dtypes)]
        await until(lambda: b.queued_rows == 2 * len(dtypes), "all requests to queue")
        model.release()
        await finish(first)
        results = [await finish(t) for t in tasks]
    for i, (d, out) in enumerate(zip(dtypes, results, strict=True)):
        assert out["y"].dtype == np.dtype(d), "a request came back in another request's dtype"
        np.testing.assert_array_equal(out["y"], expected(i + 1, 2, dtype=d))
    # Each batch the model saw came from requests of one dtype (no silent upcast).
    for call in model.calls:
        callers = {int(c) for c in call["x"][:, 0]}
        assert len({np.dtype(dtypes[c - 1]) for c in callers if c}) <= 1


# -- cancellation -------------------------------------------------------------------------------


async def test_cancelled_queued_request_never_reaches_the_model() -> None:
    model = FakeModel(hold=True)
    async with started(model) as (b, _):
        first = await hold_busy(b, model)
        a, cancelled, c = submit(b, rows(1, 2)), submit(b, rows(2, 3)), submit(b, rows(3, 1))
        await until(lambda: b.queued_rows == 6, "all requests to queue")
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        model.release()
        await finish(first)
        np.testing.assert_array_equal((await finish(a))["y"], expected(1, 2))
        np.testing.assert_array_equal((await finish(c))["y"], expected(3, 1))
    assert not model.saw(2)
    assert model.batch_sizes == [1, 3]


async def test_cancelling_every_caller_of_a_batch_leaves_nothing_stuck() -> None:
    model = FakeModel(hold=True)
    async with started(model) as (b, stats):
        first = await hold_busy(b, model)
        tasks = [submit(b, rows(i, 2)) for i in (1, 2, 3)]
        await until(lambda: b.queued_rows == 6, "all requests to queue")
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        model.release()
        await finish(first)
        # The batcher is not wedged: a new request runs, and nothing is left queued.
        np.testing.assert_array_equal((await finish(submit(b, rows(4, 1))))["y"], expected(4, 1))
        assert b.queued_rows == 0
    assert not any(model.saw(i) for i in (1, 2, 3))
    assert model.batch_sizes == [1, 1]
    assert [s.rows for s in stats] == [1, 1]


async def test_cancelling_the_caller_of_a_running_batch() -> None:
    model = FakeModel(hold=True)
    async with started(model) as (b, _):
        first = await hold_busy(b, model)
        queued = submit(b, rows(1, 1))
        await until(lambda: b.queued_rows == 1, "the second request to queue")
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        model.release()  # the running batch finishes; its result has nowhere to go
        np.testing.assert_array_equal((await finish(queued))["y"], expected(1, 1))


async def test_cancelling_a_split_request_drops_its_remaining_chunks() -> None:
    model = FakeModel(hold=True)
    async with started(model, max_batch_size=2) as (b, _):
        big = submit(b, rows(1, 6))
        await until(model.entered.is_set, "the first chunk to run")
        await until(lambda: b.queued_rows == 4, "the other chunks to queue")
        big.cancel()
        with pytest.raises(asyncio.CancelledError):
            await big
        other = submit(b, rows(2, 1))
        model.release()
        np.testing.assert_array_equal((await finish(other))["y"], expected(2, 1))
    assert model.batch_sizes == [2, 1]


# -- failures, deadlines, overload --------------------------------------------------------------


def picky(inputs: Tensors) -> Tensors:
    if (inputs["x"] < 0).any():
        raise ValueError("negative input")
    return double(inputs)


async def test_model_failure_fails_only_the_request_that_caused_it() -> None:
    # A batch whose call raises is run again request by request: one client's bad input
    # failed every request it was batched with (a 500 for requests that were fine).
    model = FakeModel(picky, hold=True)
    async with started(model, max_batch_size=2) as (b, stats):
        first = await hold_busy(b, model)
        bad = rows(1, 1)
        bad["x"][:] = -1
        tasks = [submit(b, bad), submit(b, rows(2, 1)), submit(b, rows(3, 1)), submit(b, rows(4, 1))]
        await until(lambda: b.queued_rows == 4, "all requests to queue")
        model.release()
        await finish(first)
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), GUARD_S)
        # The next batch succeeds.
        np.testing.assert_array_equal((await finish(submit(b, rows(5, 1))))["y"], expected(5, 1))
    # Calls: [first], [bad, 2] failing, then [bad] and [2] alone, [3, 4], [5].
    assert model.batch_sizes == [1, 2, 1, 1, 2, 1]
    failed = outcomes[0]
    assert isinstance(failed, ModelFailure)
    assert isinstance(failed.cause, ValueError) and "negative input" in str(failed)
    for i, caller in ((1, 2), (2, 3), (3, 4)):
        np.testing.assert_array_equal(outcomes[i]["y"], expected(caller, 1))
    # The split batch ran: counted as a batch that did not fail (its failed request is
    # counted where it is answered).
    assert [s.failed for s in stats] == [False, False, False, False]


@pytest.mark.parametrize("alone", [False, True])
async def test_model_failure_inline(alone: bool) -> None:
    model = FakeModel(picky)
    async with started(model, inline_max_us=1e12) as (b, stats):
        b.calibrate(rows(0, 1))
        bad = rows(1, 1)
        bad["x"][:] = -1
        with pytest.raises(ModelFailure, match="negative input"):
            await finish(submit(b, bad, alone=alone))
        np.testing.assert_array_equal((await finish(submit(b, rows(2, 1), alone=alone)))["y"], expected(2, 1))
    assert [s.failed for s in stats] == [True, False]


async def test_an_inline_batch_that_fails_is_answered_request_by_request() -> None:
    model = FakeModel(picky)
    async with started(model, inline_max_us=1e12) as (b, stats):
        b.calibrate(rows(0, 1))
        model.calls.clear()
        bad = rows(1, 1)
        bad["x"][:] = -1
        tasks = [submit(b, rows(2, 1)), submit(b, bad), submit(b, rows(3, 2))]  # one loop turn
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), GUARD_S)
    assert model.batch_sizes == [4, 1, 1, 2]
    np.testing.assert_array_equal(outcomes[0]["y"], expected(2, 1))
    assert isinstance(outcomes[1], ModelFailure)
    np.testing.assert_array_equal(outcomes[2]["y"], expected(3, 2))


def drops_a_row(inputs: Tensors) -> Tensors:
    """Returns one row too few (except for caller 0, which keeps the model busy)."""
    y = double(inputs)["y"]
    return {"y": y if (inputs["x"][:, 0] == 0).all() else y[1:]}


def wrong_name(inputs: Tensors) -> Tensors:
    y = double(inputs)["y"]
    return {"y": y} if (inputs["x"][:, 0] == 0).all() else {"z": y}


@pytest.mark.parametrize("handler", [drops_a_row, wrong_name])
@pytest.mark.parametrize("requests", [1, 3], ids=["alone-in-its-batch", "sharing-a-batch"])
async def test_outputs_that_do_not_match_the_inputs_are_a_model_failure(
    handler: Handler, requests: int
) -> None:
    """Whether or not a request shared its batch, a bad output is a ModelFailure.

    Otherwise a caller's result would depend on how busy the server happened to be.
    """
    model = FakeModel(handler, hold=True)
    async with started(model) as (b, stats):
        first = await hold_busy(b, model)
        tasks = [submit(b, rows(i + 1, 2)) for i in range(requests)]
        await until(lambda: b.queued_rows == 2 * requests, "all requests to queue")
        model.release()
        await finish(first)
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), GUARD_S)
    # Sharing a batch, each request is then run alone, and fails alone too.
    assert model.batch_sizes == [1, 2 * requests] + ([2] * requests if requests > 1 else [])
    for outcome in outcomes:
        assert isinstance(outcome, ModelFailure), f"got {outcome!r}"
    assert [s.failed for s in stats] == [False, True]


@pytest.mark.parametrize("timeout_s", [0.0004, 0.0104, 0.05])
async def test_deadline_passing_in_the_queue_never_runs_the_model(timeout_s: float) -> None:
    model = FakeModel(hold=True)
    async with started(model) as (b, _):
        first = await hold_busy(b, model)
        late = submit(b, rows(1, 1), timeout_s=timeout_s)
        with pytest.raises(DeadlineExceeded) as info:
            try:
                await finish(late)  # while the model is still busy
            except asyncio.TimeoutError:
                pytest.fail(
                    f"a {timeout_s} s deadline passed in the queue, but the request was "
                    f"still queued {GUARD_S} s later"
                )
        assert isinstance(info.value, Overloaded)
        assert b.queued_rows == 0
        model.release()
        await finish(first)
        np.testing.assert_array_equal((await finish(submit(b, rows(2, 1))))["y"], expected(2, 1))
    assert not model.saw(1)
    assert model.batch_sizes == [1, 1]


async def test_deadline_that_does_not_pass_changes_nothing() -> None:
    model = FakeModel(hold=True)
    async with started(model) as (b, _):
        first = await hold_busy(b, model)
        task = submit(b, rows(1, 3), timeout_s=3600.0)
        await until(lambda: b.queued_rows == 3, "the request to queue")
        model.release()
        await finish(first)
        np.testing.assert_array_equal((await finish(task))["y"], expected(1, 3))


async def test_queue_bound_refuses_at_once_and_leaves_the_queue_alone() -> None:
    model = FakeModel(hold=True)
    async with started(model, max_queue_rows=5) as (b, _):
        first = await hold_busy(b, model)
        a = submit(b, rows(1, 3))
        await until(lambda: b.queued_rows == 3, "the first request to queue")
        with pytest.raises(Overloaded) as info:
            await finish(submit(b, rows(2, 3)))  # 3 + 3 > 5; the model is still held
        assert not isinstance(info.value, DeadlineExceeded)
        assert info.value.retry_after_s > 0
        assert b.queued_rows == 3
        c = submit(b, rows(3, 2))  # 3 + 2 fits
        await until(lambda: b.queued_rows == 5, "the third request to queue")
        model.release()
        await finish(first)
        np.testing.assert_array_equal((await finish(a))["y"], expected(1, 3))
        np.testing.assert_array_equal((await finish(c))["y"], expected(3, 2))
    assert not model.saw(2)


# -- shutdown -----------------------------------------------------------------------------------


async def test_close_drains_queued_work_then_refuses() -> None:
    model = FakeModel(hold=True)
    b = Batcher(model, config())
    first = await hold_busy(b, model)
    tasks = [submit(b, rows(i, 2)) for i in (1, 2)]
    await until(lambda: b.queued_rows == 4, "the requests to queue")
    closing = asyncio.create_task(b.close())
    await asyncio.sleep(0)
    with pytest.raises(ModelNotReady):
        await b.infer(rows(3, 1))
    assert not closing.done()
    model.release()
    await asyncio.wait_for(closing, GUARD_S)
    assert all(t.done() for t in (first, *tasks)), "close() returned before the queued work finished"
    np.testing.assert_array_equal(first.result()["y"], expected(0, 1))
    for i, t in zip((1, 2), tasks, strict=True):
        np.testing.assert_array_equal(t.result()["y"], expected(i, 2))
    with pytest.raises(ModelNotReady):
        await b.infer(rows(4, 1))
    assert not model.saw(3) and not model.saw(4)


async def test_close_idle_and_with_only_cancelled_requests_queued() -> None:
    model = FakeModel()
    b = Batcher(model, config())
    await asyncio.wait_for(b.close(), GUARD_S)

    model = FakeModel(hold=True)
    b = Batcher(model, config())
    first = await hold_busy(b, model)
    queued = submit(b, rows(1, 1))
    await until(lambda: b.queued_rows == 1, "the request to queue")
    queued.cancel()
    closing = asyncio.create_task(b.close())
    model.release()
    await asyncio.wait_for(closing, GUARD_S)
    await finish(first)
    assert not model.saw(1)


# -- where batches run --------------------------------------------------------------------------


async def test_calibrated_cheap_batches_run_inline_on_the_loop_thread() -> None:
    model = FakeModel()
    async with started(model, inline_max_us=1e12) as (b, _):
        b.calibrate(rows(0, 1))
        assert 0 <= b.fixed_us < float("inf") and 0 <= b.per_row_us < float("inf")
        model.threads.clear()
        await asyncio.wait_for(asyncio.gather(*(b.infer(rows(i, 2)) for i in (1, 2, 3))), GUARD_S)
    assert model.threads and all(t is threading.current_thread() for t in model.threads)


async def test_inline_max_us_zero_runs_on_a_worker_thread() -> None:
    model = FakeModel()
    async with started(model, inline_max_us=0) as (b, _):
        b.calibrate(rows(0, 1))
        model.threads.clear()
        out = await asyncio.wait_for(b.infer(rows(1, 2), alone=True), GUARD_S)
        await asyncio.wait_for(b.infer(rows(2, 2)), GUARD_S)
    np.testing.assert_array_equal(out["y"], expected(1, 2))
    assert len(model.threads) == 2
    assert all(t is not threading.current_thread() and t.name.startswith("mlrt-fake") for t in model.threads)


async def test_uncalibrated_batches_run_on_worker_threads() -> None:
    model = FakeModel()
    async with started(model) as (b, _):
        await asyncio.wait_for(b.infer(rows(1, 1), alone=True), GUARD_S)
    assert model.threads[0] is not threading.current_thread()


async def test_alone_runs_without_suspending() -> None:
    """`alone` on an idle, calibrated, cheap model: the coroutine finishes without awaiting."""
    model = FakeModel()
    async with started(model, inline_max_us=1e12) as (b, stats):
        b.calibrate(rows(0, 1))
        model.calls.clear()
        coro = b.infer(rows(1, 3), alone=True)
        try:
            coro.send(None)
        except StopIteration as done:
            out = done.value
        else:
            coro.close()
            pytest.fail("infer(alone=True) suspended on an idle model")
    np.testing.assert_array_equal(out["y"], expected(1, 3))
    assert model.batch_sizes == [3]
    assert [(s.rows, s.requests, s.failed) for s in stats] == [(3, 1, False)]


async def test_alone_with_work_queued_joins_the_queue() -> None:
    model = FakeModel()
    async with started(model, inline_max_us=1e12) as (b, _):
        b.calibrate(rows(0, 1))
        model.calls.clear()
        queued = submit(b, rows(1, 1))
        await asyncio.sleep(0)  # queued; its dispatch runs on the next loop turn
        assert b.queued_rows == 1 and not model.calls
        out = await b.infer(rows(2, 2), alone=True)  # in this same turn
        np.testing.assert_array_equal((await finish(queued))["y"], expected(1, 1))
    np.testing.assert_array_equal(out["y"], expected(2, 2))
    assert model.batch_sizes == [3]  # first in, first out: no overtaking


# -- queue delay and preferred batch sizes ------------------------------------------------------


async def test_queue_delay_holds_a_partial_batch_then_sends_it() -> None:
    model = FakeModel()
    async with started(model, max_batch_size=8, max_queue_delay_us=300_000) as (b, _):
        task = submit(b, rows(1, 1))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not task.done() and not model.calls, "a partial batch left before the delay"
        np.testing.assert_array_equal((await finish(task))["y"], expected(1, 1))
    assert model.batch_sizes == [1]


async def test_full_batch_leaves_before_the_delay() -> None:
    model = FakeModel()
    async with started(model, max_batch_size=4, max_queue_delay_us=3_600_000_000) as (b, _):
        task = submit(b, rows(1, 1))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not task.done()
        rest = submit(b, rows(2, 3))
        np.testing.assert_array_equal((await finish(task))["y"], expected(1, 1))
        np.testing.assert_array_equal((await finish(rest))["y"], expected(2, 3))
    assert model.batch_sizes == [4]


@pytest.mark.parametrize("preferred", [(4,), (2, 4), (3, 6)])
async def test_each_full_preferred_batch_leaves_before_the_delay(preferred: tuple[int, ...]) -> None:
    """As Triton does: once the queue holds exactly a preferred size, that batch goes now."""
    for size in preferred:
        model = FakeModel()
        async with started(
            model, max_batch_size=8, preferred_batch_sizes=preferred, max_queue_delay_us=3_600_000_000
        ) as (b, _):
            tasks = [submit(b, rows(i + 1, 1)) for i in range(size)]
            try:
                results = [await finish(t) for t in tasks]
            except asyncio.TimeoutError:
                pytest.fail(f"{size} rows queued (a preferred size of {preferred}) waited for the delay")
        for i, out in enumerate(results):
            np.testing.assert_array_equal(out["y"], expected(i + 1, 1))
        assert model.batch_sizes == [size], f"preferred {preferred}"


# -- the pure helpers ---------------------------------------------------------------------------


def tensors(n: int, seed: int) -> Tensors:
    rng = np.random.default_rng(seed)
    return {
        "a": rng.standard_normal((n, 3)).astype(np.float32),
        "b": rng.integers(0, 100, (n,), dtype=np.int64),
        "s": np.array([f"r{i}".encode() for i in range(n)], dtype=object).reshape(n, 1),
    }


@given(n=st.integers(0, 60), size=st.integers(1, 70), seed=st.integers(0, 2**32 - 1))
def test_split_rows(n: int, size: int, seed: int) -> None:
    inputs = tensors(n, seed)
    chunks = split_rows(inputs, size)
    assert len(chunks) == -(-n // size)
    for i, chunk in enumerate(chunks):
        assert set(chunk) == set(inputs)
        lengths = {len(v) for v in chunk.values()}
        assert lengths == ({size} if i < len(chunks) - 1 else {n - size * (len(chunks) - 1)})
        for k, v in chunk.items():
            assert np.shares_memory(v, inputs[k]), "split_rows copied instead of slicing"
    for k, v in inputs.items():
        joined = np.concatenate([c[k] for c in chunks]) if chunks else v[:0]
        np.testing.assert_array_equal(joined, v)


@given(sizes=st.lists(st.integers(0, 20), min_size=1, max_size=10), seed=st.integers(0, 2**32 - 1))
def test_stack_then_split_gives_back_each_part(sizes: list[int], seed: int) -> None:
    parts = [tensors(n, seed + i) for i, n in enumerate(sizes)]
    stacked = stack_inputs(parts)
    for k in parts[0]:
        assert len(stacked[k]) == sum(sizes)
        assert stacked[k].dtype == parts[0][k].dtype
    back = split_outputs(stacked, sizes)
    assert len(back) == len(parts)
    for part, got in zip(parts, back, strict=True):
        assert set(got) == set(part)
        for k in part:
            assert got[k].dtype == part[k].dtype
            np.testing.assert_array_equal(got[k], part[k])


@given(sizes=st.lists(st.integers(0, 20), min_size=2, max_size=10), extra=st.integers(-5, 5))
def test_split_outputs_rejects_a_row_count_that_does_not_match(sizes: list[int], extra: int) -> None:
    total = sum(sizes) + extra
    if extra == 0 or total < 0:
        return
    with pytest.raises(ValueError, match="'y' has shape"):
        split_outputs({"y": np.zeros((total, 2))}, sizes)


def test_split_outputs_rejects_a_scalar_output() -> None:
    with pytest.raises(ValueError, match="'y' has shape \\[\\]"):
        split_outputs({"y": np.float32(1.0) * np.ones(())}, [1, 2])


# -- callbacks instead of futures (the server's direct path) ------------------------------------


class Outcomes:
    """Collects on_done callbacks: (caller, outputs, exception), in the order they came. The
    caller is the context each request was submitted with: one callback serves them all."""

    def __init__(self) -> None:
        self.got: list[tuple[int, Tensors | None, BaseException | None]] = []

    def add(self, caller: int, out: Tensors | None, exc: BaseException | None) -> None:
        self.got.append((caller, out, exc))


async def test_on_done_is_called_inside_the_batch_not_a_loop_turn_later() -> None:
    model = FakeModel(hold=True)
    outcomes = Outcomes()
    async with started(model, max_batch_size=16) as (b, stats):
        first = await hold_busy(b, model)
        sizes = [2, 1, 3]
        for i, n in enumerate(sizes):
            b.submit(rows(i + 1, n), on_done=outcomes.add, context=i + 1)
        model.release()
        await finish(first)
        await until(lambda: len(stats) == 2, "the queued batch to finish")
        # Every caller heard by the time the batch was accounted for, in queue order.
        assert [c for c, _, _ in outcomes.got] == [1, 2, 3]
    for (caller, out, exc), n in zip(outcomes.got, sizes, strict=True):
        assert exc is None
        np.testing.assert_array_equal(out["y"], expected(caller, n))  # type: ignore[index]


async def test_cancelled_ticket_is_dropped_before_its_batch() -> None:
    model = FakeModel(hold=True)
    outcomes = Outcomes()
    async with started(model, max_batch_size=16) as (b, _):
        first = await hold_busy(b, model)
        gone = b.submit(rows(1, 2), on_done=outcomes.add, context=1)
        b.submit(rows(2, 2), on_done=outcomes.add, context=2)
        assert not isinstance(gone, dict)
        assert gone.cancel()
        assert not gone.cancel()  # only once
        model.release()
        await finish(first)
        await until(lambda: len(outcomes.got) == 2, "caller 2's answer")
    assert isinstance(outcomes.got[0][2], asyncio.CancelledError)
    assert outcomes.got[1][0] == 2 and outcomes.got[1][2] is None
    assert not model.saw(1)


async def test_on_done_hears_of_an_expired_deadline() -> None:
    model = FakeModel(hold=True)
    outcomes = Outcomes()
    async with started(model) as (b, _):
        first = await hold_busy(b, model)
        b.submit(rows(1, 1), timeout_s=0.001, on_done=outcomes.add, context=1)
        await until(lambda: bool(outcomes.got), "the deadline to pass")
        model.release()
        await finish(first)
    assert isinstance(outcomes.got[0][2], DeadlineExceeded)
    assert not model.saw(1)


async def test_on_done_for_a_request_split_into_chunks() -> None:
    model = FakeModel(hold=True)
    outcomes = Outcomes()
    async with started(model, max_batch_size=3) as (b, _):
        first = await hold_busy(b, model)
        b.submit(rows(1, 8), on_done=outcomes.add, context=1)
        model.release()
        await finish(first)
        await until(lambda: bool(outcomes.got), "the joined answer")
    caller, out, exc = outcomes.got[0]
    assert exc is None
    np.testing.assert_array_equal(out["y"], expected(1, 8))  # type: ignore[index]


async def test_on_done_hears_of_a_model_failure() -> None:
    def fail(inputs: Tensors) -> Tensors:
        raise ValueError("boom")

    model = FakeModel(fail)
    outcomes = Outcomes()
    async with started(model) as (b, _):
        b.submit(rows(1, 1), on_done=outcomes.add, context=1)
        await until(lambda: bool(outcomes.got), "the failure")
    assert isinstance(outcomes.got[0][2], ModelFailure)


async def test_check_room_refuses_only_when_no_request_could_join() -> None:
    model = FakeModel(hold=True)
    async with started(model, max_queue_rows=4) as (b, _):
        first = await hold_busy(b, model)
        b.check_room()  # empty queue
        waiting = submit(b, rows(1, 3))
        await until(lambda: b.queued_rows == 3, "the request to queue")
        b.check_room()  # one more row still fits
        also = submit(b, rows(2, 1))
        await until(lambda: b.queued_rows == 4, "the second request to queue")
        with pytest.raises(Overloaded, match="queue is full"):
            b.check_room()
        model.release()
        await finish(first)
        await finish(waiting)
        await finish(also)


@pytest.mark.parametrize(("batch_us", "turns"), [(10.0, 1), (60.0, 4)])
async def test_cheap_batches_share_a_loop_turn_up_to_a_budget(batch_us: float, turns: int) -> None:
    """Inline batches run back to back up to INLINE_TURN_US of predicted compute per loop
    turn: four 10 µs batches in one turn, four 60 µs batches in four. (Requests of
    different widths never merge, so the four batches are four partial ones.)"""
    loop = asyncio.get_running_loop()
    tick = [0]
    seen: list[int] = []

    def ticker() -> None:  # counts loop turns
        tick[0] += 1
        handle[0] = loop.call_soon(ticker)

    handle = [loop.call_soon(ticker)]

    def recording(inputs: Tensors) -> Tensors:
        seen.append(tick[0])
        return double(inputs)

    model = FakeModel(
        recording, inputs=(TensorSpec("x", "FP32", (-1, -1)),), outputs=(TensorSpec("y", "FP32", (-1, -1)),)
    )
    widths = [2, 3, 2, 3]
    try:
        async with started(model, max_batch_size=64, inline_max_us=1e12) as (b, _):
            b.calibrate(rows(0, 1))
            seen.clear()
            b.fixed_us, b.per_row_us = batch_us, 0.0
            tasks = [submit(b, rows(i + 1, 1, width=w)) for i, w in enumerate(widths)]
            for i, (t, w) in enumerate(zip(tasks, widths, strict=True)):
                np.testing.assert_array_equal((await finish(t))["y"], expected(i + 1, 1, width=w))
    finally:
        handle[0].cancel()
    assert len(seen) == 4
    assert len(set(seen)) == turns


async def test_a_full_batch_runs_as_soon_as_it_is_queued() -> None:
    """Once max_batch_size rows wait and an instance is idle, the batch runs inside the
    submit that filled it, not after the loop's pending I/O."""
    model = FakeModel()
    outcomes = Outcomes()
    async with started(model, max_batch_size=4, inline_max_us=1e12) as (b, _):
        b.calibrate(rows(0, 1))
        model.calls.clear()
        for caller in (1, 2, 3):
            b.submit(rows(caller, 1), on_done=outcomes.add, context=caller)
        assert outcomes.got == [] and b.queued_rows == 3  # a partial batch waits for the turn
        b.submit(rows(4, 1), on_done=outcomes.add, context=4)
        assert [c for c, _, _ in outcomes.got] == [1, 2, 3, 4]  # answered before submit returned
        assert model.batch_sizes == [4]
        for caller, out, exc in outcomes.got:
            assert exc is None
            np.testing.assert_array_equal(out["y"], expected(caller, 1))  # type: ignore[index]


async def test_an_observer_that_raises_is_counted_and_fails_no_request() -> None:
    # The drift monitor's failures were only logged: /drift said ok over an empty window,
    # and nothing a dashboard or alert reads showed it (mlrt_drift_observe_failures_total).
    from runtime.metrics import ServingMetrics

    def observer(inputs: Tensors, outputs: Tensors) -> None:
        raise ValueError("cannot count this")

    batcher = Batcher(FakeModel(), config(), observer=observer)
    metrics = ServingMetrics()
    metrics.for_model("fake", "1", observe_failures=lambda: batcher.observer_failures)
    for caller in (1, 2):
        np.testing.assert_array_equal(
            (await finish(submit(batcher, rows(caller, 2))))["y"], expected(caller, 2)
        )
    await batcher.close()
    assert batcher.observer_failures == 2
    got = metrics.registry.get_sample_value(
        "mlrt_drift_observe_failures_total", {"model": "fake", "version": "1"}
    )
    assert got == 2
