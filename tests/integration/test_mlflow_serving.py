"""Serving `models:/name@alias` from MLflow: against a sqlite tracking store, and against
a real `mlflow server` on loopback. Needs the mlrt[mlflow] extra (CI installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
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
    assert exe, "the mlflow command is missing: pip install 'mlrt[mlflow]'"
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
