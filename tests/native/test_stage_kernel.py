"""The staging buffer copies rows exactly as numpy's cast would, from any layout, and
declines what it does not take instead of raising; Stager stages both tensors or neither."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime._native import _stage
from runtime.monitor.kernels import Lock, RowBuffer, Stager

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e39, -1e39, 3.4028235e38, 1e-45, 5e-324, 0.1, 1 / 3]


def test_ndarray_fields_are_read_on_this_numpy() -> None:
    # If this fails, numpy's array layout changed: staging still works through the
    # buffer protocol, but slower (bench/monitor_cost.py would show it).
    assert _stage.reads_ndarray_fields()


def _layouts(a: np.ndarray) -> list[np.ndarray]:
    """The same rows as C order, Fortran order, a strided view and reversed rows."""
    wide = np.zeros((a.shape[0], 2 * a.shape[1] + 1), dtype=a.dtype)
    wide[:, 1::2] = a
    return [
        np.ascontiguousarray(a),
        np.asfortranarray(a),
        wide[:, 1::2],
        np.ascontiguousarray(a[::-1])[::-1],
    ]


@settings(max_examples=200, deadline=None)
@given(
    rows=hnp.arrays(
        np.float64,
        st.tuples(st.integers(0, 15), st.integers(1, 6)),
        elements=st.one_of(st.sampled_from(SPECIALS), st.floats(allow_nan=True, allow_infinity=True)),
    ),
    src=st.sampled_from([np.float32, np.float64]),
    dst=st.sampled_from([np.float32, np.float64]),
)
def test_copies_exactly_as_numpy_casts(rows: np.ndarray, src: type, dst: type) -> None:
    with np.errstate(over="ignore"):
        x = rows.astype(src)
        want = x.astype(dst)
    for layout in _layouts(x):
        buf = RowBuffer(np.full((64, x.shape[1]), 7.0, dtype=dst), max_rows=15)
        assert buf.add(x[:0]) == 0
        assert buf.add(layout) == len(x)
        assert buf.add(layout) == 2 * len(x)
        got = buf.rows[: buf.n]
        # Bit for bit: NaN payloads aside, the same float as numpy's cast.
        np.testing.assert_array_equal(got, np.concatenate([want, want]))
        assert (np.signbit(got) == np.signbit(np.concatenate([want, want]))).all()
        assert (buf.rows[buf.n :] == 7.0).all()  # nothing written past the rows


def test_one_column_takes_a_1d_array_of_its_values() -> None:
    buf = RowBuffer(np.empty((64, 1), np.float32), max_rows=15)
    assert buf.add(np.array([0.5, 1.5, 2.5])) == 3
    assert buf.add(np.array([[4.0], [5.0]], np.float32)) == 5
    assert buf.rows[:5, 0].tolist() == [0.5, 1.5, 2.5, 4.0, 5.0]
    wide = RowBuffer(np.empty((64, 3), np.float32), max_rows=15)
    assert wide.add(np.zeros(3, np.float32)) == -1  # one row of three values needs 2-D


@pytest.mark.parametrize(
    "x",
    [
        np.zeros((1, 3), np.int64),  # not float32/float64: the caller converts
        np.zeros((1, 3), np.float16),
        np.zeros((1, 3), ">f4"),  # other byte order
        np.zeros((1, 4), np.float32),  # other width
        np.zeros((1, 3, 1), np.float32),
        np.float32(1.0),
        np.zeros((16, 3), np.float32),  # more than max_rows
        [[1.0, 2.0, 3.0]],  # not a buffer
        "abc",
        None,
    ],
    ids=lambda x: type(x).__name__ + str(getattr(x, "dtype", "")) + str(getattr(x, "shape", "")),
)
def test_declines_what_it_does_not_take(x: object) -> None:
    buf = RowBuffer(np.empty((64, 3), np.float32), max_rows=15)
    assert buf.add(x) == -1
    assert buf.n == 0


def test_other_buffers_and_subclasses_go_through_the_buffer_protocol() -> None:
    buf = RowBuffer(np.empty((64, 2), np.float64), max_rows=15)
    rows = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    assert buf.add(memoryview(rows)) == 2
    assert buf.add(np.ma.masked_array(rows)) == 4  # an ndarray subclass
    assert buf.rows[:4].tolist() == [[1.0, 2.0], [3.0, 4.0]] * 2


def test_fills_to_capacity_and_no_further() -> None:
    buf = RowBuffer(np.empty((64, 2), np.float32), max_rows=15)
    row = np.ones((1, 2), np.float32)
    assert [buf.add(row) for _ in range(64)] == list(range(1, 65))
    assert buf.add(row) == -1 and buf.n == 64
    buf.clear()
    assert buf.n == 0 and buf.add(np.ones((15, 2))) == 15
    assert buf.add(np.ones((15, 2))) == 30


def test_rejects_a_bad_buffer() -> None:
    with pytest.raises(ValueError, match="C-contiguous 2-D float32 or float64"):
        RowBuffer(np.empty((64, 3), np.float32, order="F"), max_rows=15)
    with pytest.raises(ValueError, match="C-contiguous 2-D float32 or float64"):
        RowBuffer(np.empty((64, 3), np.int32), max_rows=15)
    with pytest.raises(ValueError, match="max_rows must be in 1..64"):
        RowBuffer(np.empty((64, 3), np.float32), max_rows=65)
    read_only = np.frombuffer(b"\0" * 12, np.float32).reshape(1, 3)
    with pytest.raises((BufferError, ValueError)):
        RowBuffer(read_only, max_rows=1)
    buf = RowBuffer(np.empty((64, 3), np.float32), max_rows=15)
    with pytest.raises(RuntimeError, match="initialized once"):
        buf.__init__(np.empty((64, 3), np.float32), 15)  # type: ignore[misc]


def _stager(due_at: float = float("inf")) -> Stager:
    s = Stager(
        Lock(),
        "x",
        RowBuffer(np.empty((64, 3), np.float32), max_rows=15),
        "y",
        RowBuffer(np.empty((64, 2), np.float32), max_rows=15),
    )
    s.due_at = due_at
    return s


def test_stager_stages_both_tensors_or_neither() -> None:
    s = _stager()
    x, y = np.ones((1, 3), np.float32), np.ones((1, 2), np.float32)
    assert s.add({"x": x}, {"y": y}, 0.0) == 0
    assert (s.x.n, s.y.n) == (1, 1)
    for inputs, outputs in [
        ({"x": x}, {"y": y.astype(np.int64)}),  # outputs of another dtype
        ({"x": x.astype(np.int64)}, {"y": y}),
        ({"x": x}, {"z": y}),  # a tensor missing
        ({"z": x}, {"y": y}),
        ({"x": x}, {"y": np.ones((1, 3), np.float32)}),  # wrong width
        ({"x": np.ones((16, 3), np.float32)}, {"y": np.ones((16, 2), np.float32)}),  # a batch
        ([("x", x)], {"y": y}),  # not a dict
    ]:
        assert s.add(inputs, outputs, 0.0) == -1
        assert (s.x.n, s.y.n) == (1, 1)


def test_stager_declines_once_the_sub_window_is_over() -> None:
    s = _stager(due_at=10.0)
    x, y = {"x": np.ones((1, 3), np.float32)}, {"y": np.ones((1, 2), np.float32)}
    assert s.add(x, y, 9.999) == 0
    assert s.add(x, y, 10.0) == -1
    assert s.x.n == 1


def test_stager_says_when_a_buffer_is_full() -> None:
    s = _stager()
    x, y = {"x": np.ones((1, 3), np.float32)}, {"y": np.ones((1, 2), np.float32)}
    answers = [s.add(x, y, 0.0) for _ in range(64)]
    assert answers == [0] * 63 + [1]
    assert s.add(x, y, 0.0) == -1  # no room until someone counts and clears


def test_stager_observe_calls_back() -> None:
    calls: list[object] = []
    s = Stager(
        Lock(),
        "x",
        RowBuffer(np.empty((2, 1), np.float64), max_rows=1),
        clock=lambda: 0.0,
        on_full=lambda: calls.append("full"),
        fallback=lambda inputs, outputs: calls.append(("fallback", inputs, outputs)),
    )
    s.due_at = 1.0
    x = {"x": np.zeros(1)}
    assert s.observe(x, {}) is None and calls == []
    s.observe(x, {})
    assert calls == ["full"]
    s.observe(x, {"ignored": 1})
    assert calls[1] == ("fallback", x, {"ignored": 1})


def test_lock_excludes() -> None:
    import threading

    lock = Lock()
    entered = threading.Event()
    with lock:
        t = threading.Thread(target=lambda: (lock.__enter__(), entered.set(), lock.__exit__()))
        t.start()
        assert not entered.wait(0.05)
    t.join(5)
    assert entered.is_set()
