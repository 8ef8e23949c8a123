"""Native numeric bin counts against the numpy oracle (searchsorted side="right")."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime.monitor import _reference as ref
from runtime.monitor import kernels

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 1e300, -1e300, 3.4e38, 5e-324]


@st.composite
def edges_lists(draw, n_features):
    out = []
    for _ in range(n_features):
        # 0 edges (one bin) up to more than LINEAR_MAX_EDGES (binary-search path).
        k = draw(st.sampled_from([0, 1, 2, 9, 20, 64, 65, 130]))
        # Half the time float32-representable, so float32 data can hit them exactly.
        width = draw(st.sampled_from([32, 64]))
        vals = draw(hnp.arrays(np.float64, k, elements=st.floats(-1e6, 1e6, width=width)))
        out.append(np.unique(vals))
    return out


@st.composite
def cases(draw):
    n_features = draw(st.integers(1, 5))
    edges = draw(edges_lists(n_features))
    n_rows = draw(st.sampled_from([0, 1, 2, 15, 16, 17, 255, 256, 257, 600]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    pool = np.concatenate([np.asarray(SPECIALS)] + [e for e in edges])
    with np.errstate(over="ignore"):
        # Values exactly on the edges as the input dtype sees them.
        pool = np.unique(pool.astype(dtype)).astype(np.float64)
    # Values drawn from the edges themselves, the specials, and anywhere.
    elems = st.one_of(
        st.sampled_from(pool.tolist()),
        st.floats(allow_nan=True, allow_infinity=True, width=32 if dtype == np.float32 else 64),
    )
    X = draw(hnp.arrays(dtype, (n_rows, n_features), elements=elems))
    layout = draw(st.sampled_from(["C", "F", "strided", "reversed"]))
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "strided":
        big = np.zeros((n_rows * 2, n_features * 3), dtype=dtype)
        big[::2, ::3] = X
        X = big[::2, ::3]
    elif layout == "reversed":
        X = np.ascontiguousarray(X[::-1])[::-1]
    return X, edges


@settings(max_examples=300, deadline=None)
@given(cases())
def test_matches_oracle(case):
    X, edges = case
    np.testing.assert_array_equal(kernels.count_numeric(X, edges), ref.count_numeric(X, edges))


@settings(max_examples=100, deadline=None)
@given(cases())
def test_counter_matches_oracle_and_accumulates(case):
    X, edges = case
    flat, eoff = kernels.flatten_edges(edges)
    n = len(edges)
    coff = eoff[:-1] + 2 * np.arange(n, dtype=np.int64)
    counts = np.zeros(int(eoff[-1]) + 2 * n, dtype=np.int64)
    counter = kernels.NumericCounter(
        flat, kernels.edges_as_float32(flat), eoff, np.arange(n, dtype=np.int64), coff, counts
    )
    update = counter.update_f32 if X.dtype == np.float32 else counter.update_f64
    assert update(X) == X.shape[0]
    update(X)
    np.testing.assert_array_equal(counts, 2 * ref.count_numeric(X, edges))
    # try_update takes the same matrix, and each of its rows as a 1-D array.
    assert counter.try_update(X) == X.shape[0]
    for row in X[:20]:
        assert counter.try_update(row) == 1
    expect = 3 * ref.count_numeric(X, edges) + ref.count_numeric(X[:20], edges)
    np.testing.assert_array_equal(counts, expect)


def _counter(edges, n_cols=None, **kw):
    flat, eoff = kernels.flatten_edges(edges)
    n = len(edges)
    coff = eoff[:-1] + 2 * np.arange(n, dtype=np.int64)
    counts = np.zeros(int(eoff[-1]) + 2 * n, dtype=np.int64)
    cols = np.arange(n, dtype=np.int64)
    counter = kernels.NumericCounter(
        flat, kernels.edges_as_float32(flat), eoff, cols, coff, counts, n_cols=n_cols, **kw
    )
    return counter, counts


@settings(max_examples=100, deadline=None)
@given(cases())
def test_float64_rows_rounded_to_float32_match_the_float32_kernel(case):
    X, edges = case
    X64 = X.astype(np.float64)
    with np.errstate(over="ignore"):
        X32 = X64.astype(np.float32)
    counter, counts = _counter(edges, float64="round")
    assert counter.try_update(X64) == X.shape[0]
    np.testing.assert_array_equal(counts, ref.count_numeric(X32, edges))
    counter, counts = _counter(edges, float64="count")
    assert counter.try_update(X64) == X.shape[0]
    np.testing.assert_array_equal(counts, ref.count_numeric(X64, edges))


def test_try_update_declines_what_it_cannot_count_as_is():
    edges = [np.array([0.0, 1.0]), np.array([2.0])]
    counter, counts = _counter(edges)
    X = np.array([[0.5, 3.0], [np.nan, 1.0]], dtype=np.float32)
    declined = [
        None,
        [0.5, 3.0],  # not a buffer
        np.zeros((2, 2), np.int32),  # integers: the caller converts them
        X.astype(np.float16),
        X.astype(">f4"),  # not native byte order
        X[:, :1],  # too narrow
        np.zeros((2, 3), np.float32),  # too wide: not this profile's rows
        np.zeros((1, 1, 2), np.float32),
        np.float32(1.0),  # 0-D
        b"\x00" * 8,
    ]
    for bad in declined:
        assert counter.try_update(bad) == -1, bad
    assert not counts.any()
    assert _counter(edges, float64="decline")[0].try_update(X.astype(np.float64)) == -1
    # A float16 profile rounds float32 rows itself: the counter must not count them as they are.
    only64 = _counter(edges, float32="decline")[0]
    assert only64.try_update(X) == -1
    assert only64.try_update(X.astype(np.float64)) == 2
    # Read-only input is fine: the kernel only reads it.
    X.setflags(write=False)
    assert counter.try_update(X) == 2
    assert counter.try_update(memoryview(X[0])) == 1
    np.testing.assert_array_equal(counts, ref.count_numeric(X, edges) + ref.count_numeric(X[:1], edges))


def test_update_refuses_the_wrong_dtype_with_a_message():
    counter, counts = _counter([np.array([0.0])])
    with pytest.raises(ValueError, match="expected a 2-D float32 array, got a 2-D array of float64"):
        counter.update_f32(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="got a 1-D array of float64"):
        counter.update_f64(np.zeros(1))
    with pytest.raises(ValueError, match="4-byte items"):
        counter.update_f32(np.zeros((2, 1), np.int32))
    with pytest.raises(ValueError, match="at least 1 columns"):
        counter.update_f64(np.zeros((2, 0)))
    with pytest.raises(TypeError):
        counter.update_f64([[1.0]])
    with pytest.raises(ValueError, match="float64 must be one of"):
        _counter([np.array([0.0])], float64="cast")
    with pytest.raises(ValueError, match="float32 must be 'count' or 'decline'"):
        _counter([np.array([0.0])], float32="round")
    with pytest.raises(ValueError, match="n_cols=0"):
        _counter([np.array([0.0])], n_cols=0)
    assert not counts.any()


def test_n_cols_picks_the_row_width_try_update_takes():
    # Features read columns 0 and 2 of 4-wide rows (column 1 and 3: another kind).
    edges = [np.array([0.0]), np.array([0.0])]
    flat, eoff = kernels.flatten_edges(edges)
    counts = np.zeros(6, dtype=np.int64)
    counter = kernels.NumericCounter(
        flat, kernels.edges_as_float32(flat), eoff, np.array([0, 2], np.int64),
        np.array([0, 3], np.int64), counts, n_cols=4,
    )  # fmt: skip
    assert counter.n_cols == 4
    assert counter.try_update(np.array([-1.0, 9.0, 1.0], np.float32)) == -1
    assert counter.try_update(np.array([-1.0, 9.0, 1.0, 9.0], np.float32)) == 1
    assert counts.tolist() == [1, 0, 0, 0, 1, 0]


def test_values_on_edges_go_up():
    X = np.array([[1.0], [2.0], [np.nextafter(1.0, 0)], [np.inf], [-np.inf], [np.nan]])
    counts = kernels.count_numeric(X, [np.array([1.0, 2.0])])
    # bins (-inf,1) [1,2) [2,inf) then missing
    assert counts.tolist() == [2, 1, 2, 1]


def test_float32_rounding_of_edges():
    # 0.1 is not a float32; float32(0.1) > 0.1 must land above the edge,
    # the float32 just below it must not.
    e = 0.1
    x = np.array([[np.float32(e)], [np.nextafter(np.float32(e), np.float32(0))]], np.float32)
    assert kernels.count_numeric(x, [np.array([e])]).tolist() == [1, 1, 0]
    big = np.array([[np.float32(3.4e38)], [np.float32(np.inf)]], np.float32)
    assert kernels.count_numeric(big, [np.array([3.5e38])]).tolist() == [1, 1, 0]


def test_many_bins_large_block():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5000, 3))
    edges = [np.sort(rng.normal(size=k)) for k in (1, 64, 500)]
    np.testing.assert_array_equal(kernels.count_numeric(X, edges), ref.count_numeric(X, edges))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F", "strided", "reversed"])
def test_many_features_are_copied_out_in_groups(layout, dtype):
    # More features than one gather group (16), a last group of 5, every edge count
    # from none to the binary-search path, and a feature read twice: each must see
    # its own column whether the block is copied out by rows or by columns.
    rng = np.random.default_rng(7)
    n_feat, n_rows = 37, 700
    X = rng.normal(size=(n_rows, n_feat)).astype(dtype)
    X[rng.random(X.shape) < 0.05] = np.nan
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "strided":
        X = np.repeat(np.repeat(X, 2, axis=0), 3, axis=1)[::2, ::3]
    elif layout == "reversed":
        X = np.ascontiguousarray(X[::-1, ::-1])[::-1, ::-1]
    edges = [np.sort(rng.normal(size=(j * 7) % 71)) for j in range(n_feat)]
    cols = np.array([*range(n_feat), 3], dtype=np.int64)
    edges.append(edges[3])
    flat, eoff = kernels.flatten_edges(edges)
    coff = eoff[:-1] + 2 * np.arange(cols.size, dtype=np.int64)
    counts = np.zeros(int(eoff[-1]) + 2 * cols.size, dtype=np.int64)
    if dtype == np.float32:
        flat = kernels.edges_as_float32(flat)
    from runtime._native import _histogram

    _histogram.count_numeric(X, cols, flat, eoff, coff, counts)
    np.testing.assert_array_equal(counts, ref.count_numeric(X[:, cols], edges))


def test_column_selection_and_layout_checks():
    from runtime._native import _histogram

    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    edges = np.array([5.0])
    eoff = np.array([0, 1], dtype=np.int64)
    counts = np.zeros(3, dtype=np.int64)
    _histogram.count_numeric(X, np.array([2], np.int64), edges, eoff, np.zeros(1, np.int64), counts)
    assert counts.tolist() == [1, 3, 0]  # column 2 is 2, 5, 8, 11
    with pytest.raises(ValueError, match="reads column 3"):
        _histogram.count_numeric(X, np.array([3], np.int64), edges, eoff, np.zeros(1, np.int64), counts)
    with pytest.raises(ValueError, match="outside counts"):
        _histogram.count_numeric(X, np.array([0], np.int64), edges, eoff, np.array([2], np.int64), counts)
    with pytest.raises(ValueError, match=r"expected a 2-D float32 array \(the edges' dtype\)"):
        _histogram.count_numeric(X, np.array([0], np.int64), edges.astype(np.float32), eoff,
                                 np.zeros(1, np.int64), counts)  # fmt: skip


def test_rejects_bad_edges():
    with pytest.raises(ValueError, match="strictly increasing"):
        kernels.count_numeric(np.zeros((1, 1)), [np.array([2.0, 1.0])])
    with pytest.raises(ValueError, match="finite"):
        kernels.count_numeric(np.zeros((1, 1)), [np.array([np.nan])])


def test_integer_input_is_binned_as_float64():
    X = np.array([[0], [1], [2]], dtype=np.int64)
    assert kernels.count_numeric(X, [np.array([1.0])]).tolist() == [1, 2, 0]


def test_simd_target_names_a_clone():
    from runtime._native import _histogram

    assert _histogram.simd_target() in ("avx512f", "avx2", "default")
