"""Drift statistics from bin counts (layout: see _histogram.pyx).

Each statistic is computed per feature over the slots offsets[j]:offsets[j+1]
of the expected (reference) and actual (current) counts, missing bucket
included.  Sums are float64: a share is count / total with totals < 2**53.
A feature whose expected or actual total is zero has no distribution: NaN.
"""

from libc.math cimport NAN, log, sqrt

from common cimport count_t, int64_t


cdef int _check(const count_t[::1] expected, const count_t[::1] actual,
                const int64_t[::1] offsets, double[::1] out) except -1:
    cdef Py_ssize_t j, n_feat = out.shape[0]
    if expected.shape[0] != actual.shape[0]:
        raise ValueError(f"expected has {expected.shape[0]} slots, actual {actual.shape[0]}")
    if offsets.shape[0] != n_feat + 1:
        raise ValueError(f"{n_feat} features need {n_feat + 1} offsets, got {offsets.shape[0]}")
    for j in range(n_feat):
        if offsets[j] < 0 or offsets[j + 1] < offsets[j] or offsets[j + 1] > expected.shape[0]:
            raise ValueError(f"feature {j}: offsets [{offsets[j]}, {offsets[j + 1]}) out of range")
    return 0


cdef inline bint _totals(const count_t[::1] c1, const count_t[::1] c2, Py_ssize_t lo,
                         Py_ssize_t hi, double* t1, double* t2) noexcept nogil:
    cdef Py_ssize_t i
    cdef count_t s1 = 0, s2 = 0
    for i in range(lo, hi):
        s1 += c1[i]
        s2 += c2[i]
    t1[0] = <double>s1
    t2[0] = <double>s2
    return s1 > 0 and s2 > 0


cdef enum:
    PSI = 0
    JS = 1


cdef int _divergence(const count_t[::1] expected, const count_t[::1] actual,
                     const int64_t[::1] offsets, double eps, double[::1] out,
                     int which) except -1:
    # PSI and JS share everything but the term summed over a feature's shares and
    # the last step; the branch on `which` is the same for every bin.
    _check(expected, actual, offsets, out)
    cdef Py_ssize_t j, i
    cdef double te, ta, e, a, m, s
    cdef double inv_ln2 = 1.0 / log(2.0)
    with nogil:
        for j in range(out.shape[0]):
            if not _totals(expected, actual, offsets[j], offsets[j + 1], &te, &ta):
                out[j] = NAN
                continue
            s = 0.0
            for i in range(offsets[j], offsets[j + 1]):
                e = expected[i] / te
                a = actual[i] / ta
                if which == PSI:
                    if e == 0.0:
                        e = eps
                    if a == 0.0:
                        a = eps
                    s += (a - e) * log(a / e)
                else:
                    m = 0.5 * (e + a)
                    if e > 0.0:
                        s += 0.5 * e * log(e / m)
                    if a > 0.0:
                        s += 0.5 * a * log(a / m)
            if which == PSI:
                out[j] = s
            else:
                # Rounding can leave a tiny negative divergence for equal shares.
                out[j] = sqrt(s * inv_ln2) if s > 0.0 else 0.0
    return 0


def psi(const count_t[::1] expected, const count_t[::1] actual,
        const int64_t[::1] offsets, double eps, double[::1] out):
    """out[j] (OUT) = sum_i (a_i - e_i) * ln(a_i / e_i) over shares.

    A share that is exactly zero becomes eps; non-empty bins are not smoothed,
    so a bin empty on both sides adds nothing and the value stays comparable
    with the usual decile-PSI tables.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    _divergence(expected, actual, offsets, eps, out, PSI)


def js(const count_t[::1] expected, const count_t[::1] actual,
       const int64_t[::1] offsets, double[::1] out):
    """out[j] (OUT) = Jensen-Shannon distance, base 2 (0 = same, 1 = disjoint).

    Uses the raw shares: 0 * log 0 = 0 needs no eps, and sqrt of the
    divergence makes it a metric.
    """
    _divergence(expected, actual, offsets, 0.0, out, JS)


def chi2(const count_t[::1] expected, const count_t[::1] actual,
         const int64_t[::1] offsets, double eps, double[::1] out,
         int64_t[::1] dof):
    """out[j] (OUT) = Pearson chi-square of the actual counts against the
    expected shares (zero expected share -> eps); dof[j] (OUT) = used bins - 1.
    Bins empty on both sides are skipped.
    """
    _check(expected, actual, offsets, out)
    if dof.shape[0] != out.shape[0]:
        raise ValueError("dof and out differ in length")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    cdef Py_ssize_t j, i, used
    cdef double te, ta, e, d, s
    with nogil:
        for j in range(out.shape[0]):
            if not _totals(expected, actual, offsets[j], offsets[j + 1], &te, &ta):
                out[j] = NAN
                dof[j] = 0
                continue
            s = 0.0
            used = 0
            for i in range(offsets[j], offsets[j + 1]):
                if expected[i] == 0 and actual[i] == 0:
                    continue
                used += 1
                e = expected[i] / te
                if e == 0.0:
                    e = eps
                d = actual[i] - ta * e
                s += d * d / (ta * e)
            out[j] = s
            dof[j] = used - 1 if used > 0 else 0
