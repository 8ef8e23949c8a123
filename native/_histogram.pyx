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


from cpython.buffer cimport PyBUF_RECORDS_RO, PyBuffer_Release, PyObject_GetBuffer
from cpython.dict cimport PyDict_GetItem
from cpython.exc cimport PyErr_Clear
from cpython.object cimport PyObject

from common cimport (
    BLOCK_ROWS,
    FLOAT32,
    FLOAT64,
    GATHER_FEATURES,
    GATHER_STRIDE,
    LINEAR_MAX_EDGES,
    NOT_FLOAT,
    SMALL_BLOCK_ROWS,
    bin_t,
    buffer_float_kind,
    count_t,
    floating_in,
    floating_src,
    int64_t,
    upper_bound,
)


cdef extern from "Python.h":
    # PyObject_GetBuffer that leaves a failure to the caller (cpython.buffer's
    # declaration raises it): try_update answers -1 for what is not a buffer.
    int _get_buffer_or_fail "PyObject_GetBuffer" (object obj, Py_buffer* view,
                                                  int flags) noexcept


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


cdef extern from "_count_ge.h":
    # g[0] = #(x == x), g[1 + t] = #(x >= edges[t]) over a contiguous block, in the
    # widest SIMD the CPU has (see the header).
    void count_ge_f32 "mlrt_count_ge_f32" (const float* x, Py_ssize_t m, const float* edges,
                                            Py_ssize_t k, int64_t* g) noexcept nogil
    void count_ge_f64 "mlrt_count_ge_f64" (const double* x, Py_ssize_t m, const double* edges,
                                             Py_ssize_t k, int64_t* g) noexcept nogil
    const char* mlrt_simd_target() noexcept


def simd_target():
    """The instruction set the numeric kernel counts with on this CPU: "avx512f",
    "avx2" or "default" (whatever the compiler targets by default)."""
    return (<bytes>mlrt_simd_target()).decode("ascii")


