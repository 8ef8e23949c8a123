"""Profile.fit edges, counts and the JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from runtime.monitor import _reference as ref
from runtime.monitor.profile import SCHEMA_VERSION, FeatureProfile, Profile, quantile_edges


def test_deciles_of_uniform_data():
    x = np.arange(1000, dtype=np.float64)
    edges = quantile_edges(x, 10)
    # Halfway between the decile value and the value below it: the same split, no value on an edge.
    np.testing.assert_array_equal(edges, np.arange(100, 1000, 100) - 0.5)
    counts = ref.count_numeric(x, [edges])
    assert counts.tolist() == [100] * 10 + [0]


def test_edges_are_short_decimals_between_values():
    x = np.round(np.arange(0, 10, 0.1), 1)  # readings in steps of 0.1
    edges = quantile_edges(x, 10)
    assert edges.tolist() == [0.95, 1.95, 2.95, 3.95, 4.95, 5.95, 6.95, 7.95, 8.95]
    x32 = x.astype(np.float32)
    e32 = quantile_edges(x32, 10)
    assert ref.count_numeric(x32, [e32]).tolist() == [10] * 10 + [0]


def test_ties_and_constant_columns_never_zero_width():
    ties = np.r_[np.zeros(700), np.arange(300.0)]
    edges = quantile_edges(ties, 10)
    assert np.all(np.diff(edges) > 0)
    assert edges.tolist() == [99.5, 199.5]  # no edge below the smallest value, 0
    assert quantile_edges(np.full(50, 3.0), 10).size == 0  # one bin: "all"
    assert quantile_edges(np.array([np.nan, np.nan]), 10).size == 0
    assert quantile_edges(np.array([1.0, 2.0]), 1).size == 0
    inf = quantile_edges(np.array([-np.inf] * 5 + [1.0, 2.0] + [np.inf] * 5), 4)
    assert np.all(np.isfinite(inf))


def test_fit_numpy_counts_nulls_and_categoricals():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 3)).astype(np.float32)
    X[:100, 1] = np.nan
    X[:, 2] = rng.integers(0, 4, size=2000)
    prof = Profile.fit(X, bins=5, categorical=["f2"])
    f0, f1, f2 = prof.features
    assert (f0.kind, f2.kind) == ("numeric", "categorical")
    assert len(f0.edges) == 4 and len(f0.counts) == 6
    assert f1.counts[-1] == 100 and f1.null_fraction == pytest.approx(0.05)
    assert f2.levels == [0, 1, 2, 3] and sum(f2.counts[:4]) == 2000
    for f, col in zip((f0, f1), (X[:, 0], X[:, 1]), strict=True):
        assert f.counts == ref.count_numeric(col, [np.array(f.edges)]).tolist()
    assert prof.row_count == 2000 and prof.fingerprint.startswith("blake2b:")


def test_fingerprint_tracks_data():
    X = np.arange(20.0).reshape(10, 2)
    assert Profile.fit(X).fingerprint == Profile.fit(X.copy()).fingerprint
    Y = X.copy()
    Y[0, 0] = 1.5
    assert Profile.fit(X).fingerprint != Profile.fit(Y).fingerprint


def test_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    data = {
        "x": rng.normal(size=500),
        "city": np.array(["a", "b", None, "c", "a"] * 100, dtype=object),
    }
    preds = {"score": rng.uniform(size=500)}
    prof = Profile.fit(data, outputs=preds, max_levels=2)
    city = prof.feature("city")
    assert city.levels == ["a", "b"]  # "c" is past max_levels: counted as other
    assert city.counts == [200, 100, 100, 100]
    path = tmp_path / "ref.json"
    prof.save(path)
    doc = json.loads(path.read_text())
    assert doc["version"] == SCHEMA_VERSION
    assert set(doc["features"][0]) >= {"name", "kind", "edges", "counts"}
    assert doc["outputs"][0]["name"] == "score"
    assert Profile.load(path) == prof


def test_load_rejects_other_versions_and_bad_records(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(json.dumps({"schema": "mlrt.profile", "version": 99, "features": []}))
    with pytest.raises(ValueError, match="version 99"):
        Profile.load(path)
    with pytest.raises(ValueError, match="needs 3 counts"):
        FeatureProfile(name="x", kind="numeric", counts=[1, 2], edges=[0.0])


def test_fit_parquet_and_csv(tmp_path):
    table = pa.table(
        {"a": [1.0, 2.0, None, 4.0] * 25, "b": ["x", "y", "x", None] * 25, "n": list(range(100))}
    )
    pq.write_table(table, tmp_path / "d.parquet")
    pacsv.write_csv(table, tmp_path / "d.csv")
    for name in ("d.parquet", "d.csv"):
        prof = Profile.fit(tmp_path / name, bins=4, exclude=["n"])
        assert prof.names == ["a", "b"]
        assert prof.feature("a").null_fraction == pytest.approx(0.25)
        assert prof.feature("b").kind == "categorical"
        assert prof.feature("b").counts == [50, 25, 0, 25]
    with pytest.raises(ValueError, match="no such column"):
        Profile.fit(tmp_path / "d.csv", categorical=["nope"])


def test_fit_a_pandas_frame_by_its_column_names():
    # A DataFrame was read as one 2-D array: features f0, f1, ... and, for pandas' nullable
    # dtypes, an object matrix in which pd.NA became the level "<NA>".
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "ozone": pd.Series([41, None, 12, 18] * 50, dtype="Int64"),
            "wind": pd.Series([7.4, 8.0, None, 11.5] * 50, dtype="Float64"),
            "cut": pd.Series(["Ideal", None, "Good", "Ideal"] * 50, dtype="string"),
            "color": pd.Series(["E", "I", None, "E"] * 50, dtype="category"),
        }
    )
    p = Profile.fit(frame)
    by_name = {f.name: f for f in p.features}
    assert list(by_name) == ["ozone", "wind", "cut", "color"]
    assert [f.kind for f in p.features] == ["numeric", "numeric", "categorical", "categorical"]
    assert all(f.null_fraction == 0.25 for f in p.features)
    assert by_name["cut"].levels == ["Good", "Ideal"] and by_name["color"].levels == ["E", "I"]
    # The same numbers as numpy columns give the same profile.
    plain = Profile.fit(
        {
            "ozone": frame["ozone"].to_numpy(dtype=float, na_value=np.nan),
            "wind": frame["wind"].to_numpy(dtype=float, na_value=np.nan),
            "cut": np.array(frame["cut"].to_numpy(dtype=object, na_value=None)),
            "color": np.array(frame["color"].to_numpy(dtype=object, na_value=None)),
        }
    )
    assert [f.counts for f in p.features] == [f.counts for f in plain.features]
    renamed = Profile.fit(frame[["ozone", "wind"]], names=["a", "b"])
    assert [f.name for f in renamed.features] == ["a", "b"]
