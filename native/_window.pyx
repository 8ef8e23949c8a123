"""Exact count arithmetic for sliding windows and merging replicas."""

from common cimport count_t


def sum_slots(const count_t[:, ::1] ring, count_t[::1] out):
    """out (OUT) = sum of the ring's sub-window rows: a sliding window's counts."""
    cdef Py_ssize_t s, i, n = out.shape[0]
    if ring.shape[1] != n:
        raise ValueError(f"ring rows have {ring.shape[1]} slots, out has {n}")
    with nogil:
        for i in range(n):
            out[i] = 0
        for s in range(ring.shape[0]):
            for i in range(n):
                out[i] += ring[s, i]


def add_into(count_t[::1] dst, const count_t[::1] src):
    """dst (IN and OUT) += src: merging counts is exact integer addition."""
    cdef Py_ssize_t i, n = dst.shape[0]
    if src.shape[0] != n:
        raise ValueError(f"cannot add counts of length {src.shape[0]} into {n}")
    with nogil:
        for i in range(n):
            dst[i] += src[i]
