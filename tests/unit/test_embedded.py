"""runtime.load: the in-process API, without a server or an event loop."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import runtime
from bench import models as bench_models
from runtime.errors import ConfigError, InvalidInput, ModelFailure
from runtime.monitor import _reference as oracle
from runtime.monitor.profile import Profile

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "runtime" / "demo"


@pytest.fixture(scope="module")
def demo_rows() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DEMO / "data.npz") as d:
        return d["features"], d["labels"]


def test_outputs_equal_onnxruntime(tmp_path: Path) -> None:
    path = bench_models.two_io(tmp_path / "two.onnx")
    m = runtime.load(f"two={path}")
    x = np.random.default_rng(0).random((7, 3), dtype=np.float32)
    n = np.arange(7, dtype=np.int64).reshape(7, 1)
    got = m.predict({"x": x, "n": n})
    want = ort.InferenceSession(str(path)).run(None, {"x": x, "n": n})
    np.testing.assert_array_equal(got["sum"], want[0])
    np.testing.assert_array_equal(got["twice"], want[1])
    assert m.name == "two"


def test_single_input_array_one_row_and_safe_casts(demo_rows) -> None:
    X, _ = demo_rows
    m = runtime.load(str(DEMO / "model.onnx"))
    session = ort.InferenceSession(str(DEMO / "model.onnx"))
    want = session.run(None, {"features": X[:1]})
    one = m.predict(X[0])  # a row without its batch dimension
    np.testing.assert_array_equal(one["probabilities"], want[0])
    as_f64 = m.predict(X[:1].astype(np.float64))  # converted to the model's FP32
    np.testing.assert_array_equal(as_f64["probabilities"], want[0])
    with pytest.raises(InvalidInput, match="the model takes FP32, not BYTES"):
        m.predict(np.array([["a"] * 30]))
    with pytest.raises(InvalidInput, match="shape"):
        m.predict(X[:2, :5])
    # Not arrays at all: said so, as InvalidInput (numpy's ValueError, "BYTES holds strings").
    with pytest.raises(InvalidInput, match=r"input 'features': no value \(None\)"):
        m.predict(None)
    with pytest.raises(InvalidInput, match="input 'features': not an array: .*inhomogeneous"):
        m.predict([[1.0, 2.0], [3.0]])


def test_drift_counts_equal_the_oracle(demo_rows) -> None:
    X, y = demo_rows
    m = runtime.load(str(DEMO / "model.onnx"), profile=str(DEMO / "profile.json"))
    rows = np.flatnonzero(y == 0)[:150]
    for chunk in np.array_split(rows, 10):
        m.predict(X[chunk])
    report = m.drift()
    profile = Profile.load(DEMO / "profile.json")
    counted = m.monitor.inputs.feature_counts()
    for j, feature in enumerate(profile.features):
        counts = oracle.count_numeric(X[rows][:, j], [np.asarray(feature.edges)])
        np.testing.assert_array_equal(counted[feature.name], counts)
        got = report["features"][j]
        assert got["name"] == feature.name
        np.testing.assert_allclose(np.array(got["current_share"]) * got["rows"], counts, atol=1e-3)
    assert report["window"]["rows"] == 150
    assert report["status"] == "alert"


def test_metrics_register_into_the_host_registry(demo_rows) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    X, _ = demo_rows
    m = runtime.load(str(DEMO / "model.onnx"), profile=str(DEMO / "profile.json"))
    m.predict(X[:20])
    registry = CollectorRegistry()
    assert m.metrics(registry) is registry
    text = generate_latest(registry).decode()
    assert 'mlrt_feature_bin_total{bin="missing",feature="mean radius",model="model",version="1"} 0.0' in text
    assert 'mlrt_window_rows{model="model",version="1"} 20.0' in text


def test_without_profile_there_is_no_drift(tmp_path: Path) -> None:
    m = runtime.load(str(bench_models.mlp(tmp_path / "mlp.onnx")))
    with pytest.raises(ConfigError, match="without a profile"):
        m.drift()


def test_thread_safe_predict_and_counts(demo_rows) -> None:
    X, _ = demo_rows
    m = runtime.load(str(DEMO / "model.onnx"), profile=str(DEMO / "profile.json"))
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for _ in range(50):
                rows = rng.integers(0, len(X), 3)
                out = m.predict(X[rows])
                assert out["label"].shape == (3,)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert m.drift()["window"]["rows"] == 4 * 50 * 3


def test_model_failure_and_hooks_from_predict(tmp_path: Path, demo_rows) -> None:
    X, y = demo_rows
    events = tmp_path / "events.jsonl"
    recorder = "import sys, pathlib; pathlib.Path(sys.argv[1]).open('a').write(sys.stdin.read() + '\\n')"
    m = runtime.load(
        str(DEMO / "model.onnx"),
        profile=str(DEMO / "profile.json"),
        hooks=[{"type": "command", "command": [sys.executable, "-c", recorder, str(events)]}],
        monitor=runtime.embedded.MonitorConfig(tick_s=1e-6, min_rows=50),  # evaluate on every call
    )
    malignant = np.flatnonzero(y == 0)
    for _ in range(5):
        m.predict(X[malignant[:100]])
    m.close()  # waits for the hook thread
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["status"] == "alert"

    # With the default tick (5 s), a job shorter than that ended with no look at drift at
    # all: close() judges it once more.
    short = tmp_path / "short.jsonl"
    m = runtime.load(
        str(DEMO / "model.onnx"),
        profile=str(DEMO / "profile.json"),
        hooks=[{"type": "command", "command": [sys.executable, "-c", recorder, str(short)]}],
    )
    for _ in range(5):
        m.predict(X[malignant[:100]])
    assert m.drift()["status"] == "alert" and not short.exists()
    m.close()
    assert [json.loads(line)["status"] for line in short.read_text().splitlines()] == ["alert"]

    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    broken.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]  # type: ignore[attr-defined]
    broken.outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]  # type: ignore[attr-defined]
    sys.modules[__name__].broken = broken  # type: ignore[attr-defined]
    b = runtime.load(f"b={__name__}:broken")
    with pytest.raises(ModelFailure, match="boom"):
        b.predict(np.zeros((1, 2), np.float32))

    # An output of another row count than the input's: the server answers 500; runtime.load
    # handed it back as it was.
    def one_row(x: np.ndarray) -> np.ndarray:
        return x[:1, :1]

    one_row.inputs = broken.inputs  # type: ignore[attr-defined]
    one_row.outputs = broken.outputs  # type: ignore[attr-defined]
    sys.modules[__name__].one_row = one_row  # type: ignore[attr-defined]
    with runtime.load(f"r={__name__}:one_row") as r:
        assert r.predict(np.zeros((1, 2), np.float32))["y"].shape == (1, 1)
        with pytest.raises(ModelFailure, match=r"output 'y' has shape \[1, 1\]; expected 3 rows"):
            r.predict(np.zeros((3, 2), np.float32))


def test_no_web_stack_is_imported(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np, runtime\n"
        f"m = runtime.load({str(DEMO / 'model.onnx')!r}, profile={str(DEMO / 'profile.json')!r})\n"
        "m.predict(np.zeros((1, 30), np.float32)); m.drift(); m.metrics()\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in "
        "('starlette', 'uvicorn', 'uvloop', 'httptools', 'httpx', 'anyio', 'runtime.server'))\n"
        "bad += [k for k in sys.modules if k.startswith('runtime.server')]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_frame_feeds_the_profiles_features_by_name(demo_rows) -> None:
    # With a profile, a frame whose columns came in another order was fed by position
    # (wrong scores, no error), and one with an id beside the features was refused, where
    # `mlrt predict` with the same profile takes the profile's features by name.
    pd = pytest.importorskip("pandas")
    X, _ = demo_rows
    names = Profile.load(DEMO / "profile.json").names
    frame = pd.DataFrame(X[:20], columns=names)
    want = ort.InferenceSession(str(DEMO / "model.onnx")).run(None, {"features": X[:20]})[0]
    with runtime.load(str(DEMO / "model.onnx"), profile=str(DEMO / "profile.json")) as m:
        shuffled = frame[names[::-1]].assign(customer_id=np.arange(20))
        np.testing.assert_array_equal(m.predict(shuffled)["probabilities"], want)
    with runtime.load(str(DEMO / "model.onnx")) as m:  # no profile: every column, in order
        np.testing.assert_array_equal(m.predict(frame)["probabilities"], want)


def test_a_frame_of_pandas_nullable_or_arrow_dtypes_feeds_a_matrix_input(demo_rows) -> None:
    # convert_dtypes() and dtype_backend="pyarrow" give Float64/Int64 columns, whose matrix
    # pandas gives as objects: refused as "not BYTES", with no string in the frame.
    pd = pytest.importorskip("pandas")
    X, _ = demo_rows
    names = Profile.load(DEMO / "profile.json").names
    frame = pd.DataFrame(X[:20].astype(np.float64), columns=names)
    frame[names[0]] = np.round(frame[names[0]])  # whole numbers: convert_dtypes makes it Int64
    want = ort.InferenceSession(str(DEMO / "model.onnx")).run(
        None, {"features": frame.to_numpy(dtype=np.float32)}
    )[0]
    nullable = frame.convert_dtypes()
    assert str(nullable[names[0]].dtype) == "Int64" and str(nullable[names[1]].dtype) == "Float64"
    with runtime.load(str(DEMO / "model.onnx")) as m:
        for f in (nullable, frame.astype("float64[pyarrow]")):
            np.testing.assert_array_equal(m.predict(f)["probabilities"], want)
        texty = frame.astype({names[2]: object})
        texty.loc[3, names[2]] = "n/a"
        with pytest.raises(InvalidInput, match=f"takes FP32; column '{names[2]}' is object, e.g. 'n/a'"):
            m.predict(texty)


def test_a_registry_reference_loads_its_version_and_profile(tmp_path: Path, demo_rows) -> None:
    # runtime.load (and so mlrt profile/drift --model) took files and modules only: "cannot
    # tell how to load 'cancer@champion'".
    from runtime.registry import FilesystemRegistry

    X, _ = demo_rows
    reg = FilesystemRegistry(tmp_path / "reg")
    reg.register(DEMO / "model.onnx", "demo")
    version = reg.register(DEMO / "model.onnx", "demo", profile=DEMO / "profile.json")
    reg.set_alias("demo", "champion", version)
    with runtime.load("demo@champion", registry=str(tmp_path / "reg")) as m:
        assert m.model.version == version and m.monitor is not None  # the version's own profile
        want = ort.InferenceSession(str(DEMO / "model.onnx")).run(None, {"features": X[:5]})[0]
        np.testing.assert_array_equal(m.predict(X[:5])["probabilities"], want)
