"""The monitor's per-request path (native/_stage.pyx behind ModelMonitor.observe): counts
stay exact for requests of every size and dtype, under threads, and in the sub-window
the rows were observed in; and a staged request runs no Python code at all."""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest

from runtime.config import MonitorConfig
from runtime.monitor import _reference as ref
from runtime.monitor import drift as drift_mod
from runtime.monitor import histogram as histogram_mod
from runtime.monitor.drift import STAGE_MAX_ROWS, STAGE_ROWS, ModelMonitor
from runtime.monitor.profile import Profile

N_FEATURES = 8


def _profile(dtypes: str | None = "float32") -> Profile:
    """Eight features and two outputs, like a small classifier's."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, N_FEATURES)).astype(np.float32)
    Y = np.stack([X[:, 0] * 0.3, X[:, 1] - X[:, 2]], axis=1).astype(np.float32)
    return Profile.fit(
        X,
        outputs=Y,
        output_names=["output[0]", "output[1]"],
        dtypes=dtypes,
        output_dtypes=dtypes,
        bins=10,
    )


def _monitor(profile: Profile, **config: float) -> ModelMonitor:
    return ModelMonitor(
        profile,
        model="m",
        version="1",
        inputs=[("input", [-1, N_FEATURES])],
        outputs=[("output", [-1, 2])],
        config=MonitorConfig(**config),  # type: ignore[arg-type]
    )


def _edges(profile: Profile, section: str) -> list[np.ndarray]:
    return [np.asarray(f.edges, dtype=np.float64) for f in getattr(profile, section)]


def _requests(rng: np.random.Generator, sizes: list[int], dtype: type = np.float32):
    for n in sizes:
        x = rng.normal(size=(n, N_FEATURES)).astype(dtype)
        x[rng.random(x.shape) < 0.02] = np.nan
        y = rng.normal(size=(n, 2)).astype(dtype)
        yield {"input": x}, {"output": y}


def _expected(profile: Profile, requests: list[tuple[dict, dict]]) -> tuple[np.ndarray, np.ndarray]:
    """The oracle: every row as the model's float32, counted with numpy."""
    X = np.concatenate([i["input"].astype(np.float32) for i, _ in requests]).astype(np.float64)
    Y = np.concatenate([o["output"].astype(np.float32) for _, o in requests]).astype(np.float64)
    return ref.count_numeric(X, _edges(profile, "features")), ref.count_numeric(Y, _edges(profile, "outputs"))


SIZES = [1, STAGE_MAX_ROWS, STAGE_MAX_ROWS + 1, STAGE_ROWS, STAGE_ROWS + 7, 200]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", SIZES)
def test_requests_of_every_size_count_exactly(size: int, dtype: type) -> None:
    """1 and 15 rows are staged, 16 and more counted at once; float64 rows count as the
    float32 the profile was fitted in (rounded as numpy's cast rounds)."""
    profile = _profile()
    mon = _monitor(profile)
    rng = np.random.default_rng(size)
    reqs = list(_requests(rng, [size] * 9 + [1] * 70, dtype))
    for inputs, outputs in reqs:
        mon.observe(inputs, outputs)
    want_in, want_out = _expected(profile, reqs)
    np.testing.assert_array_equal(mon.inputs.counts, want_in)
    assert mon.outputs is not None
    np.testing.assert_array_equal(mon.outputs.counts, want_out)
    assert mon.window_rows == sum(len(i["input"]) for i, _ in reqs)


def test_mixed_requests_count_exactly() -> None:
    profile = _profile()
    mon = _monitor(profile)
    rng = np.random.default_rng(1)
    sizes = rng.choice([1, 1, 1, 2, 3, 15, 16, 64, 100], size=400).tolist()
    reqs = [
        (
            {"input": i["input"].astype(rng.choice([np.float32, np.float64]))},
            {"output": o["output"]},
        )
        for i, o in _requests(rng, sizes)
    ]
    for inputs, outputs in reqs:
        mon.observe(inputs, outputs)
    want_in, want_out = _expected(profile, reqs)
    np.testing.assert_array_equal(mon.inputs.counts, want_in)
    np.testing.assert_array_equal(mon.outputs.counts, want_out)  # type: ignore[union-attr]


