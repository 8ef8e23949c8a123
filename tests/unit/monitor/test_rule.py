"""The drift rule: the G-test against scipy, the chi-square tail, Holm's correction, and
the statuses it gives (bands, significance, the row floor)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.monitor.rule import Thresholds, band, chi2_sf, g_test, holm, judge, worst

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 9, 10, 30, 99, 250])
def test_chi2_sf_matches_scipy(dof: int) -> None:
    for x in [0.0, 1e-6, 0.5, dof / 2, dof, dof + 3 * math.sqrt(2 * dof), 5 * dof + 40, 1e4]:
        want = float(scipy_stats.chi2.sf(x, dof))
        got = chi2_sf(x, dof)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-300), (x, dof)


def test_chi2_sf_edges() -> None:
    assert chi2_sf(0.0, 5) == 1.0
    assert chi2_sf(math.inf, 5) == 0.0
    assert math.isnan(chi2_sf(math.nan, 5))
    assert chi2_sf(3.0, 0) == 0.0 and chi2_sf(0.0, 0) == 1.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 500), min_size=2, max_size=12).flatmap(
        lambda e: st.tuples(st.just(e), st.lists(st.integers(0, 500), min_size=len(e), max_size=len(e)))
    )
)
def test_g_test_matches_scipy_log_likelihood_contingency(pair: tuple[list[int], list[int]]) -> None:
    e, c = np.array(pair[0]), np.array(pair[1])
    g, dof = g_test(e, c, np.array([0, e.size]))
    if e.sum() == 0 or c.sum() == 0:
        assert math.isnan(g[0]) and dof[0] == 0
        return
    used = (e > 0) | (c > 0)
    assert dof[0] == used.sum() - 1
    if used.sum() < 2:
        assert g[0] == 0.0
        return
    table = np.vstack([e[used], c[used]])
    want, _, want_dof, _ = scipy_stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
    assert dof[0] == want_dof
    assert g[0] == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_g_test_several_features_at_once() -> None:
    e = np.array([10, 20, 30, 5, 5, 0, 0])
    c = np.array([12, 18, 30, 1, 9, 0, 0])
    g, dof = g_test(e, c, np.array([0, 3, 5, 7]))
    one, d1 = g_test(e[:3], c[:3], np.array([0, 3]))
    two, d2 = g_test(e[3:5], c[3:5], np.array([0, 2]))
    assert g[:2].tolist() == pytest.approx([one[0], two[0]])
    assert dof[:2].tolist() == [d1[0], d2[0]]
    assert math.isnan(g[2])  # no rows on either side


def test_holm_steps_down_and_skips_nan() -> None:
    # m = 3 tests: 0.004 <= 0.01/3; then 0.02 > 0.01/2 stops, so 0.003 and 0.004 only.
    assert holm([0.004, 0.02, 0.003, math.nan], 0.01) == [True, False, True, False]
    assert holm([0.004, 0.006, 0.001], 0.012) == [True, True, True]  # 0.001<=.004, .004<=.006, .006<=.012
    assert holm([], 0.05) == []
    assert holm([math.nan], 0.05) == [False]
    # Bonferroni would need p <= alpha/m for every one; Holm frees the rest once the smallest passes.
    assert holm([0.001, 0.02], 0.04) == [True, True]


def test_band_and_worst() -> None:
    t = Thresholds()
    assert [band(v, t) for v in (0.05, 0.1, 0.15, 0.2, 0.25, math.nan)] == [
        "ok", "ok", "warn", "warn", "alert", "ok"
    ]  # fmt: skip
    assert worst(["ok", "alert", "warn"]) == "alert" and worst([]) == "ok"


def _judge_one(e: list[int], c: list[int], psi: float, rows: int, **kw) -> str:
    return judge([psi], np.array(e), np.array(c), np.array([0, len(e)]), [rows], Thresholds(**kw))[0].status


def test_judge_needs_both_a_band_and_significance() -> None:
    ref = [100] * 10 + [0]
    shifted = [0, 0, 0, 0, 0, 200, 200, 200, 200, 200, 0]
    assert _judge_one(ref, shifted, psi=5.0, rows=1000) == "alert"
    # The same PSI on data that looks like the reference: not significant, so ok.
    assert _judge_one(ref, [100] * 10 + [0], psi=5.0, rows=1000) == "ok"
    # Significant, but PSI in the moderate band: warn; under warn_psi: ok.
    assert _judge_one(ref, shifted, psi=0.15, rows=1000) == "warn"
    assert _judge_one(ref, shifted, psi=0.05, rows=1000) == "ok"
    # Fewer rows than min_rows: never a status.
    assert _judge_one(ref, shifted, psi=5.0, rows=99) == "ok"
    assert _judge_one(ref, shifted, psi=5.0, rows=99, min_rows=0) == "alert"
    # NaN PSI (no data) is no evidence.
    assert _judge_one(ref, [0] * 11, psi=math.nan, rows=1000) == "ok"


def test_judge_corrects_for_the_number_of_features() -> None:
    """One feature with p = 0.004 alerts alone (alpha 0.01) but not among 50 quiet ones."""
    rng = np.random.default_rng(3)
    ref = np.full(10, 1000)
    # A window whose G-test p-value lands near 0.004.
    window = np.array([135, 100, 100, 100, 100, 100, 100, 100, 100, 65])
    g, dof = g_test(ref, window, np.array([0, 10]))
    p = chi2_sf(g[0], int(dof[0]))
    assert 0.001 < p < 0.01
    alone = judge([0.5], ref, window, np.array([0, 10]), [1000], Thresholds())
    assert alone[0].significant and alone[0].status == "alert"
    quiet = [rng.multinomial(1000, np.full(10, 0.1)) for _ in range(49)]
    e = np.concatenate([ref] * 50)
    c = np.concatenate([window, *quiet])
    offsets = np.arange(0, 510, 10)
    crowd = judge([0.5] + [0.0] * 49, e, c, offsets, [1000] * 50, Thresholds())
    assert not crowd[0].significant and crowd[0].status == "ok"
    assert 50 * crowd[0].p_value > 0.01  # Holm's first step is Bonferroni's alpha / 50
