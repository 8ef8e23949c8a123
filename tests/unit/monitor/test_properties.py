"""Properties of reference profiles and of the histogram's sliding window, on arbitrary data.

Profile.fit, on any numeric column (float16/32/64 with ties, NaN, +-inf, constant and
one-row columns; integers and bools): the inner edges are finite, strictly increasing,
at most bins-1 of them, each in its own gap between two adjacent distinct values (so no
bin is empty); the data split exactly where the documented quantile rule splits it;
the counts are the `_reference` oracle's (bins, then NaN), sum to the rows and give the
null fraction; low/high are the finite extremes; fitting depends on the values only
(same data, same profile; shuffled rows, same bins). A column fitted in a narrower
serving dtype is the same profile as the column rounded to it first, and the histogram
counts the reference rows back into exactly the profile's counts, whatever dtype they
arrive in. Categorical columns (text with None/NaN, integer and bool codes, float64
values) keep at most max_levels of the most frequent finite levels, sorted, with the
oracle's level/other/missing counts (an infinity counts as "other"), and the histogram
counts the reference rows back into them. Every fitted profile survives its JSON
(to_json/from_json and save/load), float columns with infinities fitted as categorical
included. Three regressions found by these properties are pinned: float64 rows past a
float32 feature's range counted without a RuntimeWarning, bool categoricals counted into
their levels, infinite categorical levels.

Histogram, against a model that keeps every sub-window's counts in a list (the window is
the sum of the last `slices`): after every step of any sequence of update, count_now,
rotate, advance (explicit `now` or the clock), time passing, merge, reset and
state/restore (aged or not) the window counts and rows are the model's, the totals are
everything counted since the last reset, each feature's window counts sum to the rows,
and `due` says exactly when a time slice has ended. Time windows are built from a
MonitorConfig as ModelMonitor builds them; the module's clock is a fake one, so nothing
depends on wall time.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from runtime.config import MonitorConfig
from runtime.monitor import FeatureProfile, Histogram, Profile
from runtime.monitor import _reference as ref
from runtime.monitor import histogram as histogram_module
from runtime.monitor.profile import DtypeWarning

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLOATS = ("float16", "float32", "float64")
INTS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool")
SPECIALS = (math.nan, math.inf, -math.inf)
BINS = st.integers(1, 12)


# -- strategies -------------------------------------------------------------------------------
@st.composite
def float_columns(draw: st.DrawFn, n: int | None = None, dtypes: tuple[str, ...] = FLOATS) -> np.ndarray:
    """A float column: few distinct values (ties), anything, or one value; NaN and +-inf in any."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    finite = st.floats(width=dtype.itemsize * 8, allow_nan=False, allow_infinity=False)
    n = draw(st.integers(1, 60)) if n is None else n
    mode = draw(st.sampled_from(["ties", "spread", "constant"]))
    pool = draw(st.lists(finite, min_size=1, max_size=1 if mode == "constant" else 6))
    specials = st.sampled_from(SPECIALS) if mode != "constant" else st.just(math.nan)
    common = st.sampled_from(pool) if mode != "spread" else finite
    # The specials are one draw in ~five, a column of only specials still happens.
    elements = st.one_of(common, common, common, common, specials)
    return np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=dtype)