def test_float64_rows_round_as_before() -> None:
    """float64 values right at the edges count where their float32 rounding falls (the
    profile is float32), staged or counted at once, not where the float64 value falls."""
    profile = _profile()
    rng = np.random.default_rng(7)
    edges = np.asarray(profile.features[0].edges)
    near = (edges[:, None] * (1 + rng.uniform(-3e-7, 3e-7, size=(len(edges), 30)))).ravel()
    X = np.zeros((len(near), N_FEATURES))
    X[:, 0] = near
    Y = np.zeros((len(near), 2))
    single, batch = _monitor(profile), _monitor(profile)
    for k in range(len(near)):
        single.observe({"input": X[k : k + 1]}, {"output": Y[k : k + 1]})
    batch.observe({"input": X}, {"output": Y})
    as_f32 = ref.count_numeric(X.astype(np.float32).astype(np.float64), _edges(profile, "features"))
    as_f64 = ref.count_numeric(X, _edges(profile, "features"))
    assert not np.array_equal(as_f32, as_f64)  # the rounding moves some values across an edge
    np.testing.assert_array_equal(single.inputs.counts, as_f32)
    np.testing.assert_array_equal(batch.inputs.counts, as_f32)


def test_concurrent_observe_and_reads_from_four_threads() -> None:
    """Four threads observe requests of every size while reading reports, bin totals
    and state: every row is counted once, none is lost or counted twice."""
    profile = _profile()
    mon = _monitor(profile)
    sizes = [1] * 300 + [15] * 20 + [16] * 10 + [64] * 5 + [70] * 3
    per_thread = [list(_requests(np.random.default_rng(100 + t), sizes)) for t in range(4)]
    for reqs in per_thread:
        np.random.default_rng(0).shuffle(reqs)  # type: ignore[arg-type]
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(reqs: list[tuple[dict, dict]]) -> None:
        try:
            start.wait()
            for k, (inputs, outputs) in enumerate(reqs):
                mon.observe(inputs, outputs)
                if k % 40 == 0:
                    mon.report()
                    mon.bin_totals()
                    mon.state()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        threads = [threading.Thread(target=work, args=(reqs,)) for reqs in per_thread]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert not errors
    all_reqs = [r for reqs in per_thread for r in reqs]
    want_in, want_out = _expected(profile, all_reqs)
    np.testing.assert_array_equal(mon.inputs.total_counts, want_in)
    np.testing.assert_array_equal(mon.outputs.total_counts, want_out)  # type: ignore[union-attr]
    assert mon.inputs.total_rows == sum(len(i["input"]) for i, _ in all_reqs)


def test_a_staged_request_runs_no_python_code() -> None:
    """The point of the native path: between flushes, observe is one native call (the
    Python version made a dozen Python-level calls per request)."""
    mon = _monitor(_profile())
    inputs, outputs = next(_requests(np.random.default_rng(2), [1]))
    mon.observe(inputs, outputs)
    mon.flush()
    python_calls: list[str] = []

    def profiler(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call":
            python_calls.append(frame.f_code.co_name)

    sys.setprofile(profiler)
    try:
        for _ in range(STAGE_ROWS - 1):
            mon.observe(inputs, outputs)
    finally:
        sys.setprofile(None)
    assert python_calls == []
    mon.observe(inputs, outputs)  # the 64th row: counted now
    assert mon._stage_in.buf.n == 0  # type: ignore[union-attr]
    assert mon.inputs.rows == STAGE_ROWS + 1


def test_other_inputs_take_the_general_path_and_count_exactly() -> None:
    profile = _profile()
    mon = _monitor(profile)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, N_FEATURES))
    y = rng.normal(size=(1, 2))
    # A read-only mapping, integers, float16, a non-native byte order, a list.
    cases = [
        (types.MappingProxyType({"input": x.astype(np.float32)}), {"output": y}),
        ({"input": (x * 10).astype(np.int64)}, {"output": y.astype(np.float16)}),
        ({"input": x.astype(">f4")}, {"output": y.astype(">f8")}),
    ]
    for inputs, outputs in cases:
        mon.observe(inputs, outputs)
    rows = np.concatenate([np.asarray(i["input"], dtype=np.float32) for i, _ in cases]).astype(np.float64)
    outs = np.concatenate([np.asarray(o["output"]).astype(np.float32) for _, o in cases]).astype(np.float64)
    np.testing.assert_array_equal(mon.inputs.counts, ref.count_numeric(rows, _edges(profile, "features")))
    np.testing.assert_array_equal(mon.outputs.counts, ref.count_numeric(outs, _edges(profile, "outputs")))  # type: ignore[union-attr]


