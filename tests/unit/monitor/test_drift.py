"""ModelMonitor and the statistics behind its statuses: the chi-square small-window
guard, counts against the numpy oracle, NaNs and unseen categories, the sliding
window on a fake clock, durability, and profile/signature mismatches."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from runtime.config import MonitorConfig
from runtime.errors import ConfigError
from runtime.monitor import _reference as ref
from runtime.monitor import drift as drift_mod
from runtime.monitor import histogram as histogram_mod
from runtime.monitor.drift import ModelMonitor, bin_labels
from runtime.monitor.profile import Profile


class FakeClock:
    """Stands in for the `time` module of histogram.py and drift.py."""

    def __init__(self, mono: float = 1000.0, wall: float = 1.7e9) -> None:
        self.mono = mono
        self.wall = wall

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def sleep(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock()
    monkeypatch.setattr(histogram_mod, "time", c)
    monkeypatch.setattr(drift_mod, "time", c)
    return c


def _monitor(profile, inputs, outputs=(), **config) -> ModelMonitor:
    return ModelMonitor(
        profile, model="m", version="1", inputs=inputs, outputs=list(outputs), config=MonitorConfig(**config)
    )


def _edges(profile: Profile, section: str = "features") -> list[np.ndarray]:
    return [np.asarray(f.edges, dtype=np.float64) for f in getattr(profile, section)]


def _by_name(report, section: str = "features"):
    return {d.name: d for d in report if d.section == section}


@pytest.fixture
def numeric_profile() -> Profile:
    rng = np.random.default_rng(0)
    return Profile.fit(rng.normal(size=(5000, 4)).astype(np.float32), bins=10)


# -- the rule, as the monitor applies it (the rule itself: test_rule.py) -----------------
def test_no_drift_windows_rarely_leave_ok(numeric_profile: Profile) -> None:
    """The guard's point: windows of min_rows.. rows drawn from the reference
    distribution keep the *model* ok (alpha 1% for all four features together; allow
    a little slack), although PSI alone is past 0.1 in most of them."""
    rng = np.random.default_rng(42)
    not_ok = past_band = total = 0
    for n in (100, 150, 300):
        for _ in range(40):
            mon = _monitor(numeric_profile, [("input", [-1, 4])])
            mon.observe({"input": rng.normal(size=(n, 4)).astype(np.float32)}, {})
            report = mon.report()
            total += 1
            not_ok += mon.status(report) != "ok"
            past_band += any(d.psi > 0.1 for d in report)
            assert all(0 <= d.p_value <= 1 for d in report)
    assert not_ok <= 0.03 * total, f"{not_ok} of {total} no-drift windows were flagged"
    assert past_band > 0.3 * total  # what a bare PSI > 0.1 rule would have flagged


# -- counts against the oracle ------------------------------------------------------
def test_single_matrix_counts_equal_oracle(numeric_profile: Profile) -> None:
    mon = _monitor(numeric_profile, [("input", [-1, 4])])
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(n, 4)).astype(np.float32) for n in (1, 7, 64, 300, 2)]
    batches.append(rng.normal(size=(5, 4)))  # float64 too
    for b in batches:
        mon.observe({"input": b}, {})
    allx = np.concatenate([b.astype(np.float64) for b in batches])
    np.testing.assert_array_equal(mon.inputs.counts, ref.count_numeric(allx, _edges(numeric_profile)))
    assert mon.window_rows == len(allx)
    report = mon.report()
    for j, d in enumerate(report):
        sl = slice(mon.inputs.offsets[j], mon.inputs.offsets[j + 1])
        c, e = mon.inputs.counts[sl], mon.inputs.expected[sl]
        assert d.psi == pytest.approx(ref.psi(e, c), rel=1e-9, abs=1e-12)
        assert d.js == pytest.approx(ref.js(e, c), rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(d.current, c / c.sum())
        np.testing.assert_allclose(d.reference, e / e.sum())
        assert d.rows == len(allx)
        assert len(d.bins) == len(c)


def test_one_column_tensors_map_by_name_in_any_order() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3000, 3))
    X[:, 1] *= 10
    X[:, 2] += 5
    profile = Profile.fit({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2]})
    # Signature order c, a, b; shapes [-1] and [-1, 1]; different dtypes.
    mon = _monitor(profile, [("c", [-1]), ("a", [-1, 1]), ("b", [-1])])
    seen = []
    for n in (3, 50, 400):
        Y = rng.normal(size=(n, 3)) * [1, 10, 1] + [0, 0, 5]
        mon.observe(
            {
                "c": Y[:, 2].astype(np.float32),
                "a": Y[:, 0].reshape(-1, 1),
                "b": Y[:, 1].astype(np.float32),
            },
            {},
        )
        seen.append(np.stack([Y[:, 0], Y[:, 1].astype(np.float32), Y[:, 2].astype(np.float32)], axis=1))
    expected = ref.count_numeric(np.concatenate(seen), _edges(profile))
    np.testing.assert_array_equal(mon.inputs.counts, expected)
    assert mon.status() == "ok"  # each feature counted against its own reference


def test_outputs_positional_matrix_and_vector() -> None:
    rng = np.random.default_rng(3)
    p1 = rng.random(2000)
    label = (p1 > 0.5).astype(np.int64)
    profile = Profile.fit(
        rng.normal(size=(2000, 2)),
        outputs={"probabilities[0]": 1 - p1, "probabilities[1]": p1, "label": label},
        categorical=["label"],
    )
    mon = _monitor(
        profile,
        [("input", [-1, 2])],
        [("probabilities", [-1, 2]), ("label", [-1])],
    )
    probs, labels = [], []
    for n in (1, 10, 333):
        q = rng.random(n).astype(np.float32)
        pr = np.stack([1 - q, q], axis=1)
        lab = (q > 0.3).astype(np.int64)
        lab[:2] = 7  # an unseen class: "other"
        mon.observe({"input": rng.normal(size=(n, 2))}, {"probabilities": pr, "label": lab})
        probs.append(pr)
        labels.append(lab)
    P, L = np.concatenate(probs), np.concatenate(labels)
    assert mon.outputs is not None
    out_names = [f.name for f in profile.outputs]
    assert out_names == ["probabilities[0]", "probabilities[1]", "label"]
    expected = np.concatenate(
        [
            ref.count_numeric(P, _edges(profile, "outputs")[:2]),
            ref.count_levels(L.tolist(), profile.outputs[2].levels),
        ]
    )
    np.testing.assert_array_equal(mon.outputs.counts, expected)
    assert mon.outputs.counts[-2] == 5  # "other": the unseen label 7, in 1 + 2 + 2 rows
    doc = mon.to_json()
    assert [o["name"] for o in doc["outputs"]] == out_names
    assert doc["outputs"][2]["bins"] == ["0", "1", "other", "missing"]


def test_nan_counts_as_missing_and_a_jump_in_nans_alerts(numeric_profile: Profile) -> None:
    mon = _monitor(numeric_profile, [("input", [-1, 4])])
    rng = np.random.default_rng(4)
    X = rng.normal(size=(4000, 4)).astype(np.float32)
    mon.observe({"input": X}, {})
    assert mon.status() == "ok"
    Y = rng.normal(size=(2000, 4)).astype(np.float32)
    Y[::3, 2] = np.nan  # a third of feature 2 goes missing
    mon.observe({"input": Y}, {})
    allx = np.concatenate([X, Y]).astype(np.float64)
    np.testing.assert_array_equal(mon.inputs.counts, ref.count_numeric(allx, _edges(numeric_profile)))
    f2 = slice(mon.inputs.offsets[2], mon.inputs.offsets[3])
    assert mon.inputs.counts[f2][-1] == len(Y[::3])
    report = _by_name(mon.report())
    assert report["f2"].bins[-1] == "missing"
    assert report["f2"].current[-1] == pytest.approx(len(Y[::3]) / 6000)
    assert report["f2"].psi > 0.2
    assert report["f2"].status == "alert"
    assert {report[n].status for n in ("f0", "f1", "f3")} == {"ok"}
    assert mon.status() == "alert"


def test_unseen_categories_from_strings_and_ints_count_as_other_and_drift() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    colors = rng.choice(np.array(["red", "green", "blue"], dtype=object), size=n)
    codes = rng.choice([1, 2, 3], size=n)
    profile = Profile.fit({"color": colors, "code": codes, "x": rng.normal(size=n)}, categorical=["code"])
    assert [f.kind for f in profile.features] == ["categorical", "categorical", "numeric"]
    mon = _monitor(profile, [("x", [-1]), ("code", [-1, 1]), ("color", [-1])])
    # No drift first: V2 BYTES arrive as bytes, INT64 as integers.
    m = 2000
    same = {
        "color": np.array([c.encode() for c in rng.choice(["red", "green", "blue"], size=m)], dtype=object),
        "code": rng.choice([1, 2, 3], size=(m, 1)).astype(np.int64),
        "x": rng.normal(size=m).astype(np.float32),
    }
    mon.observe(same, {})
    assert mon.status() == "ok"
    # Then half the rows bring a color and a code never seen in the reference.
    k = 1000
    new_color = np.array([b"red", b"purple"] * (k // 2), dtype=object)
    new_code = np.array([[2], [9]] * (k // 2), dtype=np.int64)
    mon.observe({"color": new_color, "code": new_code, "x": rng.normal(size=k).astype(np.float32)}, {})
    counts = mon.inputs.feature_counts()
    all_colors = list(same["color"]) + list(new_color)
    all_codes = np.concatenate([same["code"], new_code]).ravel().tolist()
    np.testing.assert_array_equal(counts["color"], ref.count_levels(all_colors, profile.features[0].levels))
    np.testing.assert_array_equal(counts["code"], ref.count_levels(all_codes, profile.features[1].levels))
    assert counts["color"][-2] == k // 2 and counts["code"][-2] == k // 2  # "other"
    report = _by_name(mon.report())
    assert report["color"].bins == ["blue", "green", "red", "other", "missing"]
    assert report["color"].status == "alert"
    assert report["code"].status == "alert"
    assert report["x"].status == "ok"
    assert mon.status() == "alert"


def test_reference_traffic_stays_ok_and_shifted_traffic_alerts(numeric_profile: Profile) -> None:
    rng = np.random.default_rng(6)
    mon = _monitor(numeric_profile, [("input", [-1, 4])])
    for _ in range(30):
        mon.observe({"input": rng.normal(size=(100, 4)).astype(np.float32)}, {})
    report = mon.report()
    assert mon.window_rows == 3000
    assert all(d.status == "ok" and d.psi < 0.05 for d in report), [(d.name, d.psi) for d in report]
    assert mon.status(report) == "ok"

    shifted = _monitor(numeric_profile, [("input", [-1, 4])])
    for _ in range(30):
        X = rng.normal(size=(100, 4)).astype(np.float32)
        X[:, 1] += 1.0  # one standard deviation
        X[:, 3] += 0.4  # a smaller shift: a warning, not an alert
        shifted.observe({"input": X}, {})
    report = _by_name(shifted.report())
    assert report["f1"].status == "alert"
    assert report["f3"].status == "warn", report["f3"].psi
    assert report["f0"].status == report["f2"].status == "ok"
    assert shifted.status() == "alert"
    doc = shifted.to_json()
    assert doc["status"] == "alert"
    assert doc["window"]["rows"] == 3000
    thresholds = {"warn_psi": 0.1, "alert_psi": 0.2, "alpha": 0.01, "min_rows": 100, "eps": 1e-4}
    assert doc["thresholds"] == thresholds


def test_small_window_stays_ok_even_far_from_reference(numeric_profile: Profile) -> None:
    mon = _monitor(numeric_profile, [("input", [-1, 4])])
    X = np.random.default_rng(7).normal(size=(99, 4)).astype(np.float32) + 3.0
    mon.observe({"input": X}, {})
    report = mon.report()
    assert all(d.psi > 1.0 for d in report)
    assert mon.status(report) == "ok"
    mon.observe({"input": X[:1]}, {})
    assert mon.status() == "alert"  # min_rows reached


def test_bin_labels(numeric_profile: Profile) -> None:
    f = numeric_profile.features[0]
    labels = bin_labels(f)
    assert len(labels) == f.n_slots
    assert labels[0] == f"<{f.edges[0]:.6g}"
    assert labels[-2] == f">={f.edges[-1]:.6g}" and labels[-1] == "missing"
    assert labels[1] == f"[{f.edges[0]:.6g},{f.edges[1]:.6g})"
    const = Profile.fit(np.ones((10, 1)), bins=1).features[0]
    assert bin_labels(const) == ["all", "missing"]


# -- sliding window -------------------------------------------------------------------
def test_sliding_window_drops_old_slices_and_empties_when_idle(numeric_profile: Profile, clock) -> None:
    mon = _monitor(numeric_profile, [("input", [-1, 4])], window_s=10.0, slices=5)  # 2 s slices
    rng = np.random.default_rng(8)
    A = rng.normal(size=(150, 4)).astype(np.float32)
    B = rng.normal(size=(120, 4)).astype(np.float32) + 2.0
    edges = _edges(numeric_profile)
    mon.observe({"input": A}, {})  # t = 0, slice [0, 2)
    clock.sleep(3.0)
    mon.observe({"input": B}, {})  # t = 3, slice [2, 4)
    both = ref.count_numeric(np.concatenate([A, B]), edges)
    mon.report()
    np.testing.assert_array_equal(mon.inputs.counts, both)
    assert mon.window_rows == 270

    clock.sleep(5.5)  # t = 8.5: the window [0, 10) still holds both
    mon.report()
    assert mon.window_rows == 270
    clock.sleep(2.0)  # t = 10.5: A's slice [0, 2) has left the window
    report = mon.report()
    np.testing.assert_array_equal(mon.inputs.counts, ref.count_numeric(B, edges))
    assert mon.window_rows == 120 and all(d.rows == 120 for d in report)
    assert mon.status(report) == "alert"  # only the shifted rows are left
    clock.sleep(2.0)  # t = 12.5: B's slice has gone too
    report = mon.report()
    assert mon.window_rows == 0
    assert not mon.inputs.counts.any()
    assert all(math.isnan(d.psi) and d.status == "ok" for d in report)
    assert mon.status(report) == "ok"
    # The totals since load keep everything.
    np.testing.assert_array_equal(mon.inputs.total_counts, both)
    assert mon.inputs.total_rows == 270
    totals = {name: c for _, name, c, _ in mon.bin_totals()}
    for j, f in enumerate(numeric_profile.features):
        np.testing.assert_array_equal(totals[f.name], both[mon.inputs.offsets[j] : mon.inputs.offsets[j + 1]])

    clock.sleep(3600.0)  # a long idle spell, then traffic again
    C = rng.normal(size=(10, 4)).astype(np.float32)
    mon.observe({"input": C}, {})
    mon.report()
    np.testing.assert_array_equal(mon.inputs.counts, ref.count_numeric(C, edges))
    assert mon.inputs.total_rows == 280
    np.testing.assert_array_equal(mon.inputs.total_counts, both + ref.count_numeric(C, edges))


def test_advance_with_explicit_now(numeric_profile: Profile, clock) -> None:
    from runtime.monitor.histogram import Histogram

    h = Histogram(numeric_profile, windows=3, seconds_per_window=1.0)
    X = np.zeros((5, 4), dtype=np.float32)
    h.update(X)  # slice [1000, 1001)
    h.advance(now=1001.5)
    h.update(X)  # slice [1001, 1002)
    assert h.rows == 10
    h.advance(now=1002.99)
    assert h.rows == 10
    h.advance(now=1003.0)  # [1000, 1001) leaves a 3 s window
    assert h.rows == 5
    h.advance(now=1004.0)
    assert h.rows == 0 and h.total_rows == 10
    np.testing.assert_array_equal(h.total_counts, 2 * ref.count_numeric(X, _edges(numeric_profile)))


# -- durability -----------------------------------------------------------------------
def _two_slices(profile: Profile, clock: FakeClock):
    """A monitor with rows A in its first 2 s slice and B in its second, at t = 2."""
    mon = _monitor(profile, [("input", [-1, 4])], window_s=10.0, slices=5)
    rng = np.random.default_rng(9)
    A = rng.normal(size=(130, 4)).astype(np.float32)
    B = rng.normal(size=(110, 4)).astype(np.float32) + 1.0
    mon.observe({"input": A}, {})
    clock.sleep(2.0)
    mon.observe({"input": B}, {})
    return mon, A, B


@pytest.mark.parametrize(
    ("age", "window"),
    [(0.0, "AB"), (1.5, "AB"), (7.0, "AB"), (9.0, "B"), (11.0, ""), (86_400.0, "")],
)
def test_state_restore_round_trip_with_aging(
    numeric_profile: Profile, clock: FakeClock, age: float, window: str
) -> None:
    mon, A, B = _two_slices(numeric_profile, clock)
    edges = _edges(numeric_profile)
    saved = mon.state()
    # Through .npz as the server stores it: 0-d arrays come back as scalars.
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in saved.items()})
    buf.seek(0)
    with np.load(buf) as data:
        state = {k: (data[k].item() if data[k].ndim == 0 else data[k]) for k in data.files}

    clock.sleep(age)  # the restarted process starts `age` seconds later
    clock.mono = 5.0  # ... and with a monotonic clock of its own
    fresh = _monitor(numeric_profile, [("input", [-1, 4])], window_s=10.0, slices=5)
    assert fresh.restore(state) is True
    fresh.report()
    rows = {"A": A, "B": B}
    in_window = [rows[k] for k in window]
    expected = (
        ref.count_numeric(np.concatenate(in_window), edges)
        if in_window
        else np.zeros_like(fresh.inputs.counts)
    )
    np.testing.assert_array_equal(fresh.inputs.counts, expected)
    assert fresh.window_rows == sum(len(r) for r in in_window)
    both = ref.count_numeric(np.concatenate([A, B]), edges)
    np.testing.assert_array_equal(fresh.inputs.total_counts, both)
    assert fresh.inputs.total_rows == len(A) + len(B)
    # Counting goes on into the restored window.
    C = np.random.default_rng(10).normal(size=(20, 4)).astype(np.float32)
    fresh.observe({"input": C}, {})
    fresh.report()
    np.testing.assert_array_equal(fresh.inputs.counts, expected + ref.count_numeric(C, edges))
    np.testing.assert_array_equal(fresh.inputs.total_counts, both + ref.count_numeric(C, edges))
    assert fresh.window_rows == sum(len(r) for r in in_window) + 20


def test_state_round_trip_with_outputs(clock) -> None:
    rng = np.random.default_rng(11)
    profile = Profile.fit(rng.normal(size=(500, 2)), outputs=rng.normal(size=(500, 1)), output_names=["y"])
    mon = _monitor(profile, [("x", [-1, 2])], [("y", [-1])])
    mon.observe({"x": rng.normal(size=(40, 2))}, {"y": rng.normal(size=40)})
    state = mon.state()
    assert state["fingerprint"] == profile.fingerprint
    fresh = _monitor(profile, [("x", [-1, 2])], [("y", [-1])])
    assert fresh.restore(state)
    assert fresh.outputs is not None and mon.outputs is not None
    np.testing.assert_array_equal(fresh.outputs.counts, mon.outputs.counts)
    np.testing.assert_array_equal(fresh.inputs.counts, mon.inputs.counts)
    assert fresh.to_json()["window"]["rows"] == 40


def test_restore_ignores_state_of_another_profile(numeric_profile: Profile, clock) -> None:
    mon, _, _ = _two_slices(numeric_profile, clock)
    other = Profile.fit(np.random.default_rng(99).normal(size=(5000, 4)).astype(np.float32), bins=10)
    assert other.fingerprint != numeric_profile.fingerprint
    fresh = _monitor(other, [("input", [-1, 4])], window_s=10.0, slices=5)
    assert fresh.restore(mon.state()) is False
    assert fresh.window_rows == 0 and not fresh.inputs.total_counts.any()


# -- profile vs signature -------------------------------------------------------------
def test_wrong_column_count_is_a_config_error(numeric_profile: Profile) -> None:
    with pytest.raises(ConfigError, match=r"model 'm'.*4 features.*\['input'\] have 20 columns"):
        _monitor(numeric_profile, [("input", [-1, 20])])
    with pytest.raises(ConfigError, match=r"4 features.*have 5 columns"):
        _monitor(numeric_profile, [("input", [-1, 3]), ("extra", [-1, 2])])


def test_tensor_names_not_matching_is_a_config_error() -> None:
    rng = np.random.default_rng(12)
    profile = Profile.fit({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    with pytest.raises(ConfigError, match=r"2 features \['a', 'b'\].*\['a', 'c', 'd'\] have 3 columns"):
        _monitor(profile, [("a", [-1]), ("c", [-1]), ("d", [-1])])


def test_feature_named_after_another_tensor_is_a_config_error() -> None:
    """Profile feature 'b' must never be fed from tensor 'a' while tensor 'b' exists."""
    rng = np.random.default_rng(13)
    profile = Profile.fit({"b": rng.normal(size=100), "x": rng.normal(size=100)})
    with pytest.raises(ConfigError, match="'b'"):
        _monitor(profile, [("a", [-1]), ("b", [-1])])


def test_three_d_tensor_is_a_config_error(numeric_profile: Profile) -> None:
    with pytest.raises(ConfigError, match=r"\['img'\] are not \[-1\] or \[-1, k\]"):
        _monitor(numeric_profile, [("img", [-1, 2, 2])])
    # A tensor the profile does not need may have any shape when features map by name.
    rng = np.random.default_rng(14)
    profile = Profile.fit({"a": rng.normal(size=100)})
    mon = _monitor(profile, [("img", [-1, 2, 2]), ("a", [-1])])
    mon.observe({"img": np.zeros((3, 2, 2), np.float32), "a": np.zeros(3, np.float32)}, {})
    assert mon.window_rows == 3


def test_output_mismatch_is_a_config_error() -> None:
    rng = np.random.default_rng(15)
    profile = Profile.fit(rng.normal(size=(100, 2)), outputs=rng.normal(size=(100, 3)))
    with pytest.raises(ConfigError, match=r"\(outputs\).*3 outputs.*have 2 columns"):
        _monitor(profile, [("x", [-1, 2])], [("probabilities", [-1, 2])])


def test_integer_categorical_in_a_float_matrix_counts_nan_as_missing() -> None:
    rng = np.random.default_rng(16)
    profile = Profile.fit(
        {"code": rng.choice([1, 2, 3], size=300).astype(np.int64), "x": rng.normal(size=300)},
        categorical=["code"],
    )
    mon = _monitor(profile, [("input", [-1, 2])])
    X = np.array([[1, 0.5], [np.nan, 0.1], [7, 0.2], [2.5, np.nan], [3, 0.0]], dtype=np.float32)
    mon.observe({"input": X}, {})
    counts = mon.inputs.feature_counts()
    levels = profile.features[0].levels
    np.testing.assert_array_equal(counts["code"], ref.count_levels(X[:, 0].tolist(), levels))
    np.testing.assert_array_equal(counts["code"], [1, 0, 1, 2, 1])  # 7 and 2.5 are "other"
    np.testing.assert_array_equal(counts["x"], ref.count_numeric(X[:, 1:], _edges(profile)[1:]))