@st.composite
def int_columns(draw: st.DrawFn, n: int | None = None, dtypes: tuple[str, ...] = INTS) -> np.ndarray:
    """An integer (or bool) column, within the range binned exactly as float64."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    n = draw(st.integers(1, 60)) if n is None else n
    if dtype.kind == "b":
        return draw(hnp.arrays(dtype, n, elements=st.booleans()))
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -(2**53)), min(int(info.max), 2**53)
    values = st.one_of(st.integers(lo, hi), st.integers(max(lo, -3), min(hi, 3)))
    return draw(hnp.arrays(dtype, n, elements=values))


numeric_columns = st.one_of(float_columns(), float_columns(), int_columns())


@st.composite
def text_columns(draw: st.DrawFn, n: int | None = None) -> np.ndarray:
    """An object column of short strings, None and NaN (both missing)."""
    pool = draw(st.lists(st.text(max_size=3), min_size=1, max_size=8, unique=True))
    n = draw(st.integers(1, 60)) if n is None else n
    elements = st.one_of(st.sampled_from(pool), st.sampled_from(pool), st.none(), st.just(math.nan))
    col = np.empty(n, dtype=object)
    col[:] = draw(st.lists(elements, min_size=n, max_size=n))
    return col


# -- helpers ----------------------------------------------------------------------------------
def fit_one(col: np.ndarray, bins: int = 10, **kw: Any) -> FeatureProfile:
    prof = Profile.fit({"x": col}, bins=bins, **kw)
    assert prof.row_count == col.shape[0] and [f.name for f in prof.features] == ["x"]
    return prof.features[0]


def as_float64(col: np.ndarray) -> np.ndarray:
    return col.astype(np.float64)  # exact for every float dtype and integers below 2**53


def round_trip(prof: Profile) -> None:
    """The profile survives its JSON document and its file, unchanged; saving is stable."""
    text = json.dumps(prof.to_json(), allow_nan=False)
    assert Profile.from_json(json.loads(text)) == prof
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ref.json"
        prof.save(path)
        again = Profile.load(path)
        assert again == prof
        first = path.read_text(encoding="utf-8")
        again.save(path)
        assert path.read_text(encoding="utf-8") == first


# -- profile: numeric edges and counts ------------------------------------------------------------
@SETTINGS
@given(col=numeric_columns, bins=BINS)
def test_numeric_edges_sit_in_distinct_gaps_and_counts_are_the_oracles(col: np.ndarray, bins: int) -> None:
    f = fit_one(col, bins)
    x = as_float64(col)
    nan = np.isnan(x)
    edges = np.asarray(f.edges, dtype=np.float64)
    assert f.kind == "numeric" and f.dtype == col.dtype.name
    assert np.all(np.isfinite(edges)) and np.all(np.diff(edges) > 0)
    assert len(edges) <= bins - 1
    # Bins then the missing bucket, exactly the oracle's counts of the column.
    assert len(f.counts) == len(edges) + 2
    assert f.counts == ref.count_numeric(col, [edges]).tolist()
    assert sum(f.counts) == col.shape[0]
    assert f.counts[-1] == int(nan.sum())
    assert f.null_fraction == nan.sum() / col.shape[0]
    # Each edge lies in (u[i-1], u[i]] for adjacent distinct values, one edge per gap: never
    # an edge below the smallest value or above the largest, never an empty bin.
    u = np.unique(x[~nan])
    i = np.searchsorted(u, edges, side="left")
    assert np.all(i > 0) and np.all(i < u.size)
    assert np.all(u[i - 1] < edges) and np.all(edges <= u[i])
    assert np.unique(i).size == i.size
    if u.size:
        assert min(f.counts[:-1]) > 0
    else:
        assert f.counts == [0, col.shape[0]]
    finite = x[np.isfinite(x)]
    if finite.size:
        assert (f.low, f.high) == (finite.min(), finite.max())
    else:
        assert (f.low, f.high) == (None, None)


@SETTINGS
@given(col=numeric_columns, bins=BINS)
def test_numeric_edges_split_the_data_at_the_quantile_candidates(col: np.ndarray, bins: int) -> None:
    # The rule of quantile_edges: candidates are the floor(k * n / bins)-th smallest values
    # (k = 1 .. bins-1, at most the largest); the data split as at each finite candidate
    # that has a value below it; ties merge. The rows below each edge say where it split.
    f = fit_one(col, bins)
    x = as_float64(col)
    s = np.sort(x[~np.isnan(x)])
    n = s.size
    cuts: set[int] = set()
    if n:
        for r in np.minimum(np.arange(1, bins) * n // bins, n - 1):
            if np.isfinite(s[r]):
                cuts.add(int(np.searchsorted(s, s[r], side="left")))
    cuts.discard(0)
    below = np.searchsorted(s, np.asarray(f.edges, dtype=np.float64), side="left")
    assert below.tolist() == sorted(cuts)


@settings(SETTINGS, max_examples=60)
@given(col=numeric_columns, bins=BINS, data=st.data())
def test_fit_is_deterministic_and_depends_on_values_not_row_order(
    col: np.ndarray, bins: int, data: st.DataObject
) -> None:
    first = Profile.fit({"x": col}, bins=bins)
    assert Profile.fit({"x": col.copy()}, bins=bins) == first
    order = np.array(data.draw(st.permutations(range(col.shape[0]))), dtype=np.int64)
    shuffled = Profile.fit({"x": col[order]}, bins=bins)
    assert shuffled.features == first.features and shuffled.row_count == first.row_count


@SETTINGS
@given(col=float_columns(), bins=BINS, served=st.sampled_from(FLOATS))
def test_a_served_dtype_bins_the_rounded_values_and_the_monitor_counts_them_back(
    col: np.ndarray, bins: int, served: str
) -> None:
    x = as_float64(col)
    with np.errstate(over="ignore"):
        rounded = x.astype(served)
    # Values that overflow `served` are sent as the infinity they become (see the test below).
    x = np.where(np.isfinite(x) & ~np.isfinite(rounded), rounded, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DtypeWarning)  # rounding may merge values: that is the point
        prof = Profile.fit({"x": x}, bins=bins, dtypes=served)
    f = prof.features[0]
    assert f.dtype == served
    # Rounding first, then fitting in the column's own dtype, is the same profile.
    assert [f] == Profile.fit({"x": rounded}, bins=bins).features
    # The reference rows, counted by the monitor as float64 (a CSV) or as served (the tensor).
    for rows in (x, rounded):
        h = Histogram(prof)
        h.update(rows.reshape(-1, 1))
        assert h.counts.tolist() == f.counts and h.rows == col.shape[0]


@settings(SETTINGS, max_examples=10)
@given(value=st.floats(min_value=3.5e38, max_value=1.7e308))
def test_counting_float64_rows_that_overflow_a_float32_feature_is_silent(value: float) -> None:
    # Regression: Histogram.rounded cast without np.errstate, so numpy's "overflow encountered
    # in cast" RuntimeWarning went off on the serving path (an error under filterwarnings=error).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DtypeWarning)
        prof = Profile.fit({"x": np.array([1.0, 2.0, 3.0, value])}, bins=4, dtypes="float32")
    h = Histogram(prof)
    h.update(np.array([[value]]))
    assert h.counts.tolist()[-2:] == [1, 0]  # +inf as served: the top bin, like the reference's


# -- profile: categorical levels ----------------------------------------------------------------
@SETTINGS
@given(
    col=st.one_of(text_columns(), int_columns(), float_columns(dtypes=("float64",))),
    max_levels=st.integers(1, 6),
)
def test_categorical_keeps_the_most_frequent_levels_sorted_with_the_oracles_counts(
    col: np.ndarray, max_levels: int
) -> None:
    f = fit_one(col, categorical=["x"], max_levels=max_levels)
    assert f.kind == "categorical"
    values = col.tolist()
    missing = [v for v in values if v is None or (isinstance(v, float) and math.isnan(v))]
    freq = Counter(v for v in values if not (v is None or (isinstance(v, float) and math.isnan(v))))
    infinite = sum(c for v, c in freq.items() if isinstance(v, float) and math.isinf(v))
    freq = Counter({v: c for v, c in freq.items() if not (isinstance(v, float) and math.isinf(v))})
    assert f.levels == sorted(set(f.levels)) and len(f.levels) <= max_levels
    assert len(f.counts) == len(f.levels) + 2
    assert f.counts == ref.count_levels(values, f.levels).tolist()
    assert sum(f.counts) == col.shape[0] and f.counts[-1] == len(missing)
    assert f.null_fraction == len(missing) / col.shape[0]
    # Levels are values seen; no dropped level is more frequent than a kept one.
    kept = [freq[v] for v in f.levels]
    dropped = [c for v, c in freq.items() if v not in set(f.levels)]
    assert min(kept, default=1) > 0
    assert len(f.levels) == min(max_levels, len(freq))
    assert not dropped or min(kept) >= max(dropped)
    assert f.counts[-2] == sum(dropped) + infinite  # infinities are never levels: "other"
    # The monitor counts the reference rows back into the profile's counts.
    h = Histogram(Profile(features=[f], row_count=col.shape[0]))
    h.update({"x": col})
    assert h.counts.tolist() == f.counts


@settings(SETTINGS, max_examples=10)
@given(col=int_columns(dtypes=("bool",)))
def test_a_bool_column_fitted_as_categorical_counts_back_into_its_levels(col: np.ndarray) -> None:
    # Regression: a bool column (any bool model output, see model_profile._outputs) got the
    # text levels 'False'/'True', while the histogram counts bools as 0/1: every row was "other".
    f = fit_one(col, categorical=["x"])
    assert set(f.levels) <= {0, 1}
    h = Histogram(Profile(features=[f], row_count=col.shape[0]))
    h.update({"x": col})
    assert h.counts.tolist() == f.counts


# -- profile: JSON -------------------------------------------------------------------------------
@st.composite
def frames(draw: st.DrawFn) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    n = draw(st.integers(1, 40))
    data = {
        "num": draw(float_columns(n)),
        "int": draw(int_columns(n)),
        "code": draw(int_columns(n)),
        "text": draw(text_columns(n)),
        "level": draw(float_columns(n)),
    }
    outputs = {"score": draw(float_columns(n))}
    return data, outputs


@settings(SETTINGS, max_examples=60)
@given(frame=frames(), bins=BINS, max_levels=st.integers(1, 6))
def test_every_fitted_profile_round_trips_through_its_json(
    frame: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], bins: int, max_levels: int
) -> None:
    data, outputs = frame
    kw: dict[str, Any] = {"bins": bins, "categorical": ["code", "level"], "max_levels": max_levels}
    prof = Profile.fit(data, outputs=outputs, **kw)
    assert Profile.fit(data, outputs=outputs, **kw) == prof
    assert [f.kind for f in prof.features] == ["numeric", "numeric"] + ["categorical"] * 3
    round_trip(prof)


@settings(SETTINGS, max_examples=30)
@given(col=float_columns(), sign=st.sampled_from([1.0, -1.0]))
def test_a_float_column_with_infinities_fitted_as_categorical_round_trips(
    col: np.ndarray, sign: float
) -> None:
    # Regression: +-inf was kept as a level, which Profile.save's json.dumps(allow_nan=False)
    # refused, so `mlrt profile data.csv --categorical col` fitted a profile it could not save.
    # An infinity is no level: it counts as "other", in the profile and when served.
    col = np.append(col, sign * np.inf).astype(col.dtype)
    prof = Profile.fit({"x": col}, categorical=["x"])
    f = prof.features[0]
    assert all(math.isfinite(v) for v in f.levels)
    round_trip(prof)
    h = Histogram(prof)
    h.update({"x": col})
    assert h.counts.tolist() == f.counts


# -- histogram: the sliding window against a model ---------------------------------------------------
def _ref_rows(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(size=n),
        "b": rng.normal(size=n).astype(np.float32).astype(np.float64),  # float32 exactly: no warning
        "c": rng.integers(0, 4, size=n),
    }


_REF = _ref_rows(400, 11)
#: Numeric only (the fast path for float32 rows), and with a categorical feature (the slow path).
NUMERIC = Profile.fit({k: _REF[k] for k in "ab"}, bins=5, dtypes={"b": "float32"})
MIXED = Profile.fit(_REF, bins=5, categorical=["c"], dtypes={"b": "float32"})
SLICE_S = 8.0  # every time below is a multiple of 1/4 s: exact floats, exact slice arithmetic
T0 = 1000.0

batch_values = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 0.5, 1.0, 2.0, 3.0, 7.0]),
    st.floats(-4, 4, width=32),
)
batches = st.tuples(st.sampled_from([np.float32, np.float64]), st.integers(0, 6)).flatmap(
    lambda t: hnp.arrays(t[0], (t[1], 3), elements=batch_values)
)


def batch_counts(profile: Profile, batch: np.ndarray) -> np.ndarray:
    """What a batch adds to the flat counts: each column rounded to its feature's dtype, binned
    by the numpy oracle (numeric) or looked up in the levels (categorical)."""
    out = []
    for j, f in enumerate(profile.features):
        col = batch[:, j]
        if f.kind == "numeric":
            out.append(ref.count_numeric(col.astype(f.dtype), [np.asarray(f.edges, dtype=np.float64)]))
        else:
            out.append(ref.count_levels(col.astype(np.float64).tolist(), f.levels))
    return np.concatenate(out)


class FakeClock:
    """Stands in for the `time` module inside histogram.py: `monotonic` is `now`."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


