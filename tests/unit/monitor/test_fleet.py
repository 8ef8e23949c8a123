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


def _served(profile: Profile, outputs: Profile | None = None):  # type: ignore[no-untyped-def]
    from runtime.config import MonitorConfig
    from runtime.monitor.drift import ModelMonitor

    return ModelMonitor(
        profile, model="m", version="1", inputs=[("input", [-1, 3])],
        outputs=[("output", [-1, 2])] if profile.outputs else [], config=MonitorConfig(),
    )  # fmt: skip


def test_workers_summed_report_like_one_process_that_saw_all_the_rows() -> None:
    """`mlrt serve --workers N`: each worker counts its share; SummedMonitor of their
    section counts reports what one ModelMonitor fed every row reports."""
    from runtime.metrics.drift import DriftCollector
    from runtime.monitor.fleet import SummedMonitor

    rng = np.random.default_rng(3)
    x = rng.normal(size=(5000, 3)).astype(np.float32)
    y = rng.random((5000, 2)).astype(np.float32)
    profile = Profile.fit(x, outputs=y, dtypes="float32")
    one, w0, w1 = _served(profile), _served(profile), _served(profile)
    shifted = (rng.normal(size=(900, 3)) + [0.5, 0, 0]).astype(np.float32)
    out = rng.random((900, 2)).astype(np.float32)
    shifted[::50, 2] = np.nan
    for lo in range(0, 900, 3):  # requests of 3 rows, dealt out unevenly, as connections are
        batch = {"input": shifted[lo : lo + 3]}, {"output": out[lo : lo + 3]}
        one.observe(*batch)
        (w0 if lo % 9 else w1).observe(*batch)
    whole = SummedMonitor(w0, [w0.section_counts(), w1.section_counts()])
    assert whole.window_rows == one.window_rows == 900
    want, got = one.to_json(), whole.to_json()
    assert got["status"] == want["status"] == "alert"
    for section in ("features", "outputs"):
        for g, w in zip(got[section], want[section], strict=True):
            assert g == w  # PSI, p, status, rows, missing and the shares: all of it
    for g, w in zip(whole.bin_totals(), one.bin_totals(), strict=True):
        assert g[:2] == w[:2]
        np.testing.assert_array_equal(g[2], w[2])
        np.testing.assert_array_equal(g[3], w[3])
    # The drift families of /metrics from the summed monitor equal one process's.
    def samples(mon):  # type: ignore[no-untyped-def]
        fams = DriftCollector(lambda: [mon]).collect()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams for s in f.samples}

    assert samples(whole) == samples(one)
