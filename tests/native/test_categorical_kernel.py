"""Native categorical counts against the numpy oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.monitor import _reference as ref
from runtime.monitor import kernels


def _layout(level_lists):
    sizes = [len(v) for v in level_lists]
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(sizes)
    coff = offsets[:-1] + 2 * np.arange(len(sizes), dtype=np.int64)
    return offsets, coff, np.zeros(int(offsets[-1]) + 2 * len(sizes), dtype=np.int64)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(st.integers(-5, 5), unique=True, max_size=6), min_size=1, max_size=4),
    st.integers(0, 300),
    st.randoms(use_true_random=False),
)
def test_int_levels(level_lists, n_rows, rnd):
    level_lists = [sorted(v) for v in level_lists]
    X = np.array([[rnd.randint(-7, 7) for _ in level_lists] for _ in range(n_rows)], dtype=np.int64).reshape(
        n_rows, len(level_lists)
    )
    offsets, coff, counts = _layout(level_lists)
    levels = np.array([v for lv in level_lists for v in lv], dtype=np.int64)
    cols = np.arange(len(level_lists), dtype=np.int64)
    kernels.count_levels(X, cols, levels, offsets, coff, counts)
    expect = np.concatenate([ref.count_levels(X[:, j].tolist(), lv) for j, lv in enumerate(level_lists)])
    expect_no_missing = expect.copy()
    np.testing.assert_array_equal(counts, expect_no_missing)

    # The same codes as floats, with NaN for missing, in F order.
    Xf = np.asfortranarray(X.astype(np.float32))
    if n_rows:
        Xf[::3, 0] = np.nan
    counts[:] = 0
    kernels.count_levels(Xf, cols, levels.astype(np.float64), offsets, coff, counts)
    expect = np.concatenate([ref.count_levels(Xf[:, j].tolist(), lv) for j, lv in enumerate(level_lists)])
    np.testing.assert_array_equal(counts, expect)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c", "d", "é", b"a", b"z", None, 1, 2.0, float("nan")]), max_size=200)
)
def test_object_levels_str_and_bytes(values):
    levels = ["a", "c", "é"]
    table = {}
    for i, v in enumerate(levels):
        table[v] = i
        table[v.encode()] = i
    X = np.empty((len(values), 1), dtype=object)
    X[:, 0] = values
    counts = np.zeros(5, dtype=np.int64)
    kernels.count_levels_object(
        X, np.zeros(1, np.int64), [table], np.array([3], np.int64), np.zeros(1, np.int64), counts
    )
    np.testing.assert_array_equal(counts, ref.count_levels(values, levels))


def test_unseen_goes_to_other_and_empty_levels():
    X = np.array([[7], [8]], dtype=np.int64)
    offsets, coff, counts = _layout([[]])
    kernels.count_levels(X, np.zeros(1, np.int64), np.zeros(0, np.int64), offsets, coff, counts)
    assert counts.tolist() == [2, 0]


def test_codes_and_levels_must_agree_in_kind():
    offsets, coff, counts = _layout([[1, 2]])
    cols = np.zeros(1, np.int64)
    with pytest.raises(TypeError, match="integer codes take int64 levels"):
        kernels.count_levels(np.array([[1]], np.int64), cols, np.array([1.0, 2.0]), offsets, coff, counts)
    with pytest.raises(TypeError, match="integer codes take int64 levels"):
        kernels.count_levels(
            np.array([[1.0]], np.float32), cols, np.array([1, 2], np.int64), offsets, coff, counts
        )