cdef int _count_rows(const floating_src* X, Py_ssize_t n_rows, Py_ssize_t s0, Py_ssize_t s1,
                     const int64_t[::1] cols, const floating_in[::1] edges,
                     const int64_t[::1] edge_offsets, const int64_t[::1] count_offsets,
                     count_t[::1] counts) except -1 nogil:
    # X: IN, n_rows rows at byte strides s0 (rows) and s1 (columns); each value
    # is converted to the edges' type before it is compared (float64 data with
    # float32 edges: rounded to nearest, as numpy's astype(float32) does).  The
    # caller has checked that every cols[j] is a column of X, and the table and
    # count offsets (_check_layout).  X is a raw pointer because acquiring a
    # typed memoryview costs ~0.1 us, as much as binning a whole request row;
    # the tables stay memoryviews, so the bounds-checked build checks them.
    cdef floating_in xs[GATHER_FEATURES * GATHER_STRIDE]
    cdef floating_in* xbuf
    cdef Py_ssize_t col_bytes[GATHER_FEATURES]
    cdef bin_t bins[BLOCK_ROWS]
    cdef int64_t ge[LINEAR_MAX_EDGES + 1]
    cdef const char* base = <const char*>X
    cdef Py_ssize_t n_feat = cols.shape[0]
    cdef Py_ssize_t start, m, r, t, j, jj, g0, gn, k, eo, co, slot
    cdef bint by_rows
    cdef const char* row
    cdef const char* col
    cdef const char* src
    cdef floating_in x
    cdef int64_t prev, valid
    if n_rows < SMALL_BLOCK_ROWS:
        # A request's few rows: one branch-free search per value, straight into
        # the counts.  No block scratch, no per-edge passes.
        for r in range(n_rows):
            row = base + r * s0
            for j in range(n_feat):
                x = <floating_in>(<const floating_src*>(row + cols[j] * s1))[0]
                eo = edge_offsets[j]
                k = edge_offsets[j + 1] - eo
                if x != x:
                    slot = k + 1
                elif k == 0:
                    slot = 0  # and no search: &edges[eo] may point past the end
                else:
                    slot = upper_bound(&edges[eo], k, x)
                counts[count_offsets[j] + slot] += 1
        return 0
    # Rows in blocks, features inside a block: the block is read from memory
    # once, and stays in L1/L2 while each of its features is counted.  The
    # values of up to GATHER_FEATURES features are first copied out, one
    # contiguous run per feature, in the order the input lies in memory: row
    # by row for a row-major (C-order) matrix, column by column otherwise.
    # Reading a C-order block column by column instead costs as much as
    # counting it (a strided load per value, the prefetcher a step behind).
    by_rows = (s1 if s1 >= 0 else -s1) <= (s0 if s0 >= 0 else -s0)
    start = 0
    while start < n_rows:
        m = min(<Py_ssize_t>BLOCK_ROWS, n_rows - start)
        row = base + start * s0
        g0 = 0
        while g0 < n_feat:
            gn = min(<Py_ssize_t>GATHER_FEATURES, n_feat - g0)
            for jj in range(gn):
                col_bytes[jj] = cols[g0 + jj] * s1
            if by_rows and gn > 1:
                for r in range(m):
                    src = row + r * s0
                    for jj in range(gn):
                        xs[jj * GATHER_STRIDE + r] = <floating_in>(
                            <const floating_src*>(src + col_bytes[jj]))[0]
            else:
                for jj in range(gn):
                    col = row + col_bytes[jj]
                    for r in range(m):
                        xs[jj * GATHER_STRIDE + r] = <floating_in>(<const floating_src*>(col + r * s0))[0]
            for jj in range(gn):
                j = g0 + jj
                xbuf = &xs[jj * GATHER_STRIDE]
                eo = edge_offsets[j]
                k = edge_offsets[j + 1] - eo
                co = count_offsets[j]
                # k == 0 never takes the search: &edges[eo] would point past the end.
                if k == 0 or (k <= LINEAR_MAX_EDGES and m >= SMALL_BLOCK_ROWS):
                    # No scatter: with G_t = #(x >= e_t), bin 0 holds the non-NaN
                    # values minus G_0, bin b holds G_(b-1) - G_b and bin k holds
                    # G_(k-1) (edges are sorted).  Each G_t is a compare-and-add
                    # reduction that vectorizes; a scatter into the same
                    # counter would instead serialize on store-to-load forwarding.
                    # NaN fails every comparison, so it lands only in "missing".
                    # (The edges of the feature are edges[eo : eo + k], checked by
                    # _check_layout; k == 0 passes no pointer into them.)
                    if floating_in is float:
                        count_ge_f32(xbuf, m, &edges[eo] if k else NULL, k, ge)
                    else:
                        count_ge_f64(xbuf, m, &edges[eo] if k else NULL, k, ge)
                    valid = ge[0]
                    prev = valid
                    for t in range(k):
                        counts[co + t] += prev - ge[1 + t]
                        prev = ge[1 + t]
                    counts[co + k] += prev
                    counts[co + k + 1] += m - valid
                else:
                    for r in range(m):
                        x = xbuf[r]
                        bins[r] = <bin_t>(k + 1) if x != x else <bin_t>upper_bound(&edges[eo], k, x)
                    for r in range(m):
                        counts[co + bins[r]] += 1
            g0 += gn
        start += m
    return 0


# What a buffer holds, as far as the numeric kernels care.
cdef str _describe(const Py_buffer* view):
    cdef int kind = buffer_float_kind(view)
    if kind != NOT_FLOAT:
        what = "float32" if kind == FLOAT32 else "float64"
    else:
        fmt = (<bytes>view.format).decode("ascii", "replace") if view.format != NULL else "B"
        what = f"{view.itemsize}-byte items of buffer format {fmt!r}"
    return f"a {view.ndim}-D array of {what}"


cdef int _get_matrix(object X, Py_buffer* view, int want, str why="") except -1:
    """Take X's buffer into view if X is a 2-D matrix of `want` (FLOAT32 or FLOAT64);
    otherwise release it and raise ValueError.  The caller releases it."""
    PyObject_GetBuffer(X, view, PyBUF_RECORDS_RO)
    if view.ndim != 2 or buffer_float_kind(view) != want:
        message = (f"expected a 2-D {'float32' if want == FLOAT32 else 'float64'} array{why}, "
                   f"got {_describe(view)}")
        PyBuffer_Release(view)
        raise ValueError(message)
    return 0


