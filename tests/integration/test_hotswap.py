"""Serving from a registry: alias changes swap versions under load without a failed
request, every answer comes from exactly the version it names, and a broken version
never replaces a working one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import models as bench_models
from runtime.registry import FilesystemRegistry
from tests.integration.serving import start_server, stop_server

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(tmp_path: Path) -> tuple[Path, dict[str, ort.InferenceSession]]:
    root = tmp_path / "registry"
    reg = FilesystemRegistry(root)
    sessions = {}
    for seed in (1, 2):
        path = bench_models.mlp(tmp_path / f"mlp{seed}.onnx", seed=seed)
        version = reg.register(path, "fraud")
        sessions[version] = ort.InferenceSession(str(path))
    reg.set_alias("fraud", "production", "1")
    return root, sessions


def _reloads(url: str) -> dict[str, float]:
    out = {}
    for fam in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for s in fam.samples:
            if s.name == "mlrt_model_reloads_total":
                out[s.labels["result"]] = s.value
    return out


def test_promotions_under_load_lose_nothing(tmp_path: Path, registry) -> None:
    root, sessions = registry
    reg = FilesystemRegistry(root)
    srv = start_server(["fraud@production"], tmp_path, ["--registry", str(root), "--registry-poll", "0.1"])
    stop = threading.Event()
    problems: list[str] = []
    seen: list[tuple[float, str]] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            while not stop.is_set():
                x = rng.standard_normal((int(rng.integers(1, 5)), 20)).astype(np.float32)
                body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                    "data": x.ravel().tolist()}]}  # fmt: skip
                r = c.post("/v2/models/fraud/infer", json=body)
                if r.status_code != 200:
                    problems.append(f"{r.status_code}: {r.text}")
                    continue
                doc = r.json()
                version = doc["model_version"]
                got = np.array(doc["outputs"][0]["data"], np.float32).reshape(doc["outputs"][0]["shape"])
                want = sessions[version].run(None, {"input": x})[0]
                if not np.allclose(got, want, rtol=1e-5, atol=1e-6):
                    problems.append(f"answer does not match version {version}")
                with lock:
                    seen.append((time.monotonic(), version))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        for target in ["2", "1", "2", "1", "2"]:
            reg.set_alias("fraud", "production", target)
            switched = time.monotonic()
            deadline = switched + 20
            while time.monotonic() < deadline:
                with lock:
                    if any(t >= switched and v == target for t, v in seen[-20:]):
                        break
                time.sleep(0.05)
            else:
                pytest.fail(f"the server did not switch to version {target}; log:\n{srv.stderr()}")
            time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert not problems, problems[:5]
        # After the last promotion settled, only version 2 answers.
        with httpx.Client(base_url=srv.url) as c:
            x = np.zeros((1, 20), np.float32)
            body = {
                "inputs": [
                    {"name": "input", "shape": [1, 20], "datatype": "FP32", "data": x.ravel().tolist()}
                ]
            }
            assert {
                c.post("/v2/models/fraud/infer", json=body).json()["model_version"] for _ in range(5)
            } == {"2"}
        assert _reloads(srv.url).get("swapped") == 5
        assert len(seen) > 50
    finally:
        stop.set()
        stop_server(srv)


def test_broken_version_keeps_the_old_one_serving(tmp_path: Path, registry) -> None:
    root, _ = registry
    reg = FilesystemRegistry(root)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not an onnx model")
    bad = reg.register(broken, "fraud")
    srv = start_server(
        ["fraud@production"], tmp_path,
        ["--registry", str(root), "--registry-poll", "0.1", "--admin-token", "t0ken"],
    )  # fmt: skip
    try:
        reg.set_alias("fraud", "production", bad)
        deadline = time.monotonic() + 20
        while _reloads(srv.url).get("failed", 0) < 1:
            if time.monotonic() > deadline:
                pytest.fail(f"the failed load was not counted; log:\n{srv.stderr()}")
            time.sleep(0.1)
        assert httpx.get(f"{srv.url}/v2/health/ready").status_code == 200
        assert httpx.get(f"{srv.url}/v2/models/fraud").json()["versions"] == ["1"]
        assert "keeps serving" in srv.stderr()
        # Tried once per alias move, not at every poll (it failed and logged every 0.1 s).
        time.sleep(1.0)
        assert _reloads(srv.url)["failed"] == 1
        assert "not tried again until the alias moves" in srv.stderr()
        # The admin API: a token is required, and "load" reloads now (and fails the same way).
        url = f"{srv.url}/v2/repository/models/fraud/load"
        assert httpx.post(url).status_code == 401
        assert httpx.post(url, headers={"Authorization": "Bearer nope"}).status_code == 401
        r = httpx.post(url, headers={"Authorization": "Bearer t0ken"})
        assert r.status_code == 400 and "fraud" in r.json()["error"]
        r = httpx.post(url.replace("fraud", "nosuch"), headers={"Authorization": "Bearer t0ken"})
        assert r.status_code == 404 and r.json()["error"].count("unknown model 'nosuch'") == 1, r.text
        index = httpx.post(f"{srv.url}/v2/repository/index", headers={"Authorization": "Bearer t0ken"})
        assert index.json() == [{"name": "fraud", "version": "1", "state": "READY", "reason": ""}]
        assert "t0ken" not in srv.stderr()
    finally:
        stop_server(srv)


def test_swap_to_a_version_without_profile_keeps_the_previous_profile(tmp_path: Path) -> None:
    reg = FilesystemRegistry(tmp_path / "registry")
    X = np.random.default_rng(0).normal(size=(500, 20)).astype(np.float32)
    from runtime.monitor.profile import Profile

    Profile.fit(X).save(tmp_path / "ref.json")
    v1 = reg.register(bench_models.mlp(tmp_path / "a.onnx", seed=1), "fraud", profile=tmp_path / "ref.json")
    v2 = reg.register(bench_models.mlp(tmp_path / "b.onnx", seed=2), "fraud")  # no profile
    reg.set_alias("fraud", "production", v1)
    args = ["--registry", str(reg.root), "--registry-poll", "0.1"]
    srv = start_server(["fraud@production"], tmp_path, args)
    try:
        assert httpx.get(f"{srv.url}/v2/models/fraud/drift").status_code == 200
        reg.set_alias("fraud", "production", v2)
        deadline = time.monotonic() + 20
        while _reloads(srv.url).get("swapped", 0) < 1:
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not swap to version {v2}; log:\n{srv.stderr()}")
            time.sleep(0.1)
        # Monitoring goes on, by version 1's profile, and the log says so.
        drift = httpx.get(f"{srv.url}/v2/models/fraud/drift")
        assert drift.status_code == 200 and drift.json()["model_version"] == v2, drift.text
        log = srv.stderr()
        assert f"version {v2} has no reference profile of its own, so its drift is judged against the " \
            f"profile of version {v1}" in log, log
    finally:
        stop_server(srv)


def test_a_version_with_other_inputs_is_swapped_in_with_a_warning(tmp_path: Path, registry) -> None:
    # Promoting a version with another signature swapped silently; every client then got 400.
    root, _ = registry
    reg = FilesystemRegistry(root)
    other = reg.register(bench_models.two_io(tmp_path / "two.onnx"), "fraud")
    srv = start_server(["fraud@production"], tmp_path, ["--registry", str(root), "--registry-poll", "0.1"])
    try:
        reg.set_alias("fraud", "production", other)
        deadline = time.monotonic() + 20
        while _reloads(srv.url).get("swapped", 0) < 1:
            assert time.monotonic() < deadline, srv.stderr()
            time.sleep(0.1)
        assert f"version {other} takes (" in srv.stderr()
        assert "requests made for the old inputs are now refused" in srv.stderr()
    finally:
        stop_server(srv)
