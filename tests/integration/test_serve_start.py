"""What `mlrt serve` says at start-up and when it cannot start, run as a user runs it
(the console script, from the user's folder): a taken port or socket path is one line
and exit code 1, before anything claims to serve; each model's URL is logged; a model
module in the working directory imports without PYTHONPATH, and one that cannot be
found says where it was looked for; an unknown model's 404 names the models served."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from bench import models as bench_models
from tests.integration.launch import environ, mlrt, run_mlrt, runtime_shadow
from tests.integration.serving import Server, free_port, stop_server, wait_ready

pytestmark = pytest.mark.integration

MODULE = """\
import numpy as np

def model(x):
    return {"total": x.sum(axis=1, keepdims=True)}

model.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]
"""


def _start(args: list[str], cwd: Path) -> Server:
    """`mlrt serve ARGS` from `cwd`, as the console script runs it, on a free port."""
    port = free_port()
    log = cwd / f"server-{port}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            mlrt("serve", *args, "--host", "127.0.0.1", "--port", str(port)),
            cwd=cwd, env=environ(), stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    server = Server(f"127.0.0.1:{port}", proc, log)
    try:
        wait_ready(server)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return server


def _refused_before_serving(done: subprocess.CompletedProcess[str], words: str) -> None:
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    # The whole output is that one line: nothing claimed to serve, no model was loaded
    # for nothing, no traceback.
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1, out
    assert lines[0].startswith("mlrt serve: ") and words in lines[0], out


def test_a_taken_port_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    model = bench_models.mlp(tmp_path / "mlp.onnx")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_mlrt("serve", str(model), "--port", str(port), cwd=tmp_path, timeout_s=60)
    _refused_before_serving(done, f"127.0.0.1:{port} is already in use")


def test_a_unix_socket_in_use_is_one_line_and_exit_code_1(tmp_path: Path) -> None:
    model = bench_models.mlp(tmp_path / "mlp.onnx")
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as live:
        live.bind(str(path))
        live.listen()
        done = run_mlrt("serve", str(model), "--uds", str(path), "--no-tcp", cwd=tmp_path, timeout_s=60)
    _refused_before_serving(done, "is in use")


def test_startup_logs_the_url_of_each_model_named_after_its_file(tmp_path: Path) -> None:
    bench_models.mlp(tmp_path / "churn.onnx")
    srv = _start(["churn.onnx"], tmp_path)
    try:
        assert httpx.get(f"{srv.url}/v2/models/churn/ready").status_code == 200
    finally:
        stop_server(srv)
    assert f"{srv.url}/v2/models/churn/infer" in srv.stderr()


def test_a_model_module_in_the_working_directory_imports_without_pythonpath(tmp_path: Path) -> None:
    runtime_shadow(tmp_path)  # and a runtime/ folder beside it must not shadow mlrt
    (tmp_path / "mymodel.py").write_text(MODULE)
    srv = _start(["scorer=mymodel:model"], tmp_path)
    try:
        body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3.5]}]}
        r = httpx.post(f"{srv.url}/v2/models/scorer/infer", json=body)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["name"] == "total"
        assert r.json()["outputs"][0]["data"] == [6.5]
    finally:
        stop_server(srv)


def test_a_model_module_not_found_says_where_it_looked(tmp_path: Path) -> None:
    done = run_mlrt("serve", "scorer=nosuchmodule_mlrt:model", "--port", str(free_port()), cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    msg = done.stderr
    assert "cannot import module 'nosuchmodule_mlrt'" in msg
    assert f"the current directory {tmp_path}" in msg and "PYTHONPATH" in msg, msg
    assert "nosuchmodule_mlrt.py" in msg, msg


def test_a_model_module_that_fails_to_import_says_why(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import numpy\nraise RuntimeError('no weights file')\n")
    done = run_mlrt("serve", "scorer=broken:model", "--port", str(free_port()), cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "importing module 'broken' failed: RuntimeError: no weights file" in done.stderr


def test_an_unknown_model_404_names_the_models_served(tmp_path: Path) -> None:
    model = bench_models.mlp(tmp_path / "mlp.onnx")
    srv = _start([f"churn={model}", f"fraud={model}"], tmp_path)
    try:
        body = {"inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP32", "data": [0.0] * 20}]}
        r = httpx.post(f"{srv.url}/v2/models/model/infer", json=body)
        assert r.status_code == 404
        assert r.json() == {"error": "unknown model 'model'; models served: 'churn', 'fraud'"}
        r = httpx.get(f"{srv.url}/v2/models/churn/versions/7")
        assert r.status_code == 404
        assert r.json() == {"error": "unknown version '7' of model 'churn'; versions served: '1'"}
    finally:
        stop_server(srv)
