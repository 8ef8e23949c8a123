"""The drift rule: when a model's features count as drifted.  One rule for the server,
`runtime.load`, `mlrt drift` and everything else that classifies drift.

A feature's severity is its PSI in the customary bands (under ``warn_psi``: none,
up to ``alert_psi``: moderate, above: significant).  A band only counts when the
window also differs from the reference by more than sampling noise, judged for the
whole model at once, so that a model with many features does not alert more often
than one with a few:

1. Per feature, the G-test of homogeneity (likelihood ratio) between the window's
   bin counts and the reference's: both are samples, so the test allows for the
   reference's own noise, and under no drift its statistic follows a chi-square
   distribution with (bins in use - 1) degrees of freedom.
2. Holm's step-down correction over every feature and output of the model at
   family-wise level ``alpha``: the chance that a window without drift puts *any*
   feature of the model past its band is at most about ``alpha``.
3. Status: ``ok`` unless the feature is significant after the correction and its
   PSI is past a band; never with fewer than ``min_rows`` rows in the window.

Why G rather than a test on PSI itself: PSI replaces empty bins with ``eps``, and
at small windows an emptied bin inflates it far past what a chi-square predicts
(measured: 8-15% model-level false alarms at 100 rows on real data where G kept
under 2%; `python -m bench.drift_power`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

STATUSES = ("ok", "warn", "alert")
#: The number each status is exported as (``mlrt_drift_status``, ``mlrt_feature_drift_status``).
STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}


@dataclass(frozen=True)
class Thresholds:
    """What the rule needs from the monitor's configuration (MonitorConfig has them all)."""

    warn_psi: float = 0.1
    alert_psi: float = 0.2
    alpha: float = 0.01
    min_rows: int = 100


def worst(statuses: Sequence[str]) -> str:
    """The most severe status (``ok`` for none)."""
    return max(statuses, key=STATUS_CODE.__getitem__, default="ok")


def band(psi: float, thresholds: Thresholds) -> str:
    """The status PSI alone would give: ``ok``, ``warn`` past warn_psi, ``alert`` past alert_psi."""
    if not psi > thresholds.warn_psi:
        return "ok"
    return "alert" if psi > thresholds.alert_psi else "warn"


def g_test(
    expected: np.ndarray, current: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """G statistic and degrees of freedom per feature, from flat counts.

    Feature j owns slots ``offsets[j]:offsets[j+1]`` of both arrays.  G compares two
    samples (reference and window) against their pooled shares:
    ``2 * sum(c * ln(c / (n * pooled)))`` over both samples' slots, zero counts
    adding nothing; dof is the number of slots used by either side, minus one.
    NaN (dof 0) where either side has no rows.
    """
    e = np.asarray(expected, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    starts = np.asarray(offsets[:-1], dtype=np.int64)
    sizes = np.diff(offsets).astype(np.int64)
    n_feat = sizes.size
    g = np.full(n_feat, np.nan)
    dof = np.zeros(n_feat, dtype=np.int64)
    if n_feat == 0 or e.size == 0:
        return g, dof
    m_rows = np.add.reduceat(e, starts)
    n_rows = np.add.reduceat(c, starts)
    used = (e > 0) | (c > 0)
    per_slot_m = np.repeat(m_rows, sizes)
    per_slot_n = np.repeat(n_rows, sizes)
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (e + c) / (per_slot_m + per_slot_n)
        terms = np.where(c > 0, c * np.log(c / (per_slot_n * pooled)), 0.0) + np.where(
            e > 0, e * np.log(e / (per_slot_m * pooled)), 0.0
        )
    g_all = 2.0 * np.add.reduceat(terms, starts)
    dof_all = np.add.reduceat(used.astype(np.int64), starts) - 1
    ok = (m_rows > 0) & (n_rows > 0)
    g[ok] = np.maximum(g_all[ok], 0.0)  # rounding can leave a tiny negative for equal shares
    dof[ok] = np.maximum(dof_all[ok], 0)
    return g, dof


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for X ~ chi-square(dof): the regularized upper incomplete gamma Q(dof/2, x/2)."""
    if math.isnan(x):
        return math.nan
    if dof <= 0:
        return 1.0 if x <= 0 else 0.0
    return _gamma_q(dof / 2.0, x / 2.0)


def _gamma_q(a: float, x: float) -> float:
    if x <= 0:
        return 1.0
    if math.isinf(x):
        return 0.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        # P(a, x) by its power series, which converges fast below a + 1; Q = 1 - P.
        term = total = 1.0 / a
        k = a
        for _ in range(10_000):
            k += 1.0
            term *= x / k
            total += term
            if term < total * 1e-16:
                break
        return min(1.0, max(0.0, 1.0 - total * math.exp(log_front)))
    # Q(a, x) by its continued fraction (Lentz's method), which converges fast above a + 1.
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-16:
            break
    return min(1.0, max(0.0, math.exp(log_front) * h))


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Which hypotheses Holm's step-down procedure rejects at family-wise level alpha.

    NaN p-values (nothing to test) are never rejected and do not count among the tests.
    """
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    rejected = [False] * len(p_values)
    m = len(tested)
    for rank, (p, i) in enumerate(tested):
        if p > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


@dataclass(frozen=True)
class Verdict:
    """One feature's outcome: its test's p-value, whether it survived the model-wide
    correction, and its status."""

    p_value: float
    significant: bool
    status: str


def judge(
    psi: Sequence[float],
    expected: np.ndarray,
    current: np.ndarray,
    offsets: np.ndarray,
    rows: Sequence[int],
    thresholds: Thresholds,
) -> list[Verdict]:
    """Statuses of every feature of one model (all sections together, one family).

    ``psi`` per feature; ``expected``/``current`` flat reference and window counts with
    feature j in ``offsets[j]:offsets[j+1]``; ``rows`` the window's rows per feature
    (features of one section share it).
    """
    g, dof = g_test(expected, current, offsets)
    p = [
        chi2_sf(float(g[j]), int(dof[j]))
        if rows[j] >= thresholds.min_rows and math.isfinite(psi[j]) and not math.isnan(g[j])
        else math.nan
        for j in range(len(psi))
    ]
    significant = holm(p, thresholds.alpha)
    return [
        Verdict(p_j, hit, band(psi_j, thresholds) if hit else "ok")
        for p_j, hit, psi_j in zip(p, significant, psi, strict=True)
    ]
