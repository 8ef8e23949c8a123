"""The reference counts are the truth for the rows they came from, whatever the dtypes:
a column profiled for a model's dtype and then served to that model as that dtype
counts exactly into the reference's bins, through the monitor the server runs (single
rows staged, batches counted at once), and offline from the original column."""

from __future__ import annotations

import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.config import MonitorConfig
from runtime.monitor.drift import ModelMonitor, offline_report
from runtime.monitor.profile import DtypeWarning, Profile

SERVED = ["float16", "float32", "float64"]
SOURCES = ["float16", "float32", "float64", "int8", "int32", "int64", "uint16"]


@st.composite
def columns(draw: st.DrawFn) -> np.ndarray:
    """Columns like real tabular data: readings on a decimal grid (many ties), counts,
    arbitrary floats, with NaN and infinities sprinkled in."""
    source = draw(st.sampled_from(SOURCES))
    n = draw(st.integers(1, 400))
    kind = draw(st.sampled_from(["grid", "counts", "any"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if np.dtype(source).kind in "iu":
        info = np.iinfo(source)
        lo = max(int(info.min), -5000) if kind != "counts" else 0
        values = rng.integers(lo, min(int(info.max), 5000), size=n)
        return values.astype(source)
    if kind == "grid":
        step = draw(st.sampled_from([0.1, 0.01, 0.25, 0.3, 1 / 3]))
        values = np.round(rng.integers(-50, 200, size=n) * step, 6)
    elif kind == "counts":
        values = rng.poisson(draw(st.floats(0.1, 30)), size=n).astype(np.float64)
    else:
        values = rng.normal(0, draw(st.sampled_from([1e-3, 1.0, 1e4])), size=n)
    col = values.astype(source)
    if draw(st.booleans()):
        col[rng.random(n) < 0.1] = np.nan
    if draw(st.booleans()) and n > 2:
        col[0], col[-1] = np.inf, -np.inf
    return col


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(col=columns(), served=st.sampled_from(SERVED), bins=st.integers(1, 20), split=st.integers(1, 70))
def test_served_rows_count_exactly_as_the_reference(col, served, bins, split):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DtypeWarning)  # rounding may merge values: that is the point
        profile = Profile.fit({"x": col}, bins=bins, dtypes={"x": served})
    feature = profile.features[0]
    if col.dtype.kind == "f":
        assert feature.dtype == served
    monitor = ModelMonitor(
        profile,
        model="m",
        version="1",
        inputs=[("x", [-1, 1])],
        outputs=[],
        config=MonitorConfig(window_s=1e9, slices=1),
    )
    # What the model gets: the column as the model's dtype, in requests of `split` rows
    # (single rows go through the staging buffer, larger batches straight to the kernel).
    tensor = col.astype(served).reshape(-1, 1)
    for start in range(0, tensor.shape[0], split):
        monitor.observe({"x": tensor[start : start + split]}, {})
    assert monitor.inputs.counts.tolist() == feature.counts
    # Offline, from the column as it was (a float64 CSV, say): the same counts, PSI 0.
    report = offline_report(profile, {"x": col}, MonitorConfig(min_rows=0))
    assert report["features"][0]["psi"] == 0.0
    assert report["status"] == "ok"


def test_discrete_float64_profile_on_a_float32_model():
    """The issue's case: values {0.1, 0.3, 0.7, 0.9, 1.3} profiled from a float64 CSV
    *without* saying the model's dtype still count exactly when served as float32 (edges
    lie between values), and offline agrees."""
    rng = np.random.default_rng(0)
    col = rng.choice([0.1, 0.3, 0.7, 0.9, 1.3], size=2000)
    profile = Profile.fit({"x": col})
    assert profile.features[0].dtype == "float64"
    monitor = ModelMonitor(
        profile, model="m", version="1", inputs=[("x", [-1])], outputs=[], config=MonitorConfig()
    )
    for row in col.astype(np.float32).reshape(-1, 1):
        monitor.observe({"x": row}, {})
    assert monitor.inputs.counts.tolist() == profile.features[0].counts
    (feature,) = [d for d in monitor.report() if d.name == "x"]
    assert feature.psi == 0.0 and feature.status == "ok"
    assert offline_report(profile, {"x": col})["features"][0]["psi"] == 0.0


def test_rounding_that_merges_values_is_warned_about():
    col = np.array([1.0, 1.0 + 1e-12, 2.0, 3.0] * 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Profile.fit({"x": col}, dtypes="float32")
    assert any(issubclass(w.category, DtypeWarning) and "distinct values" in str(w.message) for w in caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Profile.fit({"x": np.array([1e39, 1.0, 2.0])}, dtypes="float32")
    assert any("overflow" in str(w.message) for w in caught)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Profile.fit({"x": np.round(np.arange(0, 10, 0.1), 1)}, dtypes="float32")  # 0.1 steps: fine


def test_float32_categorical_levels_match_served_values():
    codes = np.array([0.1, 0.2, 0.7, 1.5] * 50)
    profile = Profile.fit({"c": codes}, categorical=["c"], dtypes="float32")
    assert profile.features[0].levels == [0.1, 0.2, 0.7, 1.5]  # written short
    monitor = ModelMonitor(
        profile, model="m", version="1", inputs=[("c", [-1])], outputs=[], config=MonitorConfig()
    )
    monitor.observe({"c": codes.astype(np.float32)}, {})
    assert monitor.inputs.counts.tolist() == profile.features[0].counts  # nothing in "other"
    assert offline_report(profile, {"c": codes})["features"][0]["psi"] == 0.0
