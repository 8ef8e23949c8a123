"""Shadow traffic (runtime/traffic/shadow.py) against a real server: the agreement and
abs-diff figures equal the same comparison made here on the same rows; a shadow that
sleeps, fails or cannot take the request never touches the primary's answers; copies past
the queue are dropped and counted; the metrics pass promtool."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from runtime.traffic.compare import ABS_DIFF_BUCKETS
from tests.integration import pymodels
from tests.integration.serving import (
    PYMODELS,
    REPO_ROOT,
    Server,
    check_metrics,
    free_port,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.integration

X = load_iris().data  # float64, 150 rows; the primary and both shadows take `input` FP64 [-1, 4]


def serve(tmp: Path, shadow: str, *, sample: float = 1.0, queue: int = 256, extra: str = "") -> Server:
    cfg = tmp / "shadow.toml"
    cfg.write_text(
        f"""
[[models]]
name = "iris"
source = "{PYMODELS}:iris"

[[models]]
name = "candidate"
source = "{PYMODELS}:{shadow}"
{extra}

[[endpoints]]
name = "flowers"
variants = [{{ model = "iris", weight = 1 }}]
shadow = [{{ model = "candidate", sample = {sample}, queue = {queue} }}]
"""
    )
    return start_server([], tmp, ["--config", str(cfg)])


class Caller:
    def __init__(self, server: Server) -> None:
        host, port = server.host_port.split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def infer(self, rows: np.ndarray) -> tuple[int, dict]:
        data = rows.ravel().tolist()
        tensor = {"name": "input", "datatype": "FP64", "shape": list(rows.shape), "data": data}
        body = json.dumps({"inputs": [tensor]})
        self.conn.request("POST", "/v2/models/flowers/infer", body, {"content-type": "application/json"})
        r = self.conn.getresponse()
        return r.status, json.loads(r.read())

    def get(self, path: str) -> str:
        self.conn.request("GET", path)
        return self.conn.getresponse().read().decode()

    def shadow(self) -> dict:
        return json.loads(self.get("/v2/endpoints/flowers"))["shadows"][0]

    def settled(self, timeout_s: float = 20.0) -> dict:
        """The shadow's figures once no copy is in flight and every answer was compared."""
        deadline = time.monotonic() + timeout_s
        while True:
            s = self.shadow()
            metrics = self.get("/metrics")
            answered = _sample(metrics, "mlrt_shadow_duration_seconds_count")
            if s["in_flight"] == 0 and answered + s["failed"] == s["sent"]:
                # Compared in the loop turn after the last answer: one more look settles it.
                return self.shadow()
            assert time.monotonic() < deadline, s
            time.sleep(0.05)


def _sample(metrics: str, name: str, labels: str = 'endpoint="flowers",shadow="candidate"') -> float:
    prefix = f"{name}{{{labels}"
    values = [float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix)]
    assert len(values) == 1, (name, labels, metrics)
    return values[0]


