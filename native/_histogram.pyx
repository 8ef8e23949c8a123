"""Bin-count kernels: numeric (quantile edges) and categorical (level tables).

Counts layout, shared with runtime/monitor: one flat int64 array; feature j owns
the slots counts[count_offsets[j] : count_offsets[j] + k_j + 2]:
  numeric, k_j inner edges:   bins 0..k_j  (bin b = #edges <= x), then missing (NaN)
  categorical, k_j levels:    levels 0..k_j-1, then "other" (unseen), then missing
Feature j reads column cols[j] of the input, so one call can bin any subset of
the columns of a mixed matrix without copying it.

Every entry point checks shapes and offsets while holding the GIL, so the
nogil loops cannot write out of bounds even with bounds checks compiled out.
Nothing is allocated per call: the scratch of a block lives on the stack.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject
from libc.stdint cimport int32_t

from common cimport (
    BLOCK_ROWS,
    LINEAR_MAX_EDGES,
    SMALL_BLOCK_ROWS,
    bin_t,
    count_t,
    floating_in,
    int64_t,
    upper_bound,
)


cdef int _check_layout(Py_ssize_t n_cols, const int64_t[::1] cols,
                       const int64_t[::1] table_offsets, Py_ssize_t table_len,
                       const int64_t[::1] count_offsets,
                       Py_ssize_t n_counts) except -1:
    cdef Py_ssize_t n_feat = cols.shape[0], j, k, lo, hi
    if table_offsets.shape[0] != n_feat + 1 or count_offsets.shape[0] != n_feat:
        raise ValueError(
            f"{n_feat} features need {n_feat + 1} table offsets and {n_feat} count "
            f"offsets, got {table_offsets.shape[0]} and {count_offsets.shape[0]}")
    for j in range(n_feat):
        if cols[j] < 0 or cols[j] >= n_cols:
            raise ValueError(f"feature {j} reads column {cols[j]}, input has {n_cols} columns")
        lo = table_offsets[j]
        hi = table_offsets[j + 1]
        if lo < 0 or hi < lo or hi > table_len:
            raise ValueError(f"feature {j}: table offsets [{lo}, {hi}) outside 0..{table_len}")
        k = hi - lo
        if count_offsets[j] < 0 or count_offsets[j] + k + 2 > n_counts:
            raise ValueError(
                f"feature {j}: slots [{count_offsets[j]}, {count_offsets[j] + k + 2}) "
                f"outside counts of length {n_counts}")
    return 0


cdef inline bin_t _count_ge(const floating_in* x, Py_ssize_t m, floating_in e,
                           bint not_nan) noexcept nogil:
    # #(x >= e), or #(x == x) with not_nan.  The accumulator is as wide as the
    # data lanes (int32 for float32, int64 for float64) so the compare mask
    # adds without widening and the loop vectorizes.
    cdef Py_ssize_t r
    cdef int32_t s32 = 0
    cdef int64_t s64 = 0
    if floating_in is float:
        if not_nan:
            for r in range(m):
                s32 += x[r] == x[r]
        else:
            for r in range(m):
                s32 += x[r] >= e
        return s32
    else:
        if not_nan:
            for r in range(m):
                s64 += x[r] == x[r]
        else:
            for r in range(m):
                s64 += x[r] >= e
        return <bin_t>s64


cdef int _count_numeric(const floating_in[:, :] X, const int64_t[::1] cols,
                        const floating_in[::1] edges, const int64_t[::1] edge_offsets,
                        const int64_t[::1] count_offsets,
                        count_t[::1] counts) except -1 nogil:
    cdef floating_in xbuf[BLOCK_ROWS]
    cdef bin_t bins[BLOCK_ROWS]
    cdef Py_ssize_t n_rows = X.shape[0], n_feat = cols.shape[0]
    cdef Py_ssize_t start, m, r, t, j, c, k, eo, co
    cdef floating_in et, x
    cdef bin_t prev, valid, g
    # Rows in blocks, features inside a block: a C-order matrix is then read
    # once from memory, each block's lines are reused from L1 by every feature.
    start = 0
    while start < n_rows:
        m = min(<Py_ssize_t>BLOCK_ROWS, n_rows - start)
        for j in range(n_feat):
            c = cols[j]
            eo = edge_offsets[j]
            k = edge_offsets[j + 1] - eo
            co = count_offsets[j]
            for r in range(m):
                xbuf[r] = X[start + r, c]
            # k == 0 never takes the search: &edges[eo] would point past the end.
            if k == 0 or (k <= LINEAR_MAX_EDGES and m >= SMALL_BLOCK_ROWS):
                # No scatter: with G_t = #(x >= e_t), bin 0 holds the non-NaN
                # values minus G_0, bin b holds G_(b-1) - G_b and bin k holds
                # G_(k-1) (edges are sorted).  Each G_t is a compare-and-add
                # reduction the compiler vectorizes; a scatter into the same
                # counter would instead serialize on store-to-load forwarding.
                # NaN fails every comparison, so it lands only in "missing".
                valid = _count_ge(xbuf, m, 0, True)
                prev = valid
                for t in range(k):
                    g = _count_ge(xbuf, m, edges[eo + t], False)
                    counts[co + t] += prev - g
                    prev = g
                counts[co + k] += prev
                counts[co + k + 1] += m - valid
            else:
                for r in range(m):
                    x = xbuf[r]
                    bins[r] = <bin_t>(k + 1) if x != x else <bin_t>upper_bound(&edges[eo], k, x)
                for r in range(m):
                    counts[co + bins[r]] += 1
        start += m
    return 0


def count_numeric(const floating_in[:, :] X, const int64_t[::1] cols,
                  const floating_in[::1] edges, const int64_t[::1] edge_offsets,
                  const int64_t[::1] count_offsets, count_t[::1] counts):
    """Add the bin counts of X (rows x columns) into counts (IN and OUT).

    X: IN, float32 or float64, any order or strides.  edges: IN, the sorted
    inner edges of all features concatenated, same dtype as X (a float32 X
    needs its edges rounded up to float32, see runtime.monitor.kernels).
    edge_offsets: IN, n_features + 1.  cols, count_offsets: IN, n_features.
    """
    _check_layout(X.shape[1], cols, edge_offsets, edges.shape[0], count_offsets,
                  counts.shape[0])
    with nogil:
        _count_numeric(X, cols, edges, edge_offsets, count_offsets, counts)


# Releasing and retaking the GIL costs about as much as binning a few rows; a
# per-request call keeps it.
cdef Py_ssize_t GIL_RELEASE_ROWS = 64


cdef class NumericCounter:
    """Per-request fast path: the layout is checked once, update() takes only X.

    A typed-memoryview argument costs ~0.1 us to acquire, so the edges, offsets
    and target counts are held here instead of being passed on every call.
    """
    cdef const double[::1] edges64
    cdef const float[::1] edges32
    cdef const int64_t[::1] cols
    cdef const int64_t[::1] edge_offsets
    cdef const int64_t[::1] count_offsets
    cdef count_t[::1] counts
    cdef Py_ssize_t min_cols

    def __init__(self, const double[::1] edges64, const float[::1] edges32,
                 const int64_t[::1] edge_offsets, const int64_t[::1] cols,
                 const int64_t[::1] count_offsets, count_t[::1] counts):
        cdef Py_ssize_t j
        if edges32.shape[0] != edges64.shape[0]:
            raise ValueError("edges32 and edges64 differ in length")
        self.min_cols = 0
        for j in range(cols.shape[0]):
            self.min_cols = max(self.min_cols, cols[j] + 1)
        _check_layout(self.min_cols, cols, edge_offsets, edges64.shape[0], count_offsets,
                      counts.shape[0])
        self.edges64 = edges64
        self.edges32 = edges32
        self.edge_offsets = edge_offsets
        self.cols = cols
        self.count_offsets = count_offsets
        self.counts = counts

    def retarget(self, count_t[::1] counts):
        """Write into another counts array of the same layout (a new ring slot)."""
        if counts.shape[0] != self.counts.shape[0]:
            raise ValueError(f"counts length {counts.shape[0]} != {self.counts.shape[0]}")
        self.counts = counts

    def update_f32(self, const float[:, :] X):
        if X.shape[1] < self.min_cols:
            raise ValueError(f"expected at least {self.min_cols} columns, got {X.shape[1]}")
        if X.shape[0] < GIL_RELEASE_ROWS:
            _count_numeric(X, self.cols, self.edges32, self.edge_offsets,
                           self.count_offsets, self.counts)
        else:
            with nogil:
                _count_numeric(X, self.cols, self.edges32, self.edge_offsets,
                               self.count_offsets, self.counts)

    def update_f64(self, const double[:, :] X):
        if X.shape[1] < self.min_cols:
            raise ValueError(f"expected at least {self.min_cols} columns, got {X.shape[1]}")
        if X.shape[0] < GIL_RELEASE_ROWS:
            _count_numeric(X, self.cols, self.edges64, self.edge_offsets,
                           self.count_offsets, self.counts)
        else:
            with nogil:
                _count_numeric(X, self.cols, self.edges64, self.edge_offsets,
                               self.count_offsets, self.counts)


ctypedef fused level_t:
    int64_t
    double


cdef inline Py_ssize_t _find_level(const level_t[::1] levels, Py_ssize_t lo,
                                   Py_ssize_t k, level_t x) noexcept nogil:
    # Levels are few and sorted; a miss is the "other" slot k.
    cdef Py_ssize_t hi = lo + k, mid, start = lo
    while lo < hi:
        mid = (lo + hi) >> 1
        if levels[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    if lo < start + k and levels[lo] == x:
        return lo - start
    return k


def count_levels_int(const int64_t[:, :] X, const int64_t[::1] cols,
                     const int64_t[::1] levels, const int64_t[::1] level_offsets,
                     const int64_t[::1] count_offsets, count_t[::1] counts):
    """Categorical counts of integer codes.  levels: IN, sorted per feature."""
    _check_layout(X.shape[1], cols, level_offsets, levels.shape[0], count_offsets,
                  counts.shape[0])
    cdef Py_ssize_t i, j, c, lo, k, co, n_rows = X.shape[0]
    with nogil:
        for j in range(cols.shape[0]):
            c = cols[j]
            lo = level_offsets[j]
            k = level_offsets[j + 1] - lo
            co = count_offsets[j]
            for i in range(n_rows):
                counts[co + _find_level(levels, lo, k, X[i, c])] += 1


def count_levels_float(const floating_in[:, :] X, const int64_t[::1] cols,
                       const double[::1] levels, const int64_t[::1] level_offsets,
                       const int64_t[::1] count_offsets, count_t[::1] counts):
    """Categorical counts of codes stored as floats; NaN is missing."""
    _check_layout(X.shape[1], cols, level_offsets, levels.shape[0], count_offsets,
                  counts.shape[0])
    cdef Py_ssize_t i, j, c, lo, k, co, n_rows = X.shape[0]
    cdef double x
    with nogil:
        for j in range(cols.shape[0]):
            c = cols[j]
            lo = level_offsets[j]
            k = level_offsets[j + 1] - lo
            co = count_offsets[j]
            for i in range(n_rows):
                x = X[i, c]
                if x != x:
                    counts[co + k + 1] += 1
                else:
                    counts[co + _find_level(levels, lo, k, x)] += 1


def count_levels_object(object[:, :] X, const int64_t[::1] cols, list tables,
                        const int64_t[::1] n_levels, const int64_t[::1] count_offsets,
                        count_t[::1] counts):
    """Categorical counts of Python objects (str, bytes, int, ...).

    tables[j] maps each level (a table may hold a str level and its UTF-8 bytes
    under the same slot) to its slot 0..n_levels[j]-1; any other key is "other"
    (n_levels[j]); None and float NaN are missing (n_levels[j] + 1).  Needs the
    GIL: each value is a dict lookup.
    """
    cdef Py_ssize_t n_feat = cols.shape[0], i, j, c, k, co, slot
    cdef dict table
    cdef PyObject* hit
    cdef object v
    if len(tables) != n_feat or n_levels.shape[0] != n_feat or count_offsets.shape[0] != n_feat:
        raise ValueError(f"{n_feat} features need {n_feat} tables, level counts and count offsets")
    for j in range(n_feat):
        if cols[j] < 0 or cols[j] >= X.shape[1]:
            raise ValueError(f"feature {j} reads column {cols[j]}, input has {X.shape[1]} columns")
        if not isinstance(tables[j], dict):
            raise TypeError(f"feature {j}: level table must be a dict")
        k = n_levels[j]
        if k < 0 or count_offsets[j] < 0 or count_offsets[j] + k + 2 > counts.shape[0]:
            raise ValueError(f"feature {j}: {k} levels at offset {count_offsets[j]} do not fit counts")
    for j in range(n_feat):
        c = cols[j]
        table = tables[j]
        k = n_levels[j]
        co = count_offsets[j]
        for i in range(X.shape[0]):
            v = X[i, c]
            if v is None:
                slot = k + 1
            else:
                hit = PyDict_GetItem(table, v)
                if hit is not NULL:
                    slot = <object>hit
                    if slot < 0 or slot >= k:
                        raise ValueError(f"feature {j}: level slot {slot} outside 0..{k - 1}")
                elif isinstance(v, float) and v != v:
                    slot = k + 1
                else:
                    slot = k
            counts[co + slot] += 1
