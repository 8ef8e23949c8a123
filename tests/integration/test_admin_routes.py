"""The model repository routes change what is served: a name from a URL is a model name and
nothing else (no spec is parsed, no code is imported), and without an admin token they
answer local clients only. Against a real server on real sockets."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from bench import models as bench_models
from runtime.registry import FilesystemRegistry
from tests.integration.serving import PYMODELS, start_server, stop_server

pytestmark = pytest.mark.integration

CRAFTED = [
    "x=sentinel_mod:obj",  # a spec naming a module: importing it runs its code
    "sentinel_mod:obj",
    "picky=fraud",  # replace a served Python model with a registry model
    "fraud@production",
    "models:%2Ffraud",
    "a%0Aforged%20line",
    "a%00b",
    "%2E%2E",
    ".hidden",
    "a%20b",
    "x" * 200,
]


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    """A module that leaves a file behind if anything imports it."""
    (tmp_path / "sentinel_mod.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w').close()\nobj = None\n"
    )
    return tmp_path / "imported"


def _registry(tmp_path: Path) -> Path:
    reg = FilesystemRegistry(tmp_path / "registry")
    v = reg.register(bench_models.mlp(tmp_path / "mlp.onnx"), "fraud")
    reg.set_alias("fraud", "production", v)
    return reg.root


def test_a_name_from_a_url_is_only_ever_a_model_name(tmp_path: Path, sentinel: Path) -> None:
    root = _registry(tmp_path)
    srv = start_server(
        [f"picky={PYMODELS}:picky"], tmp_path, ["--registry", str(root)], env={"PYTHONPATH": str(tmp_path)}
    )
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            for name in CRAFTED:
                for action in ("load", "unload"):
                    r = http.post(f"/v2/repository/models/{name}/{action}")
                    assert r.status_code in (400, 404), (name, action, r.status_code, r.text)
                    if r.status_code == 400:
                        assert "invalid model name" in r.json()["error"]
            assert not sentinel.exists(), "a crafted name imported a module"
            assert http.get("/v2/models/picky").json()["platform"] == "python"
            # A valid name that is neither served nor unloaded means the registry's name@production.
            r = http.post("/v2/repository/models/nope/load")
            assert r.status_code == 404, r.text
            r = http.post("/v2/repository/models/fraud/load")
            assert r.status_code == 200 and r.json() == {"name": "fraud", "version": "1"}
            index = {m["name"] for m in http.post("/v2/repository/index").json()}
            assert index == {"picky", "fraud"}
        log = srv.stderr()
        assert "forged line" not in log.splitlines()[-1:] and "\x00" not in log
    finally:
        stop_server(srv)


def _outward_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent, only a route is chosen
            address = s.getsockname()[0]
        except OSError:
            return None
    try:  # the route may name an address nothing can bind or reach here
        with socket.create_server((address, 0)):
            pass
    except OSError:
        return None
    return None if address.startswith("127.") else address


def test_without_a_token_the_routes_answer_loopback_only(tmp_path: Path) -> None:
    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    model = bench_models.mlp(tmp_path / "mlp.onnx")
    srv = start_server([f"mlp={model}"], tmp_path, ["--host", "0.0.0.0", "--log-level", "info"])
    try:
        port = srv.host_port.rpartition(":")[2]
        outside = httpx.post(f"http://{address}:{port}/v2/repository/models/mlp/load", timeout=30)
        assert outside.status_code == 403 and "MLRT_ADMIN_TOKEN" in outside.json()["error"]
        assert httpx.post(f"http://{address}:{port}/v2/repository/index", timeout=30).status_code == 403
        # Inference is not an admin route: it answers from anywhere.
        assert httpx.get(f"http://{address}:{port}/v2/models/mlp", timeout=30).status_code == 200
        assert httpx.post(f"{srv.url}/v2/repository/models/mlp/load", timeout=30).status_code == 200
        assert "without an admin token" in srv.stderr()
    finally:
        stop_server(srv)
