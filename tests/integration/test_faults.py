"""A model hung on one input never freezes the server: the health routes and other models
answer at once, the hung request gets 504 at its deadline, a spare thread serves the
model's other requests, the event loop never stalls, and SIGTERM keeps its bound.
Against a real server on real sockets."""

from __future__ import annotations

import concurrent.futures
import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import models as bench_models
from tests.integration.serving import PYMODELS, start_server, stop_server

pytestmark = pytest.mark.integration


def _infer(url: str, model: str, value: float, timeout_us: int | None = None) -> tuple[int, float, dict]:
    body: dict = {"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [value] * 4}]}
    if timeout_us is not None:
        body["parameters"] = {"timeout": timeout_us}
    started = time.monotonic()
    r = httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=60)
    return r.status_code, time.monotonic() - started, r.json()


def _mlp(url: str) -> tuple[int, float]:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [0.5] * 20}]}
    started = time.monotonic()
    r = httpx.post(f"{url}/v2/models/mlp/infer", json=body, timeout=60)
    return r.status_code, time.monotonic() - started


def _gauge(url: str, name: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=10).text):
        for s in family.samples:
            if s.name == name:
                out[s.labels.get("model", "")] = s.value
    return out


def test_a_model_hung_on_one_input_freezes_nothing(tmp_path: Path) -> None:
    model = bench_models.mlp(tmp_path / "mlp.onnx")
    srv = start_server(
        [f"mlp={model}", f"hang={PYMODELS}:hangs_on_nines"], tmp_path, ["--graceful-timeout", "3"]
    )
    exited = False
    try:
        url = srv.url
        assert _mlp(url)[0] == 200 and _infer(url, "hang", 1.0)[0] == 200  # warm connections and models
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            hung = pool.submit(_infer, url, "hang", 9.0, 1_000_000)  # a 1 s deadline
            time.sleep(0.3)  # the hung call is running now
            started = time.monotonic()
            assert httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
            ready_s = time.monotonic() - started
            mlp_code, mlp_s = _mlp(url)
            # Another request to the same model, queued behind the hung call: a spare thread
            # takes it once the hung call is past every deadline in its batch.
            other = pool.submit(_infer, url, "hang", 1.0, 5_000_000)
            code, hung_s, body = hung.result()
            other_code, other_s, _ = other.result()
        assert ready_s < 0.1 and mlp_code == 200 and mlp_s < 0.1, (ready_s, mlp_s)
        assert code == 504 and 0.9 <= hung_s < 1.5, (code, hung_s, body)
        assert "did not answer within the request's deadline" in body["error"]
        assert other_code == 200 and other_s < 2.0, (other_code, other_s)
        assert _gauge(url, "mlrt_stuck_calls")["hang"] == 1
        assert _gauge(url, "mlrt_event_loop_stall_seconds")[""] < 0.1
        assert _infer(url, "hang", 2.0, 5_000_000)[0] == 200  # the spare keeps serving
        assert "left to finish and a spare thread serves" in srv.stderr()

        # SIGTERM with the call still stuck (about 18 s to go): out within the 3 s bound.
        srv.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = srv.process.wait(timeout=30)
        exited = True
        assert code == 0 and time.monotonic() - started < 5, (code, srv.stderr())
        assert "still running after the graceful timeout" in srv.stderr()
    finally:
        if not exited:
            stop_server(srv)


def test_sigterm_under_load_answers_the_requests_that_arrived(tmp_path: Path) -> None:
    """64 clients send requests back to back on keep-alive connections; SIGTERM. A request
    the server had received when it stopped is answered, not dropped with its connection.
    Before the fix every client lost one (64 of 64 in three runs); what remains possible is a
    request sent in the microseconds between the server's last look at a connection and its
    close, which no server can answer (clients retry a request that got no answer on a
    kept-alive connection)."""
    import socket
    import threading

    from bench._harness import post_request

    model = bench_models.mlp(tmp_path / "mlp.onnx")
    srv = start_server([f"mlp={model}"], tmp_path, ["--graceful-timeout", "5"])
    port = int(srv.host_port.rpartition(":")[2])
    values = b", ".join([b"0.5"] * 20)
    body = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [%s]}]}' % values
    raw = post_request("/v2/models/mlp/infer", body, {"Content-Type": "application/json"})
    stop = threading.Event()
    counts = {"ok": 0, "lost": 0}
    lock = threading.Lock()

    def client() -> None:
        try:
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            return
        with conn:
            while not stop.is_set():
                try:
                    conn.sendall(raw)
                except OSError:
                    return  # closed before this request was written: nothing was sent
                try:
                    data = conn.recv(65536)
                except OSError:
                    data = b""
                with lock:
                    counts["ok" if data.startswith(b"HTTP/1.1 200") else "lost"] += 1
                if not data or b"connection: close" in data.lower():
                    return

    threads = [threading.Thread(target=client) for _ in range(64)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.5)
        srv.process.send_signal(signal.SIGTERM)
        assert srv.process.wait(timeout=30) == 0
    finally:
        stop.set()
        for t in threads:
            t.join()
        if srv.process.poll() is None:
            stop_server(srv)
    assert counts["ok"] > 1000 and counts["lost"] <= 2, counts
