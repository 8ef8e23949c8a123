"""Python face of the native drift kernels (runtime._native).

The wrappers here validate once and hand preallocated arrays to the kernels;
see native/_histogram.pyx for the counts layout.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

try:
    from runtime._native._histogram import NumericCounter, count_levels, count_levels_object
    from runtime._native._histogram import count_numeric as count_numeric_into
    from runtime._native._psi import chi2 as chi2_into  # preallocated-output forms, for callers
    from runtime._native._psi import js as js_into  # that keep their own buffers
    from runtime._native._psi import psi as psi_into
    from runtime._native._stage import Lock, RowBuffer, Stager  # the monitor's staging of rows (drift.py)
    from runtime._native._window import add_into, sum_slots
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(
        "mlrt's compiled drift kernels (runtime._native) are missing or out of date; "
        "build them with `pip install -e .` in the source checkout (or reinstall mlrt)"
    ) from exc

__all__ = [
    "DEFAULT_EPS",
    "Lock",
    "NumericCounter",
    "RowBuffer",
    "Stager",
    "add_into",
    "chi2",
    "chi2_into",
    "count_levels",
    "count_levels_object",
    "count_numeric",
    "edges_as_float32",
    "js",
    "js_into",
    "psi",
    "psi_into",
    "sum_slots",
]

#: Share that replaces an exactly-empty bin in PSI and chi-square (Evidently's 1e-4).
DEFAULT_EPS = 1e-4


def edges_as_float32(edges: np.ndarray) -> np.ndarray:
    """Round float64 edges up to float32 so float32 data bins exactly as float64.

    For a float32 x, ``x >= e`` holds exactly when ``x >= e32`` with e32 the
    smallest float32 >= e, so the float32 kernel needs no widening per value.
    """
    edges = np.asarray(edges, dtype=np.float64)
    with np.errstate(over="ignore"):
        e32 = edges.astype(np.float32)
    low = e32.astype(np.float64) < edges
    e32[low] = np.nextafter(e32[low], np.float32(np.inf))
    return e32


def count_numeric(
    X: np.ndarray,
    edges: Sequence[np.ndarray],
    counts: np.ndarray | None = None,
    cols: Sequence[int] | None = None,
) -> np.ndarray:
    """Bin counts of every column of X against its own sorted inner edges.

    Returns (or adds into) a flat int64 array: for column j, ``len(edges[j]) + 1``
    bins (``np.searchsorted(edges[j], x, side="right")``) followed by a
    missing (NaN) bucket.  ``cols`` picks the columns of X to bin (default: all).

    >>> count_numeric(np.array([[0.5], [1.0], [np.nan]]), [np.array([1.0])])
    array([1, 1, 1])
    """
    X = np.asarray(X)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError(f"X must be 1-D or 2-D, got {X.ndim}-D")
    if X.dtype != np.float32:
        X = X.astype(np.float64, copy=False)
    col_idx = np.arange(X.shape[1], dtype=np.int64) if cols is None else np.asarray(cols, dtype=np.int64)
    if len(edges) != col_idx.size:
        raise ValueError(f"{col_idx.size} columns to bin but {len(edges)} edge arrays were given")
    flat, edge_offsets = flatten_edges(edges)
    n = col_idx.size
    count_offsets = edge_offsets[:-1] + 2 * np.arange(n, dtype=np.int64)
    size = int(edge_offsets[-1]) + 2 * n
    if counts is None:
        counts = np.zeros(size, dtype=np.int64)
    elif counts.shape != (size,) or counts.dtype != np.int64:
        raise ValueError(f"counts must be int64 of shape ({size},), got {counts.dtype} {counts.shape}")
    if X.dtype == np.float32:
        flat = edges_as_float32(flat)
    count_numeric_into(X, col_idx, flat, edge_offsets, count_offsets, counts)
    return counts


def flatten_edges(edges: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate per-feature inner edges; check they are finite and increasing."""
    arrays = [np.asarray(e, dtype=np.float64).reshape(-1) for e in edges]
    for j, e in enumerate(arrays):
        if not np.all(np.isfinite(e)):
            raise ValueError(f"feature {j}: edges must be finite, got {e.tolist()}")
        if e.size > 1 and not np.all(e[1:] > e[:-1]):
            raise ValueError(f"feature {j}: edges must be strictly increasing, got {e.tolist()}")
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([e.size for e in arrays])
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float64)
    return np.ascontiguousarray(flat, dtype=np.float64), offsets


