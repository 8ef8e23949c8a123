"""Drift truth on real data, through a real `mlrt serve` on 127.0.0.1.

Two data sets that ship inside scikit-learn, read from float64 CSV files as a user has
them: iris (150 rows of measurements in steps of 0.1, heavy ties) and diabetes
unscaled (442 rows: ages, a 1/2 code, a BMI in steps of 0.1, blood serum readings).
Profiled for a float32 ONNX model with `mlrt profile --model`, then:

- the training rows sent over HTTP as FP64 JSON (what pandas gives) count into exactly
  the reference's bins, inputs and outputs (the /metrics counters), PSI 0, status ok;
- a shifted subset gives the same PSI, p-value, significance and status per feature
  and output from the server's /drift, from `runtime.load(...).drift()` and from
  `mlrt drift --model` offline: one rule, the same rows, the same answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

import runtime
from runtime.cli import main as mlrt
from runtime.config import MonitorConfig
from runtime.monitor.profile import Profile
from tests.integration.drift_client import bin_totals, infer
from tests.integration.serving import start_server, stop_server

pytestmark = pytest.mark.integration

sklearn_datasets = pytest.importorskip("sklearn.datasets")
onnx = pytest.importorskip("onnx")

# Small subsets (iris has 150 rows): statuses from 50 rows on.
MONITOR_TOML = "[monitor]\nmin_rows = 50\n"


def _sum_and_argmax(path: Path, n_features: int) -> Path:
    """An FP32 model: x [batch, n] -> total = sum(x, axis 1) [batch, 1], label = argmax [batch]."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=1),
        helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "sum_argmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n_features])],
        [
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        [numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _dataset(name: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Column names, all rows, and a shifted subset (rows past the median of one column)."""
    if name == "iris":
        d = sklearn_datasets.load_iris()
        names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        X = d.data
        shifted = X[X[:, 2] > np.median(X[:, 2])]  # long petals only
    else:
        d = sklearn_datasets.load_diabetes(scaled=False)
        names = [str(n) for n in d.feature_names]
        X = d.data
        shifted = X[X[:, 2] > np.median(X[:, 2])]  # high BMI only
    return names, X, shifted


def _csv(path: Path, names: list[str], X: np.ndarray) -> Path:
    pacsv.write_csv(pa.table({n: X[:, j] for j, n in enumerate(names)}), path)
    return path


@pytest.fixture(params=["iris", "diabetes"])
def case(request, tmp_path: Path):
    names, X, shifted = _dataset(request.param)
    model = _sum_and_argmax(tmp_path / "model.onnx", len(names))
    train_csv = _csv(tmp_path / "train.csv", names, X)
    shifted_csv = _csv(tmp_path / "shifted.csv", names, shifted)
    ref = tmp_path / "ref.json"
    assert mlrt(["profile", str(train_csv), "-o", str(ref), "--model", str(model)]) == 0
    config = tmp_path / "mlrt.toml"
    config.write_text(MONITOR_TOML)
    return {
        "names": names, "X": X, "shifted": shifted, "model": model, "ref": ref,
        "shifted_csv": shifted_csv, "config": config, "dir": tmp_path,
    }  # fmt: skip


def _send_fp64(client: httpx.Client, model: str, X: np.ndarray) -> None:
    # Requests of 1, 2, 3 ... rows: single rows and batches take different counting paths.
    start, size = 0, 1
    while start < len(X):
        infer(client, model, {"x": X[start : start + size]})
        start += size
        size = size % 17 + 1


def test_training_rows_count_exactly_and_offline_online_agree(case) -> None:
    profile = Profile.load(case["ref"])
    assert {f.dtype for f in profile.features} == {"float32"}
    assert [f.name for f in profile.outputs] == ["total", "label"]
    srv = start_server(
        [f"train={case['model']}", f"shifted={case['model']}"],
        case["dir"],
        ["--profile", f"train={case['ref']}", "--profile", f"shifted={case['ref']}",
         "--config", str(case["config"])],
    )  # fmt: skip
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as client:
            X, shifted = case["X"], case["shifted"]
            assert X.dtype == np.float64
            _send_fp64(client, "train", X)
            _send_fp64(client, "shifted", shifted)
            metrics = client.get("/metrics").text
            served = client.get("/v2/models/train/drift").json()
            online = client.get("/v2/models/shifted/drift").json()
    finally:
        stop_server(srv)

    # 1. The training rows themselves: exactly the reference counts, every feature and output.
    for section, feats in (("features", profile.features), ("outputs", profile.outputs)):
        totals = bin_totals(metrics, "train", section)
        for f in feats:
            assert totals[f.name].tolist() == f.counts, (section, f.name)
    assert served["status"] == "ok"
    assert all(f["psi"] == 0.0 for f in served["features"] + served["outputs"]), served

    # 2. The shifted rows: the server, runtime.load and mlrt drift give one answer.
    monitor = MonitorConfig(min_rows=50)
    with runtime.load(str(case["model"]), profile=str(case["ref"]), monitor=monitor) as local:
        local.predict(shifted)  # float64, as the CSV reads
        embedded = local.drift()
    out = case["dir"] / "offline.json"
    code = mlrt([
        "drift", str(case["ref"]), str(case["shifted_csv"]), "--model", str(case["model"]),
        "--config", str(case["config"]), "--format", "json", "-o", str(out),
    ])  # fmt: skip
    assert code == 0
    offline = json.loads(out.read_text())
    assert online["window"]["rows"] == embedded["window"]["rows"] == offline["window"]["rows"] == len(shifted)
    assert online["status"] == embedded["status"] == offline["status"] != "ok"
    for section in ("features", "outputs"):
        for a, b, c in zip(online[section], embedded[section], offline[section], strict=True):
            assert a["name"] == b["name"] == c["name"]
            assert a["status"] == b["status"] == c["status"], (a["name"], a, b, c)
            assert a["significant"] == b["significant"] == c["significant"]
            assert a["psi"] == pytest.approx(b["psi"], abs=1e-12)
            assert a["psi"] == pytest.approx(c["psi"], abs=1e-12)
            assert a["p_value"] == pytest.approx(b["p_value"], rel=1e-9, abs=1e-300)
            assert a["p_value"] == pytest.approx(c["p_value"], rel=1e-9, abs=1e-300)