class WindowMachine(RuleBasedStateMachine):
    """Histogram against a list of per-slice counts whose last `n` make the window."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(T0)
        self._clock_patch = mock.patch.object(histogram_module, "time", self.clock)
        self._clock_patch.start()

    def teardown(self) -> None:
        self._clock_patch.stop()

    @initialize(
        profile=st.sampled_from([NUMERIC, MIXED]),
        slices=st.integers(1, 4),
        mode=st.sampled_from(["manual", "rows", "time", "time"]),
        rows_per_window=st.integers(1, 8),
    )
    def create(self, profile: Profile, slices: int, mode: str, rows_per_window: int) -> None:
        self.profile, self.n = profile, slices
        self.kw: dict[str, Any] = {"windows": slices}
        self.limit = rows_per_window if mode == "rows" else None
        self.secs: float | None = None
        if mode == "rows":
            self.kw["rows_per_window"] = rows_per_window
        elif mode == "time":
            # As ModelMonitor builds its histograms from the [monitor] settings.
            config = MonitorConfig(window_s=slices * SLICE_S, slices=slices)
            self.secs = config.window_s / config.slices
            self.kw.update(windows=config.slices, seconds_per_window=self.secs, eps=config.eps)
        self.h = Histogram(profile, **self.kw)
        width = int(self.h.offsets[-1])
        self.zero = np.zeros(width, dtype=np.int64)
        self.slice_counts: list[np.ndarray] = [self.zero.copy()]
        self.slice_rows: list[int] = [0]
        self.started = self.clock.now  # when the model's current slice began

    # -- the model ---------------------------------------------------------------------------
    def window(self) -> tuple[np.ndarray, int]:
        return sum(self.slice_counts[-self.n :], self.zero.copy()), sum(self.slice_rows[-self.n :])

    def new_slices(self, k: int) -> None:
        for _ in range(k):
            self.slice_counts.append(self.zero.copy())
            self.slice_rows.append(0)

    def model_advance(self) -> None:
        """Time windows: one new slice per slice length elapsed, on the original grid."""
        if self.secs is None:
            return
        elapsed = int((self.clock.now - self.started) // self.secs)
        if elapsed > 0:
            self.new_slices(elapsed)
            self.started += elapsed * self.secs

    def columns(self, batch: np.ndarray) -> np.ndarray:
        """The drawn rows cut to this profile's features."""
        return np.ascontiguousarray(batch[:, : len(self.profile.features)])

    def model_count(self, batch: np.ndarray) -> None:
        self.slice_counts[-1] = self.slice_counts[-1] + batch_counts(self.profile, batch)
        self.slice_rows[-1] += batch.shape[0]

    # -- rules --------------------------------------------------------------------------------
    @rule(batch=batches, as_mapping=st.booleans())
    def update(self, batch: np.ndarray, as_mapping: bool) -> None:
        # A slice over its row limit, or whose time is up, is closed by the next update first.
        if self.limit is not None and self.slice_rows[-1] >= self.limit:
            self.new_slices(1)
            self.started = self.clock.now
        self.model_advance()
        batch = self.columns(batch)
        if as_mapping:
            self.h.update({name: batch[:, j] for j, name in enumerate(self.h.names)})
        else:
            self.h.update(batch)
        self.model_count(batch)

    @precondition(lambda self: self.profile is NUMERIC)
    @rule(batch=batches)
    def count_now(self, batch: np.ndarray) -> None:
        batch = self.columns(batch)
        self.h.count_now(batch)  # no rotation check, even when one is due: by contract
        self.model_count(batch)

    @rule(quarters=st.integers(0, 24))
    def time_passes(self, quarters: int) -> None:
        self.clock.now += quarters * SLICE_S / 4  # nothing rotates until someone looks

    @rule(explicit=st.booleans())
    def advance(self, explicit: bool) -> None:
        self.h.advance(self.clock.now if explicit else None)
        self.model_advance()

    @rule()
    def rotate(self) -> None:
        before = self.h.counts
        oldest = self.slice_counts[-self.n] if len(self.slice_counts) >= self.n else self.zero
        self.h.rotate()
        # Rotation drops exactly the oldest slice of the window, nothing else.
        np.testing.assert_array_equal(before - self.h.counts, oldest)
        self.new_slices(1)
        self.started = self.clock.now

    @rule(batch=batches, old=batches, as_array=st.booleans())
    def merge(self, batch: np.ndarray, old: np.ndarray, as_array: bool) -> None:
        # The other histogram's window holds `batch`; `old` rotated out of it and must not come along.
        batch, old = self.columns(batch), self.columns(old)
        other = Histogram(self.profile, windows=2)
        other.update(old)
        other.rotate()
        other.rotate()
        other.update(batch)
        self.h.merge(other.counts if as_array else other)
        self.model_count(batch)

    @rule()
    def reset(self) -> None:
        self.h.reset()
        self.slice_counts, self.slice_rows = [self.zero.copy()], [0]
        self.started = self.clock.now

    @rule(age_quarters=st.integers(0, 24), probe=batches)
    def save_and_restore(self, age_quarters: int, probe: np.ndarray) -> None:
        state = self.h.state()
        age = age_quarters * SLICE_S / 4
        restored, twin = Histogram(self.profile, **self.kw), Histogram(self.profile, **self.kw)
        restored.restore(state, age_s=age)
        twin.restore(state, age_s=age)
        if age_quarters == 0 or self.secs is None:
            np.testing.assert_array_equal(restored.counts, self.h.counts)
            assert restored.rows == self.h.rows
        # The restored histogram carries on, its slice started `age` ago (time windows age).
        self.h = restored
        self.started = self.clock.now - age
        self.model_advance()
        # Its twin shows that rows counted after a restore go to the slice that is current:
        # `slices - 1` rotations later that slice is the whole window.
        probe = self.columns(probe)
        full = self.limit is not None and self.slice_rows[-1] >= self.limit
        current = self.zero if full else self.slice_counts[-1]
        twin.update(probe)
        for _ in range(self.n - 1):
            twin.rotate()
        np.testing.assert_array_equal(twin.counts, current + batch_counts(self.profile, probe))

    # -- what holds after every step ---------------------------------------------------------------
    @invariant()
    def window_and_totals_match_the_model(self) -> None:
        counts, rows = self.window()
        np.testing.assert_array_equal(self.h.counts, counts)
        assert self.h.rows == rows
        np.testing.assert_array_equal(self.h.total_counts, sum(self.slice_counts, self.zero.copy()))
        assert self.h.total_rows == sum(self.slice_rows)
        # Every row lands in exactly one slot of every feature.
        for j in range(len(self.h.names)):
            assert counts[self.h.offsets[j] : self.h.offsets[j + 1]].sum() == rows

    @invariant()
    def due_exactly_when_a_time_slice_has_ended(self) -> None:
        due = self.secs is not None and self.clock.now >= self.started + self.secs
        assert self.h.due(self.clock.now) is due
        if self.secs is not None:
            # The current slice ends exactly one slice length after it began, on the grid
            # (a slice closed by advance gives its successor the boundary, not the clock's time).
            end = self.started + self.secs
            assert self.h.due(end) and not self.h.due(end - SLICE_S / 4)


WindowMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestWindowRotation = WindowMachine.TestCase
