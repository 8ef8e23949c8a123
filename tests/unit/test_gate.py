"""`mlrt gate` (runtime/gates/gate.py) on data sets scikit-learn ships: the metric values
equal scikit-learn's, the better model passes and the worse fails both ways round, the
exit codes are as documented, and bad input is named."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    roc_auc_score,
    root_mean_squared_error,
)

from runtime.errors import ConfigError
from runtime.gates import gate
from tests.unit import gatemodels as gm

GOOD, POOR = "tests.unit.gatemodels:{}_good", "tests.unit.gatemodels:{}_poor"


def _write(tmp: Path, name: str) -> Path:
    X, y = gm.test_split(name)
    path = tmp / f"{name}.parquet"
    pq.write_table(pa.table({**{f"f{i}": X[:, i] for i in range(X.shape[1])}, "target": y}), path)
    return path


def _sklearn(metric: str, model: object, X: np.ndarray, y: np.ndarray) -> float:
    if metric == "rmse":
        return float(root_mean_squared_error(y, model.predict(X)))
    if metric == "mae":
        return float(mean_absolute_error(y, model.predict(X)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if metric == "accuracy":
            return float(accuracy_score(y, model.predict(X)))
        if metric == "f1":
            binary = set(np.unique(y)) <= {0, 1}
            return float(f1_score(y, model.predict(X), average="binary" if binary else "macro"))
        proba = model.predict_proba(X)
        if metric == "auc":
            if proba.shape[1] == 2:
                return float(roc_auc_score(y, proba[:, 1]))
            return float(roc_auc_score(y, proba, multi_class="ovr"))
        labels = getattr(model, "classes_", range(proba.shape[1]))
        return float(log_loss(y, proba, labels=labels))


CASES = [
    ("cancer", "accuracy"), ("cancer", "f1"), ("cancer", "auc"), ("cancer", "logloss"),
    ("iris", "accuracy"), ("iris", "f1"), ("iris", "auc"), ("iris", "logloss"),
    ("diabetes", "rmse"), ("diabetes", "mae"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "metric"), CASES)
def test_metrics_equal_scikit_learn_and_the_better_model_passes_both_ways(
    tmp_path: Path, data: str, metric: str
) -> None:
    path = _write(tmp_path, data)
    X, y = gm.test_split(data)
    good, poor = GOOD.format(data), POOR.format(data)
    forward = gate(good, poor, str(path), "target", metric, bootstrap=200)
    backward = gate(poor, good, str(path), "target", metric, bootstrap=200)
    expect_good = _sklearn(metric, getattr(gm, f"{data}_good"), X, y)
    expect_poor = _sklearn(metric, getattr(gm, f"{data}_poor"), X, y)
    assert forward.candidate_value == pytest.approx(expect_good, rel=1e-9, abs=1e-12)
    assert forward.baseline_value == pytest.approx(expect_poor, rel=1e-9, abs=1e-12)
    assert forward.passed and not backward.passed, (forward.failures, backward.failures)
    assert backward.failures[0].startswith(f"{metric}: candidate")
    lo, hi = backward.interval
    assert lo <= backward.delta <= hi and forward.rows == len(y)


@pytest.mark.parametrize("metric", ["accuracy", "f1", "auc", "logloss"])
def test_text_labels_are_matched_by_name_and_scores_by_each_models_classes(
    tmp_path: Path, metric: str
) -> None:
    # The target holds names; the models answer names as bytes and order their scores by
    # their classes_. Once every model scored 0 and the gate passed.
    X, y = gm.test_split("iris")
    names = gm._DATA["iris"].target_names[y]
    path = tmp_path / "species.parquet"
    pq.write_table(pa.table({**{f"f{i}": X[:, i] for i in range(4)}, "target": names}), path)
    good, poor = "tests.unit.gatemodels:species_good", "tests.unit.gatemodels:species_poor"
    result = gate(good, poor, str(path), "target", metric, bootstrap=100)
    expected = {m: _sklearn(metric, getattr(gm, m), X, names) for m in ("species_good", "species_poor")}
    assert result.candidate_value == pytest.approx(expected["species_good"], rel=1e-9)
    assert result.baseline_value == pytest.approx(expected["species_poor"], rel=1e-9)
    assert result.passed and result.candidate_value != result.baseline_value
    # The same model with its columns in another order scores the same.
    same = gate("tests.unit.gatemodels:species_reversed", good, str(path), "target", metric, bootstrap=100)
    assert same.candidate_value == pytest.approx(same.baseline_value, rel=1e-12) and same.passed
    # ... and its predictions do not drift from the model's (compared class by class: the raw
    # second columns of the two are different classes' scores).
    assert same.prediction_drift["psi"] == pytest.approx(0.0, abs=1e-9), same.prediction_drift
    # A target in another spelling than the classes ('SETOSA' for 'setosa'): refused by name for
    # every metric. accuracy and f1 counted every row wrong for both models and passed.
    pq.write_table(pa.table({**{f"f{i}": X[:, i] for i in range(4)}, "target": np.char.upper(names)}),
                   tmp_path / "upper.parquet")  # fmt: skip
    with pytest.raises(ConfigError, match=r"the target's labels \['(SETOSA|VERSICOLOR|VIRGINICA)'"):
        gate(good, poor, str(tmp_path / "upper.parquet"), "target", metric, bootstrap=10)


def test_a_tolerance_lets_a_slightly_worse_candidate_through(tmp_path: Path) -> None:
    path = _write(tmp_path, "cancer")
    worse = gate(POOR.format("cancer"), GOOD.format("cancer"), str(path), "target", "accuracy", bootstrap=100)
    gap = -worse.delta
    assert gate(
        POOR.format("cancer"), GOOD.format("cancer"), str(path), "target", "accuracy",
        min_delta=gap + 1e-9, bootstrap=100,
    ).passed  # fmt: skip
    # The same model against itself passes, also strictly: its interval is exactly 0.
    same = gate(GOOD.format("cancer"), GOOD.format("cancer"), str(path), "target", "auc", strict=True)
    assert same.passed and same.interval == (0.0, 0.0) and same.prediction_drift["psi"] == pytest.approx(0)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "runtime", "gate", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_the_command_exits_0_on_pass_1_on_fail_2_on_bad_input(tmp_path: Path) -> None:
    path = str(_write(tmp_path, "cancer"))
    common = ["--data", path, "--target", "target", "--metric", "auc", "--bootstrap", "100"]
    ok = _cli("--candidate", GOOD.format("cancer"), "--baseline", POOR.format("cancer"), *common,
              "-o", str(tmp_path / "gate.json"))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("gate PASSED") and "auc (higher is better)" in ok.stdout
    report = json.loads((tmp_path / "gate.json").read_text())
    assert report["passed"] and report["metric"]["name"] == "auc" and report["data"]["rows"] == 285
    assert len(report["data"]["sha256"]) == 64
    bad = _cli("--candidate", POOR.format("cancer"), "--baseline", GOOD.format("cancer"), *common, "--json")
    assert bad.returncode == 1, bad.stderr
    assert json.loads(bad.stdout)["failures"][0].startswith("auc: candidate")
    missing = _cli("--candidate", GOOD.format("cancer"), "--baseline", POOR.format("cancer"),
                   "--data", path, "--target", "churned", "--metric", "auc")  # fmt: skip
    assert missing.returncode == 2 and "no target column 'churned'" in missing.stderr
    usage = _cli("--candidate", GOOD.format("cancer"), "--data", path, "--target", "target",
                 "--metric", "auc")  # fmt: skip
    assert usage.returncode == 2 and "--baseline" in usage.stderr


def test_a_slow_candidate_fails_the_latency_gate(tmp_path: Path) -> None:
    path = _write(tmp_path, "cancer")
    # cancer_slow sleeps 50 ms per call; 4 batches each.
    slow = gate(
        "tests.integration.pymodels:cancer_slow", GOOD.format("cancer"), str(path), "target", "accuracy",
        max_latency_ratio=3, batch_rows=80, bootstrap=50, min_delta=1,
    )  # fmt: skip
    assert slow.latency["batches"] == 4 and slow.latency["ratio"] > 3
    assert slow.failures == [slow.failures[0]] and slow.failures[0].startswith("latency:")


def test_bad_input_is_named(tmp_path: Path) -> None:
    path = str(_write(tmp_path, "cancer"))
    with pytest.raises(ConfigError, match="unknown metric 'r2'"):
        gate(GOOD.format("cancer"), POOR.format("cancer"), path, "target", "r2")
    with pytest.raises(ConfigError, match="has no output that gives a predicted value"):
        gate(GOOD.format("cancer"), POOR.format("cancer"), path, "target", "rmse")
    labels = pa.table({**{f"f{i}": gm.test_split("cancer")[0][:, i] for i in range(30)},
                       "target": np.full(285, 7)})  # fmt: skip
    pq.write_table(labels, tmp_path / "odd.parquet")
    odd = r"cannot compute auc: the target's labels \[7\] not among the model's classes \[0, 1\]"
    with pytest.raises(ConfigError, match=odd):
        gate(GOOD.format("cancer"), POOR.format("cancer"), str(tmp_path / "odd.parquet"), "target", "auc")


def test_models_fed_by_place_in_different_orders_are_refused(tmp_path: Path) -> None:
    # A file candidate takes the data's column order, a registry baseline its profile's: with
    # the file's columns reversed, the same model gated against itself scored 0.5 against 0.997.
    from runtime.monitor.profile import Profile
    from runtime.registry import FilesystemRegistry

    skl2onnx = pytest.importorskip("skl2onnx")
    X, y = gm.test_split("cancer")
    onx = skl2onnx.to_onnx(gm.cancer_good, X[:1].astype(np.float32), options={"zipmap": False})
    (tmp_path / "m.onnx").write_bytes(onx.SerializeToString())
    names = [f"f{i}" for i in range(30)]
    Profile.fit({n: X[:, i].astype(np.float32) for i, n in enumerate(names)}).save(tmp_path / "ref.json")
    reg = FilesystemRegistry(tmp_path / "reg")
    reg.register(tmp_path / "m.onnx", "cancer", profile=tmp_path / "ref.json")
    path = tmp_path / "reversed.parquet"
    pq.write_table(pa.table({**{n: X[:, i] for i, n in reversed(list(enumerate(names)))}, "target": y}), path)
    registry = str(tmp_path / "reg")
    with pytest.raises(ConfigError, match="fed the same columns in different orders.*--columns"):
        gate(str(tmp_path / "m.onnx"), "cancer/1", str(path), "target", "auc", registry=registry)
    named = gate(str(tmp_path / "m.onnx"), "cancer/1", str(path), "target", "auc", registry=registry,
                 columns=names, bootstrap=10)  # fmt: skip
    assert named.candidate_value == named.baseline_value and named.passed


def test_an_undefined_interval_is_null_fails_strict_and_registers(tmp_path: Path) -> None:
    # Two rows, one of each class, and one resample that drew a single class: AUC has no
    # value there, so the interval has none. It was written as a bare NaN (not JSON), passed
    # --strict, and made registration end in a traceback.
    from runtime.registry import FilesystemRegistry
    from runtime.registry.errors import RegistryError

    X, y = gm.test_split("cancer")
    rows = [int(np.flatnonzero(y == 0)[0]), int(np.flatnonzero(y == 1)[0])]
    table = pa.table({**{f"f{i}": X[rows, i] for i in range(30)}, "target": y[rows]})
    pq.write_table(table, tmp_path / "two.parquet")
    seed = next(s for s in range(100) if len(set(np.random.default_rng(s).integers(0, 2, 2))) == 1)
    args = (GOOD.format("cancer"), POOR.format("cancer"), str(tmp_path / "two.parquet"), "target", "auc")
    report = gate(*args, bootstrap=1, seed=seed).to_json()
    assert report["metric"]["interval"] == [None, None]
    json.loads(json.dumps(report, allow_nan=False))
    strict = gate(*args, bootstrap=1, seed=seed, strict=True)
    assert not strict.passed and "undefined" in strict.failures[-1]
    # A module:object candidate is no file: its report cannot back a registration.
    model = tmp_path / "m.bin"
    model.write_bytes(b"model")
    with pytest.raises(RegistryError, match="not a model file"):
        FilesystemRegistry(tmp_path / "reg").register(model, "m", gate=report)


def test_a_gate_report_registers_only_the_file_it_judged(tmp_path: Path) -> None:
    import joblib

    from runtime.registry import FilesystemRegistry
    from runtime.registry.errors import RegistryError

    path = _write(tmp_path, "cancer")
    joblib.dump(gm.cancer_good, tmp_path / "good.joblib")
    joblib.dump(gm.cancer_poor, tmp_path / "poor.joblib")
    report = gate(str(tmp_path / "good.joblib"), POOR.format("cancer"), str(path), "target", "auc",
                  bootstrap=10).to_json()  # fmt: skip
    assert report["schema"] == 2 and report["candidate_sha256"]
    reg = FilesystemRegistry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="judged another model"):
        reg.register(tmp_path / "poor.joblib", "cancer", gate=report)
    version = reg.register(tmp_path / "good.joblib", "cancer", gate=report)
    reg.set_alias("cancer", "champion", version, require_gate=True)
