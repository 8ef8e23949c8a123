"""Starting and stopping `mlrt serve` as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench import models as bench_models
from tests.integration import serving as helpers
from tests.integration.serving import REPO_ROOT

pytestmark = pytest.mark.integration


def serve_command(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "runtime", "serve", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    path = bench_models.mlp(tmp_path / "mlp.onnx")
    srv = helpers.start_server([f"clf={path}"], tmp_path, ["--log-level", "info"])
    assert httpx.get(f"{srv.url}/v2/models/clf/ready").status_code == 200
    code = helpers.terminate(srv)
    log = srv.stderr()
    # Startup logs one line per model with its signature, and the URL.
    assert "clf" in log and "input:FP32[-1, 20]" in log and "output:FP32[-1, 2]" in log
    assert srv.url in log
    assert code == 0, f"exit status {code} after SIGTERM (graceful shutdown should exit 0)"


def test_missing_model_file_fails_at_startup(tmp_path: Path) -> None:
    done = serve_command(f"gone={tmp_path / 'gone.onnx'}", "--port", "0")
    assert done.returncode == 1
    assert "model 'gone': no such file" in done.stderr
    assert "Traceback" not in done.stderr


def test_unimportable_python_model_fails_at_startup() -> None:
    done = serve_command("m=no_such_pkg_mlrt.mod:obj", "--port", "0")
    assert done.returncode == 1
    assert "cannot import module 'no_such_pkg_mlrt.mod'" in done.stderr


def test_no_models() -> None:
    done = serve_command("--port", "0")
    assert done.returncode == 2
    assert "no models given" in done.stderr
