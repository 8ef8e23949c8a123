"""A log-linear bucketed latency histogram in the spirit of HdrHistogram.

Values are non-negative integers (the load generator records nanoseconds). Below
`2 * S` (S = 2**sub_bucket_bits) every integer has its own bucket; above, each power of
two [2**e, 2**(e+1)) is split into S equal buckets. A bucket's width is therefore at
most 1/S of its lower bound, and a percentile reported at the bucket's midpoint is
within **1 / (2 * S)** of the true sample at that rank (0.39% for the default 7 bits),
clamped to the exact min and max, which are tracked separately.

    h = Histogram()
    h.record_many(np.array([120_000, 95_000, 2_000_000]))   # ns
    h.percentile(99.0)       # ~2_000_000
    h2.merge(h)              # histograms of several processes add up exactly
    Histogram.from_dict(h.to_dict())   # round-trips through JSON/pickle

Memory is fixed: (highest exponent + 2) * S int64 counters (about 35 KiB for values
up to 2**42 ns, 73 minutes), whatever the number of samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["Histogram"]

DEFAULT_SUB_BUCKET_BITS = 7
DEFAULT_MAX_VALUE = 2**42  # ns: 73 minutes


def _ceil_rank(p: float, n: int) -> int:
    # ceil(p% of n), but 99.9% of 50000 is 49950, not 49951 from float error.
    r = p * n / 100.0
    nearest = round(r)
    return int(nearest) if abs(r - nearest) < 1e-6 else int(np.ceil(r))


class Histogram:
    """Counts of integer values in log-linear buckets; see the module docstring."""

    def __init__(
        self, sub_bucket_bits: int = DEFAULT_SUB_BUCKET_BITS, max_value: int = DEFAULT_MAX_VALUE
    ) -> None:
        if not 1 <= sub_bucket_bits <= 16:
            raise ValueError(f"sub_bucket_bits must be in 1..16, got {sub_bucket_bits}")
        if max_value < 2 ** (sub_bucket_bits + 1):
            raise ValueError(f"max_value must be at least {2 ** (sub_bucket_bits + 1)}, got {max_value}")
        self.sub_bucket_bits = sub_bucket_bits
        self.max_value = int(max_value)
        self._s = 1 << sub_bucket_bits
        self.counts = np.zeros(self._index_scalar(self.max_value) + 1, dtype=np.int64)
        self.total = 0
        self.min = 0
        self.max = 0
        self.sum = 0.0
        self.saturated = 0  # values above max_value, counted in the last bucket

    @property
    def relative_error(self) -> float:
        """The largest relative error of a reported percentile (between min and max)."""
        return 1.0 / (2 * self._s)

    # -- bucket arithmetic ------------------------------------------------------------------

    def _index_scalar(self, v: int) -> int:
        m = self.sub_bucket_bits
        if v < 2 * self._s:
            return v
        k = v.bit_length() - (m + 1)
        return k * self._s + (v >> k)

    def _indices(self, v: np.ndarray) -> np.ndarray:
        m = self.sub_bucket_bits
        # frexp's exponent of a positive integer is its bit length (exact below 2**53).
        _, exp = np.frexp(np.maximum(v, 1).astype(np.float64))
        k = np.maximum(exp.astype(np.int64) - (m + 1), 0)
        return k * self._s + (v >> k)

    def _bounds(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[lower, upper) of each bucket index."""
        s = self._s
        k = np.maximum(index // s - 1, 0)
        lower = np.where(index < 2 * s, index, (index - k * s) << k)
        width = np.where(index < 2 * s, 1, np.int64(1) << k)
        return lower, lower + width

    # -- recording --------------------------------------------------------------------------

    def record(self, value: int, count: int = 1) -> None:
        self.record_many(np.full(count, value, dtype=np.int64))

    def record_many(self, values: Sequence[int] | np.ndarray) -> None:
        """Record many values at once (the fast path: one numpy pass)."""
        v = np.asarray(values)
        if v.size == 0:
            return
        if v.dtype.kind == "f":
            v = np.rint(v)
        v = v.astype(np.int64, copy=False).reshape(-1)
        if (v < 0).any():
            raise ValueError(f"histogram values must be >= 0, got {int(v.min())}")
        lo, hi = int(v.min()), int(v.max())
        over = v > self.max_value
        if over.any():
            self.saturated += int(over.sum())
            v = np.minimum(v, self.max_value)
        self.counts += np.bincount(self._indices(v), minlength=len(self.counts))
        self.min = lo if self.total == 0 else min(self.min, lo)
        self.max = max(self.max, hi)
        self.sum += float(v.sum())
        self.total += int(v.size)

    def merge(self, other: Histogram) -> None:
        if (other.sub_bucket_bits, other.max_value) != (self.sub_bucket_bits, self.max_value):
            raise ValueError("cannot merge histograms with different bucket layouts")
        if other.total == 0:
            return
        self.counts += other.counts
        self.min = other.min if self.total == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.sum += other.sum
        self.total += other.total
        self.saturated += other.saturated

    # -- queries ----------------------------------------------------------------------------

    @property
    def mean(self) -> float:
        return self.sum / self.total if self.total else 0.0

    def percentiles(self, ps: Iterable[float]) -> list[float]:
        """Values at percentiles `ps` (0..100), by nearest rank: the smallest value with at
        least p% of the samples at or below it; 0.0 for an empty histogram."""
        ps = [float(p) for p in ps]
        if self.total == 0:
            return [0.0 for _ in ps]
        for p in ps:
            if not 0.0 <= p <= 100.0:
                raise ValueError(f"percentile must be in 0..100, got {p}")
        cum = np.cumsum(self.counts)
        ranks = np.array([max(1, _ceil_rank(p, self.total)) for p in ps])
        idx = np.searchsorted(cum, ranks, side="left")
        lower, upper = self._bounds(idx)
        mid = (lower + upper - 1) / 2.0
        return [float(x) for x in np.clip(mid, self.min, self.max)]

    def percentile(self, p: float) -> float:
        return self.percentiles([p])[0]

    def count_at_or_above(self, value: int) -> int:
        """How many samples fall in buckets whose lower bound is at least `value` (to bucket precision)."""
        idx = np.arange(len(self.counts))
        lower, _ = self._bounds(idx)
        return int(self.counts[lower >= value].sum())

    # -- transport --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A compact, JSON-safe form: only the non-empty buckets."""
        nz = np.nonzero(self.counts)[0]
        return {
            "sub_bucket_bits": self.sub_bucket_bits,
            "max_value": self.max_value,
            "total": self.total,
            "min": self.min,
            "max": self.max,
            "sum": self.sum,
            "saturated": self.saturated,
            "buckets": [[int(i), int(self.counts[i])] for i in nz],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        h = cls(int(d["sub_bucket_bits"]), int(d["max_value"]))
        for i, c in d["buckets"]:
            h.counts[int(i)] = int(c)
        h.total, h.min, h.max = int(d["total"]), int(d["min"]), int(d["max"])
        h.sum, h.saturated = float(d["sum"]), int(d["saturated"])
        return h