def count_numeric(object X, const int64_t[::1] cols,
                  const floating_in[::1] edges, const int64_t[::1] edge_offsets,
                  const int64_t[::1] count_offsets, count_t[::1] counts):
    """Add the bin counts of X (rows x columns) into counts (IN and OUT).

    X: IN, a 2-D float32 or float64 array (any object with the buffer
    protocol), any order or strides.  edges: IN, the sorted inner edges of all
    features concatenated, same dtype as X (a float32 X needs its edges rounded
    up to float32, see runtime.monitor.kernels).  edge_offsets: IN,
    n_features + 1.  cols, count_offsets: IN, n_features.
    """
    cdef Py_buffer view
    _get_matrix(X, &view, FLOAT32 if floating_in is float else FLOAT64, " (the edges' dtype)")
    try:
        _check_layout(view.shape[1], cols, edge_offsets, edges.shape[0], count_offsets,
                      counts.shape[0])
        with nogil:
            _count_rows(<const floating_in*>view.buf, view.shape[0], view.strides[0],
                        view.strides[1], cols, edges, edge_offsets, count_offsets, counts)
    finally:
        PyBuffer_Release(&view)


# Releasing and retaking the GIL costs about as much as binning a few rows; a
# per-request call keeps it.
cdef Py_ssize_t GIL_RELEASE_ROWS = 64

# NumericCounter(float32=..., float64=...): what try_update does with such rows.
cdef enum:
    COUNT = 0    # against the edges of the rows' own dtype
    ROUND = 1    # float64 only: rounded to float32, against edges32
    DECLINE = 2  # not at all: try_update returns -1
cdef dict _POLICIES = {"count": COUNT, "round": ROUND, "decline": DECLINE}


cdef int _count_kind(const char* buf, int kind, bint round32, Py_ssize_t n_rows, Py_ssize_t s0,
                     Py_ssize_t s1, const int64_t[::1] cols, const float[::1] edges32,
                     const double[::1] edges64, const int64_t[::1] edge_offsets,
                     const int64_t[::1] count_offsets, count_t[::1] counts) except -1 nogil:
    # _count_rows for rows of `kind`: float32 against edges32; float64 against edges64, or
    # rounded to float32 against edges32 (round32).
    if kind == FLOAT32:
        _count_rows(<const float*>buf, n_rows, s0, s1, cols, edges32, edge_offsets, count_offsets, counts)
    elif round32:
        _count_rows(<const double*>buf, n_rows, s0, s1, cols, edges32, edge_offsets, count_offsets, counts)
    else:
        _count_rows(<const double*>buf, n_rows, s0, s1, cols, edges64, edge_offsets, count_offsets, counts)
    return 0