def test_one_column_tensors_by_name_are_staged() -> None:
    rng = np.random.default_rng(4)
    profile = Profile.fit({"a": rng.normal(size=500)}, dtypes="float32")
    mon = ModelMonitor(
        profile, model="m", version="1", inputs=[("a", [-1])], outputs=[], config=MonitorConfig()
    )
    values = rng.normal(size=40)
    for v in values:
        mon.observe({"a": np.array([v])}, {})  # 1-D, float64
    assert mon._stage_in.buf.n == 40  # type: ignore[union-attr]
    as_f32 = values.astype(np.float32).astype(np.float64)[:, None]
    want = ref.count_numeric(as_f32, _edges(profile, "features"))
    np.testing.assert_array_equal(mon.inputs.counts, want)


class FakeClock:
    def __init__(self) -> None:
        self.mono = 1000.0

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return 1.7e9 + self.mono


def test_staged_rows_count_in_the_sub_window_they_were_observed_in(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(histogram_mod, "time", clock)
    monkeypatch.setattr(drift_mod, "time", clock)
    profile = _profile()
    mon = _monitor(profile, window_s=10.0, slices=5)  # 2 s sub-windows
    rng = np.random.default_rng(5)
    early = list(_requests(rng, [1] * 10))
    late = list(_requests(rng, [1] * 7))
    for inputs, outputs in early:  # t = 0: staged, not yet counted
        mon.observe(inputs, outputs)
    assert mon._stage_in.buf.n == 10  # type: ignore[union-attr]
    clock.mono += 2.5  # t = 2.5: the first sub-window is over
    for inputs, outputs in late:
        mon.observe(inputs, outputs)
    clock.mono += 8.0  # t = 10.5: [0, 2) has left the 10 s window, [2, 4) has not
    mon.report()
    want_late, _ = _expected(profile, late)
    np.testing.assert_array_equal(mon.inputs.counts, want_late)
    assert mon.window_rows == 7 and mon.inputs.total_rows == 17
    # Explicitly: one more sub-window later the late rows are gone too.
    mon.advance(clock.mono + 2.0)
    assert mon.window_rows == 0 and mon.inputs.total_rows == 17


def test_categorical_profiles_keep_the_python_path() -> None:
    rng = np.random.default_rng(6)
    profile = Profile.fit({"c": rng.integers(0, 3, 300), "x": rng.normal(size=300)}, categorical=["c"])
    mon = ModelMonitor(
        profile, model="m", version="1", inputs=[("c", [-1]), ("x", [-1])], outputs=[], config=MonitorConfig()
    )
    assert mon._stager is None
    mon.observe({"c": np.array([0, 1, 2, 5]), "x": np.zeros(4, np.float32)}, {})
    counts = mon.inputs.feature_counts()
    assert counts["c"].tolist() == [1, 1, 1, 1, 0]  # levels 0, 1, 2, other, missing
    assert counts["x"].sum() == 4