def test_agreement_and_abs_diffs_equal_an_offline_comparison(tmp_path: Path, capsys) -> None:
    from runtime.cli import main as mlrt

    srv = serve(tmp_path, "iris_stump")
    try:
        with Caller(srv) as c:
            order = np.random.default_rng(7).permutation(len(X))
            sent = []
            for start in range(0, len(order), 3):  # 1 to 3 rows per request
                rows = X[order[start : start + 1 + (start // 3) % 3]]
                status, body = c.infer(rows)
                assert status == 200, body
                # The primary's answer is the primary's, whatever its shadow does.
                assert body["model_name"] == "iris"
                assert body["outputs"][0]["data"] == pymodels.iris.predict(rows).tolist()
                sent.append(rows)
            s = c.settled()
            metrics = c.get("/metrics")
        assert mlrt(["traffic", "show", "flowers", "--url", srv.url]) == 0
    finally:
        stop_server(srv)
    shown = capsys.readouterr().out
    assert f"{100 * s['agreement']:.1f}%" in shown and "candidate" in shown
    rows = np.concatenate(sent)
    primary, stump = pymodels.iris, pymodels.iris_stump
    assert s["sent"] == len(sent) and s["dropped"] == 0 and s["failed"] == 0
    assert s["compared"] == len(rows)
    assert s["agreed"] == int((primary.predict(rows) == stump.predict(rows)).sum())
    assert 0.5 < s["agreement"] < 0.9  # a stump knows two classes of three
    diffs = np.abs(stump.predict_proba(rows) - primary.predict_proba(rows)).ravel()
    for bound in ABS_DIFF_BUCKETS:
        le = repr(float(bound))
        labels = f'endpoint="flowers",le="{le}",shadow="candidate"'
        got = _sample(metrics, "mlrt_shadow_abs_diff_bucket", labels)
        assert got == int((diffs <= bound).sum()), bound
    assert _sample(metrics, "mlrt_shadow_abs_diff_count") == diffs.size
    assert _sample(metrics, "mlrt_shadow_abs_diff_sum") == pytest.approx(diffs.sum(), rel=1e-9)
    assert _sample(metrics, "mlrt_shadow_requests_total") == len(sent)
    assert _sample(metrics, "mlrt_shadow_agreed_total") == s["agreed"]
    assert _sample(metrics, "mlrt_shadow_duration_seconds_count") == len(sent)
    check_metrics(metrics)


def test_a_shadow_sleeping_a_second_per_call_changes_nothing_for_the_primary(tmp_path: Path) -> None:
    # inline_max_us = 0: the stub is fast on the server's zero-row calibration, slow on
    # real rows; a model whose cost depends on its data belongs on a thread.
    srv = serve(tmp_path, "sleepy", queue=4, extra="inline_max_us = 0")
    try:
        with Caller(srv) as c:
            latencies = []
            for i in range(300):
                rows = X[i % 150 : i % 150 + 1]
                t = time.perf_counter()
                status, body = c.infer(rows)
                latencies.append(time.perf_counter() - t)
                assert status == 200 and body["outputs"][0]["data"] == pymodels.iris.predict(rows).tolist()
            s = c.shadow()
    finally:
        stop_server(srv)
    # 300 requests in well under the shadow's one second per call: no primary answer waited.
    assert sorted(latencies)[-3] < 0.1, sorted(latencies)[-10:]
    assert sum(latencies) < 5.0
    # At most 4 copies in flight, the rest dropped and counted; nothing lost from the books.
    assert s["sent"] + s["dropped"] == 300
    assert s["dropped"] >= 280 and s["in_flight"] <= 4


def test_a_failing_or_mismatched_shadow_is_counted_and_the_primary_serves(tmp_path: Path) -> None:
    # `picky` takes `x` FP32 [-1, 2]: it cannot take the primary's request at all.
    srv = serve(tmp_path, "picky")
    try:
        with Caller(srv) as c:
            for i in range(50):
                status, body = c.infer(X[i : i + 2])
                assert status == 200, body
            s = c.shadow()
            ready = c.get("/v2/health/ready")
    finally:
        stop_server(srv)
    assert s["failed"] == 50 and s["sent"] == 0 and s["compared"] == 0
    assert ready == "" or "error" not in ready
    log = srv.stderr_path.read_text()
    assert "shadow candidate failed 1 copies" in log and "input" in log  # logged once a minute, not 50 times
    assert log.count("shadow candidate failed") == 1
    # ... and said at start, once, before any copy failed.
    assert "shadow candidate takes (x:number[2]), its variants (input:number[4]): every copy will fail" in log


def test_variants_that_take_different_inputs_stop_startup(tmp_path: Path) -> None:
    # Such an endpoint started and then refused about half its requests, whichever variant
    # the request was drawn to.
    cfg = tmp_path / "ab.toml"
    cfg.write_text(
        f'[[models]]\nname = "iris"\nsource = "{PYMODELS}:iris"\n'
        f'[[models]]\nname = "picky"\nsource = "{PYMODELS}:picky"\n'
        '[[endpoints]]\nname = "ab"\n'
        'variants = [{ model = "iris", weight = 1 }, { model = "picky", weight = 1 }]\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "serve", "--config", str(cfg), "--port", str(free_port())],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "endpoint 'ab': its variants must take the same inputs" in proc.stderr
    assert "iris takes (input:number[4]); picky takes (x:number[2])" in proc.stderr


def test_sampling_sends_the_configured_share(tmp_path: Path) -> None:
    srv = serve(tmp_path, "iris_stump", sample=0.25)
    try:
        with Caller(srv) as c:
            for i in range(2000):
                assert c.infer(X[i % 150 : i % 150 + 1])[0] == 200
            s = c.settled()
    finally:
        stop_server(srv)
    # Binomial(2000, 0.25): sd 19.4; 5 sd either side.
    assert abs(s["sent"] + s["dropped"] - 500) < 97, s
    assert s["compared"] == s["sent"]


def test_a_model_is_shadowed_by_its_onnx_export_whose_outputs_are_named_otherwise(tmp_path: Path) -> None:
    # Before switching to the ONNX export of a scikit-learn model, shadow the one with the
    # other: predict / predict_proba against skl2onnx's label / probabilities, compared by
    # what each one's prediction is. They share no output name (once: nothing compared).
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = to_onnx(pymodels.iris, initial_types=[("input", FloatTensorType([None, 4]))],
                  options={"zipmap": False})  # fmt: skip
    (tmp_path / "iris.onnx").write_bytes(onx.SerializeToString())
    cfg = tmp_path / "shadow.toml"
    cfg.write_text(
        f'[[models]]\nname = "iris"\nsource = "{PYMODELS}:iris"\n'
        f'[[models]]\nname = "candidate"\nsource = "{tmp_path / "iris.onnx"}"\n'
        '[[endpoints]]\nname = "flowers"\nvariants = [{ model = "iris", weight = 1 }]\n'
        'shadow = [{ model = "candidate", sample = 1.0 }]\n'
    )
    srv = start_server([], tmp_path, ["--config", str(cfg)])
    try:
        with Caller(srv) as c:
            for start in range(0, len(X), 5):
                status, body = c.infer(X[start : start + 5])
                assert status == 200, body
            s = c.settled()
            metrics = c.get("/metrics")
    finally:
        stop_server(srv)
    # What the shadow answered: onnxruntime on the rows as float32 (the server converts them).
    session = ort.InferenceSession(str(tmp_path / "iris.onnx"))
    label, proba = session.run(None, {"input": X.astype(np.float32)})
    assert s["failed"] == 0 and s["compared"] == len(X)
    assert s["agreed"] == int((label == pymodels.iris.predict(X)).sum()) and s["agreement"] > 0.95
    diffs = np.abs(proba.astype(np.float64) - pymodels.iris.predict_proba(X)).ravel()
    assert _sample(metrics, "mlrt_shadow_abs_diff_count") == diffs.size
    assert _sample(metrics, "mlrt_shadow_abs_diff_sum") == pytest.approx(diffs.sum(), rel=1e-6)
