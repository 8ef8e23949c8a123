# Columns of a table into the rows of one tensor.
#
# Batch scoring reads a table column by column (Arrow, Parquet) and most models take a
# row-major [rows, features] matrix. Writing each column down a strided column of the
# matrix touches one cache line per value and cost `mlrt predict` more than a small
# model's own run (about 4 ms for 65,536 rows of 20 float32 columns). Here the rows go
# in blocks that stay in L1: each column is read once, in order, and each block of the
# matrix is written while its lines are hot.
#
# Only a copy: the columns already have the matrix's dtype (runtime/model_columns.py
# converts the others by the one rule first). The copy is of raw words of the dtype's
# size, so one fused routine serves every numeric dtype.
# tests/native/test_columns_kernel.py holds it to numpy's column assignment.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t

import numpy as np

ctypedef fused word:
    uint8_t
    uint16_t
    uint32_t
    uint64_t

# Rows per block: BLOCK_ROWS x up to a few dozen columns of 8-byte words stays in L1.
cdef enum:
    BLOCK_ROWS = 128


cdef void _interleave(const uintptr_t[::1] sources, word[:, ::1] out) noexcept nogil:
    cdef Py_ssize_t n = out.shape[0], k = out.shape[1]
    cdef Py_ssize_t start, stop, i, j
    cdef const word* src
    start = 0
    while start < n:
        stop = min(start + BLOCK_ROWS, n)
        for j in range(k):
            src = <const word*>sources[j]
            for i in range(start, stop):
                out[i, j] = src[i]
        start = stop


def interleave(list columns, out):
    """Copy the 1-D `columns` into the columns of `out`, a C-contiguous [rows, len(columns)]
    array of the columns' dtype: `out[:, j] = columns[j]` for every j, without the GIL.

    Raises ValueError when a column's length, dtype or layout does not fit."""
    if not isinstance(out, np.ndarray) or out.ndim != 2 or not out.flags.c_contiguous:
        raise ValueError("out must be a C-contiguous 2-D numpy array")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    cdef Py_ssize_t n = out.shape[0], k = out.shape[1], j
    if len(columns) != k:
        raise ValueError(f"{len(columns)} columns for a matrix of {k}")
    dtype = out.dtype
    if dtype.kind not in "fiub" or dtype.itemsize not in (1, 2, 4, 8):
        raise ValueError(f"cannot interleave columns of dtype {dtype}")
    cdef uintptr_t[::1] sources = np.empty(k, dtype=np.uintp)
    for j in range(k):
        col = columns[j]
        if not isinstance(col, np.ndarray) or col.ndim != 1 or col.shape[0] != n:
            raise ValueError(f"column {j} is not a 1-D array of {n} values")
        if col.dtype != dtype:
            raise ValueError(f"column {j} is {col.dtype}, the matrix {dtype}")
        if not col.flags.c_contiguous:
            raise ValueError(f"column {j} is not contiguous")
        sources[j] = col.__array_interface__["data"][0]
    if n == 0 or k == 0:
        return
    # `columns` holds the arrays, so their memory outlives the copy.
    cdef uint8_t[:, ::1] w1
    cdef uint16_t[:, ::1] w2
    cdef uint32_t[:, ::1] w4
    cdef uint64_t[:, ::1] w8
    size = dtype.itemsize
    if size == 1:
        w1 = out.view(np.uint8)
        with nogil:
            _interleave(sources, w1)
    elif size == 2:
        w2 = out.view(np.uint16)
        with nogil:
            _interleave(sources, w2)
    elif size == 4:
        w4 = out.view(np.uint32)
        with nogil:
            _interleave(sources, w4)
    else:
        w8 = out.view(np.uint64)
        with nogil:
            _interleave(sources, w8)
