"""Every mlrt child process (the demo's server, `mlrt bench MODEL`'s server, the bench
scripts' servers) imports the mlrt its parent runs, whatever its working directory holds.

Before, children ran `python -m runtime`, which puts the working directory first on
sys.path: `pip install . && mlrt demo` at the root of a checkout imported the checkout's
`runtime/` folder, without its compiled extensions, and failed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench import models as bench_models
from runtime._child import mlrt_command, running_server
from tests.integration.launch import environ, run_mlrt, runtime_shadow
from tests.integration.serving import free_port

pytestmark = pytest.mark.integration


def test_demo_from_a_folder_holding_a_runtime_package(tmp_path: Path) -> None:
    cwd = runtime_shadow(tmp_path)
    done = run_mlrt("demo", "--duration", "4", "--drift-after", "1", "--port", str(free_port()), cwd=cwd)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "not mlrt" not in out
    assert done.stdout.strip().splitlines()[-1].startswith("done:"), out


def test_bench_of_a_model_file_from_a_folder_holding_a_runtime_package(tmp_path: Path) -> None:
    cwd = runtime_shadow(tmp_path)
    model = bench_models.mlp(tmp_path / "mlp.onnx")
    done = run_mlrt("bench", str(model), "--duration", "1", "--warmup", "0", "--json", "--quiet", cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)["result"]
    assert result["ok"] > 0 and result["error_count"] == 0


def test_a_child_keeps_the_users_pythonpath_but_never_takes_runtime_from_it(tmp_path: Path) -> None:
    # PYTHONPATH is the user's: their model module on it is found. Even "." on it (the
    # working directory, holding a runtime/ folder) does not replace the real package.
    work = runtime_shadow(tmp_path / "work")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "usermodels.py").write_text(
        "def double(x):\n"
        "    return x * 2\n\n"
        "double.inputs = [{'name': 'x', 'datatype': 'FP32', 'shape': [-1, 2]}]\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = mlrt_command("serve", "m=usermodels:double", "--port", str(port), "--log-level", "warning")
    env = environ({"PYTHONPATH": os.pathsep.join([str(lib), "."])})
    with running_server(cmd, f"{url}/v2/health/ready", cwd=work, env=env):
        body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.5, -2.0]}]}
        r = httpx.post(f"{url}/v2/models/m/infer", json=body, timeout=10)
    assert r.status_code == 200, r.text
    assert np.allclose(r.json()["outputs"][0]["data"], [3.0, -4.0])
