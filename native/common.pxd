# Shared types and inline helpers for the drift kernels. Header-only: cimporting
# this file adds no runtime import.
from libc.stdint cimport int32_t, int64_t

# Counts are int64 everywhere: a replica serving 1e6 rows/s per feature takes
# ~290,000 years to overflow one bin, and Prometheus exports them unchanged.
ctypedef int64_t count_t          # numpy: np.int64
ctypedef int32_t bin_t            # per-block scratch bin index

ctypedef fused floating_in:
    float
    double

# The element type of data read through a raw pointer, when it may differ from
# the type it is compared in (float64 rows binned as float32).
ctypedef fused floating_src:
    float
    double

cdef enum:
    # Rows per block: 256 values of one feature (1-2 KiB) plus their bin indices
    # stay in L1 while every feature of the block is binned.
    BLOCK_ROWS = 256
    # Features whose block values are copied out together (16 x 272 float64 is
    # 34 KiB of stack): a C-order block is then read row by row, in order.
    GATHER_FEATURES = 16
    # Their buffers start 256 + 16 values apart, not 256: at a 1 KiB stride every
    # fourth buffer maps to the same L1 sets and the copy stalls on conflicts.
    GATHER_STRIDE = BLOCK_ROWS + 16
    # Up to this many inner edges a block is binned by one vectorized
    # count of (x >= e) per edge (~0.08 ns per value and edge); above it a
    # branch-free binary search per value plus a scatter is cheaper (the two
    # cross near 100 edges on the development machine).
    LINEAR_MAX_EDGES = 64
    # Below this many rows the per-edge loops cost more in loop overhead than
    # they save: a per-request row takes the binary search instead.
    SMALL_BLOCK_ROWS = 16


cdef inline Py_ssize_t upper_bound(const floating_in* edges, Py_ssize_t n,
                                   floating_in x) noexcept nogil:
    """Number of edges <= x, i.e. np.searchsorted(edges, x, side="right").

    The select compiles to a conditional move: on random data a branchy search
    mispredicts every other level.  NaN compares false everywhere and gives 0;
    callers route NaN to the missing bucket before using the result.
    """
    cdef const floating_in* base = edges
    cdef Py_ssize_t half
    if n == 0:
        return 0
    while n > 1:
        half = n >> 1
        base = base + half if base[half] <= x else base
        n -= half
    return (base - edges) + (base[0] <= x)


cdef enum:
    # What a buffer holds, as the kernels read it (buffer_float_kind).
    NOT_FLOAT = 0
    FLOAT32 = 1
    FLOAT64 = 2


cdef inline bint _little_endian() noexcept nogil:
    cdef int one = 1
    return (<char*>&one)[0] == 1


cdef inline int buffer_float_kind(const Py_buffer* view) noexcept:
    """FLOAT32 or FLOAT64 for a buffer of native-order C floats or doubles, else NOT_FLOAT
    (whatever its format string spells: '<f', '=d', '@f' ...)."""
    cdef const char* fmt = view.format
    cdef char code
    cdef bint little = _little_endian()
    if fmt == NULL:
        return NOT_FLOAT  # plain bytes
    code = fmt[0]
    if code == b'@' or code == b'=' or (code == b'<' and little) or (
            (code == b'>' or code == b'!') and not little):
        fmt += 1
        code = fmt[0]
    if code == 0 or fmt[1] != 0:
        return NOT_FLOAT
    if code == b'f' and view.itemsize == sizeof(float):
        return FLOAT32
    if code == b'd' and view.itemsize == sizeof(double):
        return FLOAT64
    return NOT_FLOAT
