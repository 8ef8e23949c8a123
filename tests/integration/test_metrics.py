"""Prometheus /metrics and Triton's statistics extension, on a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

from bench import models as bench_models
from tests.integration.serving import start_server, stop_server

pytestmark = pytest.mark.integration


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory):
    """A server of its own, so the counts below are exactly this module's requests."""
    path = tmp_path_factory.mktemp("metrics")
    bench_models.mlp(path / "mlp.onnx")
    srv = start_server([f"mlp={path / 'mlp.onnx'}"], Path(path))
    yield srv
    stop_server(srv)


def test_metrics_count_requests_batches_and_errors(fresh) -> None:
    client = triton.InferenceServerClient(fresh.host_port)
    x = np.random.default_rng(0).random((3, 20), dtype=np.float32)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    for _ in range(4):
        client.infer("mlp", [inp])
    bad = httpx.post(f"{fresh.url}/v2/models/mlp/infer", content=b"{nope")
    assert bad.status_code == 400

    resp = httpx.get(f"{fresh.url}/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    s = _samples(resp.text)
    mv = (("model", "mlp"), ("version", "1"))
    assert s[("mlrt_requests_total", (("code", "200"), *mv))] == 4
    assert s[("mlrt_requests_total", (("code", "400"), *mv))] == 1
    assert s[("mlrt_request_duration_seconds_count", mv)] == 5
    # Requests of 3 rows on an idle model: four batches of three rows each.
    assert s[("mlrt_batch_size_count", mv)] == 4
    assert s[("mlrt_batch_size_sum", mv)] == 12
    assert s[("mlrt_compute_duration_seconds_count", mv)] == 4
    assert s[("mlrt_queue_duration_seconds_count", mv)] == 4
    assert s[("mlrt_queue_depth", mv)] == 0


def test_triton_statistics(fresh) -> None:
    client = triton.InferenceServerClient(fresh.host_port)
    before = client.get_inference_statistics("mlp")["model_stats"][0]
    x = np.zeros((5, 20), np.float32)
    inp = triton.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    client.infer("mlp", [inp])
    after = client.get_inference_statistics("mlp")["model_stats"][0]
    assert after["name"] == "mlp" and after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 5
    assert after["execution_count"] - before["execution_count"] == 1
    stats = after["inference_stats"]
    assert stats["success"]["count"] - before["inference_stats"]["success"]["count"] == 1
    assert stats["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    assert any(b["batch_size"] == 5 for b in after["batch_stats"])

    every = httpx.get(f"{fresh.url}/v2/models/stats").json()
    assert [m["name"] for m in every["model_stats"]] == ["mlp"]
    one = httpx.get(f"{fresh.url}/v2/models/mlp/versions/1/stats").json()
    assert one["model_stats"][0]["version"] == "1"
    missing = httpx.get(f"{fresh.url}/v2/models/nope/stats")
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    assert httpx.get(f"{fresh.url}/v2/models/mlp/versions/9/stats").status_code == 404
