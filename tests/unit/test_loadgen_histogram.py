"""The log-linear latency histogram against numpy's exact percentiles."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from runtime.loadgen.histogram import Histogram

PS = [0.0, 1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0]


def exact(values: np.ndarray, ps: list[float]) -> np.ndarray:
    """Nearest rank (the definition the histogram uses) with exact rational ranks: numpy's
    method="inverted_cdf" agrees except where p * n / 100 lands a float ulp above an integer."""
    s = np.sort(values)
    n = len(s)
    ranks = [max(1, math.ceil(Fraction(str(p)) * n / 100)) for p in ps]
    return s[np.array(ranks) - 1]


def test_reference_matches_numpy_where_ranks_are_exact() -> None:
    values = np.random.default_rng(9).integers(0, 10**6, 1000)
    ps = [0.0, 10.0, 50.0, 90.0, 100.0]
    assert (exact(values, ps) == np.percentile(values, ps, method="inverted_cdf")).all()


@pytest.mark.parametrize("bits", [3, 5, 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_percentiles_within_stated_relative_error(bits: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Latency-like: lognormal around 300 us with a long tail, in ns.
    values = np.rint(rng.lognormal(np.log(300_000), 1.2, 50_000)).astype(np.int64)
    h = Histogram(sub_bucket_bits=bits)
    h.record_many(values)
    got = np.array(h.percentiles(PS))
    want = exact(values, PS)
    rel = np.abs(got - want) / want
    assert (rel <= h.relative_error + 1e-12).all(), (bits, rel.max(), h.relative_error)
    assert h.total == len(values)
    assert h.min == values.min() and h.max == values.max()
    assert h.mean == pytest.approx(values.mean())


def test_small_values_are_exact() -> None:
    h = Histogram(sub_bucket_bits=4)
    values = np.arange(0, 32)  # below 2 * 2**4 every integer has its own bucket
    h.record_many(values)
    assert h.percentiles(PS) == pytest.approx(exact(values, PS).tolist())


def test_scalar_and_float_recording() -> None:
    h = Histogram()
    h.record(1000, count=3)
    h.record_many([2000.4, 2999.6])
    assert h.total == 5
    assert h.max == 3000
    assert h.percentile(50) == pytest.approx(1000, rel=h.relative_error)


def test_merge_equals_recording_everything() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.integers(1, 10**9, 1000), rng.integers(1, 10**6, 3000)
    ha, hb, hall = Histogram(), Histogram(), Histogram()
    ha.record_many(a)
    hb.record_many(b)
    hall.record_many(np.concatenate([a, b]))
    ha.merge(hb)
    assert (ha.counts == hall.counts).all()
    assert (ha.total, ha.min, ha.max) == (hall.total, hall.min, hall.max)
    assert ha.percentiles(PS) == hall.percentiles(PS)


def test_merge_refuses_other_layouts() -> None:
    with pytest.raises(ValueError, match="layouts"):
        Histogram(5).merge(Histogram(7))


def test_round_trip_through_dict() -> None:
    h = Histogram()
    h.record_many(np.random.default_rng(4).integers(0, 10**8, 500))
    h2 = Histogram.from_dict(h.to_dict())
    assert (h2.counts == h.counts).all()
    assert h2.percentiles(PS) == h.percentiles(PS)
    assert h2.sum == h.sum


def test_empty_and_invalid() -> None:
    h = Histogram()
    assert h.percentiles([50, 99]) == [0.0, 0.0]
    assert h.mean == 0.0
    with pytest.raises(ValueError, match=">= 0"):
        h.record_many([5, -1])
    h.record(5)
    with pytest.raises(ValueError, match="0..100"):
        h.percentile(101)
    with pytest.raises(ValueError, match="sub_bucket_bits"):
        Histogram(0)


def test_values_above_the_maximum_saturate() -> None:
    h = Histogram(sub_bucket_bits=3, max_value=1000)
    h.record_many([10, 5000])
    assert h.saturated == 1
    assert h.total == 2
    assert h.percentile(100) <= 1000


def test_count_at_or_above() -> None:
    h = Histogram()
    h.record_many([1_000] * 90 + [1_000_000_000] * 10)
    assert h.count_at_or_above(500_000_000) == 10
    assert h.count_at_or_above(0) == 100
