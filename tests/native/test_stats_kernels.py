"""PSI, Jensen-Shannon and chi-square from counts: hand-computed values and the oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.monitor import _reference as ref
from runtime.monitor import kernels


def test_psi_hand_computed():
    # shares e = (.5, .5), a = (.4, .6): (-.1) ln(.8) + (.1) ln(1.2)
    expect = -0.1 * math.log(0.4 / 0.5) + 0.1 * math.log(0.6 / 0.5)
    assert kernels.psi([50, 50], [40, 60]) == pytest.approx(expect, rel=1e-12)
    assert kernels.psi([10, 10], [10, 10]) == 0.0


def test_psi_empty_bin_uses_eps_and_only_there():
    # e = (.5, .5, 0) -> (.5, .5, eps); a = (.25, .25, .5)
    eps = 1e-4
    expect = 2 * (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.5 - eps) * math.log(0.5 / eps)
    assert kernels.psi([1, 1, 0], [1, 1, 2]) == pytest.approx(expect, rel=1e-12)
    eps = 1e-2
    expect = 2 * (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.5 - eps) * math.log(0.5 / eps)
    assert kernels.psi([1, 1, 0], [1, 1, 2], eps=eps) == pytest.approx(expect, rel=1e-12)
    # Empty on both sides: no contribution.
    assert kernels.psi([5, 5, 0], [5, 5, 0]) == 0.0


def test_psi_symmetric_and_nan_for_no_rows():
    assert kernels.psi([3, 1], [1, 3]) == pytest.approx(kernels.psi([1, 3], [3, 1]))
    assert math.isnan(kernels.psi([0, 0], [1, 2]))
    assert math.isnan(kernels.psi([1, 2], [0, 0]))
    with pytest.raises(ValueError, match="eps"):
        kernels.psi([1], [1], eps=0)


def test_js_bounds():
    assert kernels.js([1, 0], [0, 1]) == pytest.approx(1.0)
    assert kernels.js([4, 4], [4, 4]) == 0.0
    # e=(.5,.5), a=(1,0): m=(.75,.25)
    jsd = 0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25))
    jsd += 0.5 * (1.0 * math.log2(1 / 0.75))
    assert kernels.js([1, 1], [1, 0]) == pytest.approx(math.sqrt(jsd))


def test_chi2_hand_computed():
    stat, dof = kernels.chi2([50, 50, 0], [30, 70, 0])
    assert stat == pytest.approx((30 - 50) ** 2 / 50 + (70 - 50) ** 2 / 50)
    assert dof == 1


def test_ragged_and_2d_inputs():
    e = [np.array([5, 5]), np.array([1, 2, 3])]
    a = [np.array([4, 6]), np.array([3, 2, 1])]
    out = kernels.psi(e, a)
    assert out.shape == (2,)
    assert out[1] == pytest.approx(ref.psi(e[1], a[1]))
    two_d = kernels.psi(np.array([[5, 5], [1, 3]]), np.array([[4, 6], [3, 1]]))
    assert two_d[1] == pytest.approx(ref.psi(np.array([1, 3]), np.array([3, 1])))
    with pytest.raises(ValueError, match="bins"):
        kernels.psi(e, [np.array([1]), np.array([1, 2, 3])])
    with pytest.raises(ValueError, match=">= 0"):
        kernels.psi([1, -1], [1, 1])


counts = st.lists(st.integers(0, 1000), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_stats_match_oracle(data):
    e = np.array(data.draw(counts), dtype=np.int64)
    a = np.array(data.draw(st.lists(st.integers(0, 1000), min_size=e.size, max_size=e.size)))
    eps = data.draw(st.sampled_from([1e-4, 1e-2, 1e-6]))
    for got, want in [
        (kernels.psi(e, a, eps), ref.psi(e, a, eps)),
        (kernels.js(e, a), ref.js(e, a)),
        (kernels.chi2(e, a, eps)[0], ref.chi2(e, a, eps)[0]),
    ]:
        if math.isnan(want):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-12)
    if e.sum() and a.sum():
        assert kernels.chi2(e, a, eps)[1] == ref.chi2(e, a, eps)[1]
