"""The Unix domain socket listener: same routes, owner-only file, stale files handled."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench import models as bench_models
from tests.integration.serving import REPO_ROOT, start_server, stop_server

pytestmark = pytest.mark.integration


def _uds_client(path: Path) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://mlrt", timeout=30)


@pytest.fixture
def sock_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # AF_UNIX paths are limited to ~108 bytes: keep it short.
    return Path(tmp_path_factory.mktemp("s")) / "mlrt.sock"


def test_uds_and_tcp_serve_the_same_routes(tmp_path: Path, sock_path: Path) -> None:
    model = bench_models.mlp(tmp_path / "mlp.onnx")
    srv = start_server([f"mlp={model}"], tmp_path, ["--uds", str(sock_path)])
    try:
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
        x = np.random.default_rng(0).random((3, 20), dtype=np.float32)
        tensor = {"name": "input", "shape": [3, 20], "datatype": "FP32", "data": x.ravel().tolist()}
        body = {"inputs": [tensor]}
        with _uds_client(sock_path) as uds:
            assert uds.get("/v2/health/ready").status_code == 200
            via_uds = uds.post("/v2/models/mlp/infer", json=body).json()
        via_tcp = httpx.post(f"{srv.url}/v2/models/mlp/infer", json=body).json()
        assert via_uds["outputs"] == via_tcp["outputs"]
    finally:
        stop_server(srv)
    assert not sock_path.exists(), "the socket file is removed on shutdown"


def _serve(args: list[str], tmp_path: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "runtime", "serve", *args], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_stale_socket_file_is_replaced_and_uds_only_mode(tmp_path: Path, sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens: what a crash leaves behind
    model = bench_models.mlp(tmp_path / "mlp.onnx")
    srv = start_server([f"mlp={model}"], tmp_path, ["--uds", str(sock_path), "--uds-mode", "660"])
    try:
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660
        with _uds_client(sock_path) as uds:
            assert uds.get("/v2/models/mlp/ready").status_code == 200
        # A second server on the same socket is refused: the file is live.
        other = _serve([f"mlp={model}", "--uds", str(sock_path), "--no-tcp"], tmp_path)
        assert other.returncode != 0
        assert "in use" in other.stderr and "Traceback" not in other.stderr
    finally:
        stop_server(srv)


def test_socket_path_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    model = bench_models.mlp(tmp_path / "mlp.onnx")
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    done = _serve([f"mlp={model}", "--uds", str(precious), "--no-tcp"], tmp_path)
    assert done.returncode != 0
    assert "not a socket" in done.stderr
    assert precious.read_text() == "keep me"


def test_no_tcp_without_uds_is_a_config_error(tmp_path: Path) -> None:
    model = bench_models.mlp(tmp_path / "mlp.onnx")
    done = _serve([f"mlp={model}", "--no-tcp"], tmp_path)
    assert done.returncode != 0 and "listen nowhere" in done.stderr
