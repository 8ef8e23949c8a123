"""fleet_report (runtime/monitor/fleet.py): bin counts summed over replicas, in the labels
/metrics exports, give the report of the union of their rows; bad labels are named."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.monitor.drift import offline_report
from runtime.monitor.fleet import fleet_report
from runtime.monitor.histogram import Histogram
from runtime.monitor.profile import Profile


def _exported(profile: Profile, rows: np.ndarray) -> dict[str, dict[str, float]]:
    """One replica's counters as /metrics labels them: bin "0".."k", then "missing"."""
    hist = Histogram(profile)
    hist.update({f.name: rows[:, j] for j, f in enumerate(profile.features)})
    counts = hist.counts
    out = {}
    for j, f in enumerate(profile.features):
        c = counts[int(hist.offsets[j]) : int(hist.offsets[j + 1])]
        out[f.name] = {("missing" if i == len(c) - 1 else str(i)): float(v) for i, v in enumerate(c)}
    return out


def test_summed_counts_judge_like_the_union() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4000, 3))
    profile = Profile.fit(ref)
    a, b = rng.normal(size=(700, 3)) + [0.4, 0, 0], rng.normal(size=(500, 3)) - [0.4, 0, 0]
    a[::9, 1] = np.nan
    ea, eb = _exported(profile, a), _exported(profile, b)
    summed = {n: {k: ea[n][k] + eb[n][k] for k in ea[n]} for n in ea}
    fleet = fleet_report(profile, {"features": summed})
    union = np.vstack([a, b])
    want = offline_report(profile, {f"f{j}": union[:, j] for j in range(3)})
    assert fleet["window"]["rows"] == 1200 and fleet["status"] == want["status"]
    for got, exp in zip(fleet["features"], want["features"], strict=True):
        assert got["psi"] == pytest.approx(exp["psi"], rel=1e-12) and got["status"] == exp["status"]
        assert got["missing"] == exp["missing"]


def test_counts_that_do_not_fit_the_profile_are_named() -> None:
    profile = Profile.fit(np.random.default_rng(1).normal(size=(500, 2)))
    with pytest.raises(ValueError, match="no counts for feature 'f1'"):
        fleet_report(profile, {"features": {"f0": {"0": 5.0}}})
    with pytest.raises(ValueError, match="bin '99' is not one of the profile's"):
        fleet_report(profile, {"features": {"f0": {"99": 1.0}, "f1": {"0": 1.0}}})
    with pytest.raises(ValueError, match="no bin counts for this model"):
        fleet_report(profile, {"features": {}})