def _stat_inputs(expected: object, actual: object) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Flatten one feature (1-D), a 2-D features x bins array, or a ragged list."""

    def is_ragged(v: object) -> bool:
        return isinstance(v, (list, tuple)) and len(v) > 0 and np.ndim(v[0]) == 1

    if is_ragged(expected) or is_ragged(actual):
        exp = [np.asarray(e) for e in expected]  # type: ignore[union-attr]
        act = [np.asarray(a) for a in actual]  # type: ignore[union-attr]
        if len(exp) != len(act):
            raise ValueError(f"{len(exp)} expected features but {len(act)} actual")
        for j, (e, a) in enumerate(zip(exp, act, strict=True)):
            if e.shape != a.shape:
                raise ValueError(f"feature {j}: expected has {e.size} bins, actual {a.size}")
        sizes = [e.size for e in exp]
        flat_e = np.concatenate(exp) if exp else np.zeros(0)
        flat_a = np.concatenate(act) if act else np.zeros(0)
        scalar = False
    else:
        e2, a2 = np.asarray(expected), np.asarray(actual)
        if e2.shape != a2.shape or e2.ndim not in (1, 2):
            raise ValueError(
                f"expected and actual must have the same 1-D or 2-D shape, got {e2.shape} and {a2.shape}"
            )
        scalar = e2.ndim == 1
        e2, a2 = np.atleast_2d(e2), np.atleast_2d(a2)
        sizes = [e2.shape[1]] * e2.shape[0]
        flat_e, flat_a = e2.reshape(-1), a2.reshape(-1)
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(sizes)
    return _as_counts(flat_e, "expected"), _as_counts(flat_a, "actual"), offsets, scalar


def _as_counts(values: np.ndarray, what: str) -> np.ndarray:
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
            raise ValueError(f"{what} counts must be whole numbers")
    elif values.dtype.kind not in "iub" and values.size:
        raise TypeError(f"{what} counts must be integers, got dtype {values.dtype}")
    counts = np.ascontiguousarray(values, dtype=np.int64)
    if counts.size and counts.min() < 0:
        raise ValueError(f"{what} counts must be >= 0")
    return counts


def psi(expected: object, actual: object, eps: float = DEFAULT_EPS) -> float | np.ndarray:
    """Population stability index from bin counts (reference, current).

    PSI = sum((a_i - e_i) * ln(a_i / e_i)) over the shares of each bin; a share
    that is exactly zero counts as ``eps``.  One feature (two 1-D arrays) gives
    a float; a 2-D features x bins array or a list of 1-D arrays gives one
    value per feature.  NaN where either side has no rows.

    >>> round(psi([50, 50], [40, 60]), 6)
    0.040547
    """
    e, a, offsets, scalar = _stat_inputs(expected, actual)
    out = np.empty(offsets.size - 1, dtype=np.float64)
    psi_into(e, a, offsets, float(eps), out)
    return float(out[0]) if scalar else out


def js(expected: object, actual: object) -> float | np.ndarray:
    """Jensen-Shannon distance (base 2, in [0, 1]) between the bin shares."""
    e, a, offsets, scalar = _stat_inputs(expected, actual)
    out = np.empty(offsets.size - 1, dtype=np.float64)
    js_into(e, a, offsets, out)
    return float(out[0]) if scalar else out


def chi2(
    expected: object, actual: object, eps: float = DEFAULT_EPS
) -> tuple[float, int] | tuple[np.ndarray, np.ndarray]:
    """Pearson chi-square of actual counts against the expected shares, with dof."""
    e, a, offsets, scalar = _stat_inputs(expected, actual)
    out = np.empty(offsets.size - 1, dtype=np.float64)
    dof = np.empty(offsets.size - 1, dtype=np.int64)
    chi2_into(e, a, offsets, float(eps), out, dof)
    return (float(out[0]), int(dof[0])) if scalar else (out, dof)
