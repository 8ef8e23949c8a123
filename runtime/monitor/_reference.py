"""Plain numpy versions of every native kernel: the oracle the tests compare to.

Slow and allocation-heavy on purpose; nothing at runtime calls them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def count_numeric(X: np.ndarray, edges: Sequence[np.ndarray]) -> np.ndarray:
    """Flat counts: per column, searchsorted(side="right") bins, then NaN."""
    X = np.asarray(X)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    out = []
    for j, e in enumerate(edges):
        x = X[:, j].astype(np.float64)
        e = np.asarray(e, dtype=np.float64)
        nan = np.isnan(x)
        bins = np.searchsorted(e, x[~nan], side="right")
        out.append(np.bincount(bins, minlength=e.size + 1).astype(np.int64))
        out.append(np.array([nan.sum()], dtype=np.int64))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def count_levels(column: Sequence[object], levels: Sequence[object]) -> np.ndarray:
    """Counts of one categorical column: levels in order, then other, then missing."""
    slot: Mapping[object, int] = {v: i for i, v in enumerate(levels)}
    counts = np.zeros(len(levels) + 2, dtype=np.int64)
    for v in column:
        if v is None or (isinstance(v, (float, np.floating)) and np.isnan(v)):
            counts[-1] += 1
        elif isinstance(v, bytes) and v.decode("utf-8", "replace") in slot:
            counts[slot[v.decode("utf-8", "replace")]] += 1
        else:
            counts[slot.get(v, len(levels))] += 1
    return counts


def shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return counts / counts.sum()


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    if np.sum(expected) == 0 or np.sum(actual) == 0:
        return float("nan")
    e, a = shares(expected), shares(actual)
    e = np.where(e == 0, eps, e)
    a = np.where(a == 0, eps, a)
    return float(np.sum((a - e) * np.log(a / e)))


def js(expected: np.ndarray, actual: np.ndarray) -> float:
    if np.sum(expected) == 0 or np.sum(actual) == 0:
        return float("nan")
    e, a = shares(expected), shares(actual)
    m = (e + a) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_e = np.where(e > 0, e * np.log2(e / m), 0.0).sum()
        kl_a = np.where(a > 0, a * np.log2(a / m), 0.0).sum()
    return float(np.sqrt(max(0.5 * (kl_e + kl_a), 0.0)))


def chi2(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> tuple[float, int]:
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    if expected.sum() == 0 or actual.sum() == 0:
        return float("nan"), 0
    used = (expected > 0) | (actual > 0)
    e = shares(expected)[used]
    e = np.where(e == 0, eps, e)
    a = actual[used].astype(np.float64)
    m = a.sum()
    return float(np.sum((a - m * e) ** 2 / (m * e))), int(used.sum() - 1)