cdef class NumericCounter:
    """Per-request fast path: the layout is checked once, an update takes only X.

    X is read through the buffer protocol (no typed memoryview is built per
    call: that costs ~0.1 us, as much as binning a request's row), and the
    edges, offsets and target counts are held here.
    """
    cdef const double[::1] edges64
    cdef const float[::1] edges32
    cdef const int64_t[::1] cols
    cdef const int64_t[::1] edge_offsets
    cdef const int64_t[::1] count_offsets
    cdef count_t[::1] counts
    cdef Py_ssize_t min_cols
    cdef readonly Py_ssize_t n_cols
    cdef int float32_policy
    cdef int float64_policy

    def __init__(self, const double[::1] edges64, const float[::1] edges32,
                 const int64_t[::1] edge_offsets, const int64_t[::1] cols,
                 const int64_t[::1] count_offsets, count_t[::1] counts, *,
                 n_cols=None, str float32="count", str float64="count"):
        """n_cols: the row width try_update() accepts (default: the last column
        read + 1).  float32, float64: what try_update() does with rows of that
        dtype: "count" them (float32 against edges32, float64 against edges64),
        "round" float64 rows to float32 first and count them against edges32
        (what a float32 model is fed), or "decline" them (return -1: the caller
        rounds them its own way, e.g. to float16).
        """
        cdef Py_ssize_t j
        if edges32.shape[0] != edges64.shape[0]:
            raise ValueError("edges32 and edges64 differ in length")
        if float32 not in ("count", "decline"):
            raise ValueError(f"float32 must be 'count' or 'decline', got {float32!r}")
        if float64 not in _POLICIES:
            raise ValueError(f"float64 must be one of {sorted(_POLICIES)}, got {float64!r}")
        self.min_cols = 0
        for j in range(cols.shape[0]):
            self.min_cols = max(self.min_cols, cols[j] + 1)
        _check_layout(self.min_cols, cols, edge_offsets, edges64.shape[0], count_offsets,
                      counts.shape[0])
        self.n_cols = self.min_cols if n_cols is None else n_cols
        if self.n_cols < self.min_cols:
            raise ValueError(f"n_cols={self.n_cols} but the features read columns up to "
                             f"{self.min_cols - 1}")
        self.float32_policy = _POLICIES[float32]
        self.float64_policy = _POLICIES[float64]
        # A cdef class keeps each typed argument in its own attribute: this run of
        # assignments looks like _stage.Stager's (a clone detector pairs them), no logic.
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

    cdef Py_ssize_t _count(self, const Py_buffer* view, int kind, bint round32) except -1:
        # view: 1-D (one row) or 2-D of `kind`, at least min_cols wide (the callers check).
        # round32: float64 values are rounded to float32 and compared with edges32.
        cdef Py_ssize_t n_rows = 1 if view.ndim == 1 else view.shape[0]
        cdef Py_ssize_t s0 = 0 if view.ndim == 1 else view.strides[0]
        cdef Py_ssize_t s1 = view.strides[view.ndim - 1]
        cdef const char* buf = <const char*>view.buf
        if n_rows < GIL_RELEASE_ROWS:
            _count_kind(buf, kind, round32, n_rows, s0, s1, self.cols, self.edges32, self.edges64,
                        self.edge_offsets, self.count_offsets, self.counts)
        else:
            with nogil:
                _count_kind(buf, kind, round32, n_rows, s0, s1, self.cols, self.edges32, self.edges64,
                            self.edge_offsets, self.count_offsets, self.counts)
        return n_rows

    cdef Py_ssize_t _update(self, object X, int want) except -1:
        cdef Py_buffer view
        _get_matrix(X, &view, want)
        try:
            if view.shape[1] < self.min_cols:
                raise ValueError(f"expected at least {self.min_cols} columns, got {view.shape[1]}")
            return self._count(&view, want, False)
        finally:
            PyBuffer_Release(&view)

    def update_f32(self, X):
        """Count the rows of X (IN: 2-D float32, any strides) against edges32; returns
        how many."""
        return self._update(X, FLOAT32)

    def update_f64(self, X):
        """Count the rows of X (IN: 2-D float64, any strides) against edges64; returns
        how many."""
        return self._update(X, FLOAT64)

    def try_update(self, X):
        """Count X if it is one row (1-D) or a matrix (2-D) of float32 or float64,
        exactly n_cols wide, and return its number of rows; otherwise count
        nothing and return -1, without an exception (the caller converts X and
        counts it another way).  Each dtype as the counter's policy for it says.

        One call, nothing allocated: the per-request path of a numeric profile.
        """
        cdef Py_buffer view
        cdef int kind
        if _get_buffer_or_fail(X, &view, PyBUF_RECORDS_RO) != 0:
            PyErr_Clear()  # not a buffer, or not one we can read: the caller's slow path
            return -1
        try:
            kind = buffer_float_kind(&view)
            if (kind == NOT_FLOAT or view.ndim < 1 or view.ndim > 2
                    or view.shape[view.ndim - 1] != self.n_cols
                    or (self.float32_policy if kind == FLOAT32 else self.float64_policy) == DECLINE):
                return -1
            return self._count(&view, kind, kind == FLOAT64 and self.float64_policy == ROUND)
        finally:
            PyBuffer_Release(&view)


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


_LEVELS_MISMATCH = "integer codes take int64 levels; float codes take float64 levels"


ctypedef fused code_t:
    int64_t
    float
    double


def count_levels(const code_t[:, :] X, const int64_t[::1] cols,
                 const level_t[::1] levels, const int64_t[::1] level_offsets,
                 const int64_t[::1] count_offsets, count_t[::1] counts):
    """Categorical counts of numeric codes.  levels: IN, sorted per feature.

    Integer codes (int64) take int64 levels; codes stored as floats (float32,
    float64) take float64 levels, and NaN is missing (slot k + 1).
    """
    if code_t is int64_t:
        if level_t is double:
            raise TypeError(_LEVELS_MISMATCH)
    elif level_t is int64_t:
        raise TypeError(_LEVELS_MISMATCH)
    _check_layout(X.shape[1], cols, level_offsets, levels.shape[0], count_offsets,
                  counts.shape[0])
    cdef Py_ssize_t i, j, c, lo, k, co, n_rows = X.shape[0]
    cdef level_t x
    with nogil:
        for j in range(cols.shape[0]):
            c = cols[j]
            lo = level_offsets[j]
            k = level_offsets[j + 1] - lo
            co = count_offsets[j]
            for i in range(n_rows):
                x = <level_t>X[i, c]
                if level_t is double:
                    if x != x:
                        counts[co + k + 1] += 1
                        continue
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
