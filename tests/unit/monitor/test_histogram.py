"""Histogram: streaming counts, drift statistics, windows and merging."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from runtime.monitor import Histogram, Profile
from runtime.monitor import _reference as ref


@pytest.fixture
def profile():
    rng = np.random.default_rng(0)
    return Profile.fit(rng.normal(size=(5000, 4)), bins=10)


def _expected(profile, X):
    return ref.count_numeric(X, [np.array(f.edges) for f in profile.features])


def test_update_matches_oracle_for_every_input_form(profile):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 4))
    X[5, 2] = np.nan
    for form in (X, X.astype(np.float32), np.asfortranarray(X), X.astype(np.float32)[::-1]):
        h = Histogram(profile)
        h.update(form)
        np.testing.assert_array_equal(h.counts, _expected(profile, form))
        assert h.rows == 300
    h = Histogram(profile)
    for row in X:
        h.update(row)
    np.testing.assert_array_equal(h.counts, _expected(profile, X))
    h = Histogram(profile)
    h.update({f"f{j}": X[:, j] for j in range(4)})
    h.update(pa.table({f"f{j}": X[:, j] for j in range(4)}))
    h.update(np.round(np.nan_to_num(X)).astype(np.int64))
    assert h.rows == 900


def test_rejects_wrong_width(profile):
    h = Histogram(profile)
    with pytest.raises(ValueError, match="4 features"):
        h.update(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="lacks"):
        h.update({"f0": np.zeros(2)})


def test_psi_js_against_reference(profile):
    h = Histogram(profile)
    assert np.isnan(h.psi()).all()
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4000, 4))
    X[:, 3] += 1.0
    h.update(X)
    psi, js = h.psi(), h.js()
    for j, f in enumerate(profile.features):
        cur = h.feature_counts()[f.name]
        assert psi[j] == pytest.approx(ref.psi(np.array(f.counts), cur))
        assert js[j] == pytest.approx(ref.js(np.array(f.counts), cur))
    assert psi[:3].max() < 0.1 < 0.2 < psi[3]


def test_windows_rotate_by_rows_and_merge(profile):
    rng = np.random.default_rng(3)
    chunks = [rng.normal(size=(100, 4)) for _ in range(5)]
    h = Histogram(profile, windows=2, rows_per_window=100)
    for c in chunks:
        h.update(c)
    np.testing.assert_array_equal(h.counts, _expected(profile, np.vstack(chunks[-2:])))
    assert h.rows == 200
    other = Histogram(profile)
    other.update(chunks[0])
    h.merge(other)
    h.merge(other.counts)
    assert h.rows == 400
    h.reset()
    assert h.rows == 0 and not h.counts.any()


def test_categorical_features_and_bytes():
    rng = np.random.default_rng(4)
    data = {
        "x": rng.normal(size=600),
        "city": np.array(["a", "b", "c"] * 200, dtype=object),
        "code": np.array([1, 2] * 300),
    }
    prof = Profile.fit(data, categorical=["code"])
    h = Histogram(prof)
    cur = np.empty((4, 3), dtype=object)
    cur[:, 0] = [0.0, 1.0, np.nan, 2.0]
    cur[:, 1] = [b"a", "b", "zzz", None]
    cur[:, 2] = [1, 2, 3, 2]
    h.update(cur)
    counts = h.feature_counts()
    assert counts["city"].tolist() == [1, 1, 0, 1, 1]
    assert counts["code"].tolist() == [1, 2, 1, 0]
    assert counts["x"][-1] == 1
    chi, dof = h.chi2()
    assert chi.shape == (3,) and dof[1] >= 0
    # Numeric matrix input reaches the float level kernel for "code".
    num_prof = Profile.fit(np.c_[rng.normal(size=100), rng.integers(0, 3, 100)], categorical=["f1"])
    h = Histogram(num_prof)
    h.update(np.array([[0.0, 1.0], [0.5, 7.0], [0.1, np.nan]]))
    assert h.feature_counts()["f1"].tolist()[-2:] == [1, 1]


def test_outputs_section(profile):
    rng = np.random.default_rng(5)
    prof = Profile.fit(rng.normal(size=(100, 2)), outputs=rng.uniform(size=(100, 1)), output_names=["score"])
    h = Histogram(prof, section="outputs")
    h.update(np.array([[0.5]]))
    assert h.names == ["score"] and h.rows == 1
