"""Ring sums and merges are exact integer arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.monitor import kernels


def test_sum_slots_and_add_into():
    ring = np.arange(12, dtype=np.int64).reshape(3, 4)
    out = np.full(4, 99, dtype=np.int64)
    kernels.sum_slots(ring, out)
    np.testing.assert_array_equal(out, ring.sum(axis=0))
    big = np.array([2**62, 1, 0, 5], dtype=np.int64)
    kernels.add_into(out, big)
    np.testing.assert_array_equal(out, ring.sum(axis=0) + big)
    with pytest.raises(ValueError):
        kernels.add_into(out, np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError):
        kernels.sum_slots(ring, np.zeros(5, dtype=np.int64))
