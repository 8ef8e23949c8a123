"""A canary's automatic rollback (runtime/traffic/rollback.py) against a real server: a
canary that fails, or answers far slower than the primary, loses its weight within its
window, and the primary serves every request meanwhile without an error."""

from __future__ import annotations

import http.client
import json
import sys
import time
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from tests.integration.serving import PYMODELS, Server, start_server, stop_server

pytestmark = pytest.mark.integration

X = load_breast_cancer().data
WINDOW_S = 5


# A command hook that keeps the event it is given: the file is the proof that it fired.
KEEP_EVENT = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_bytes(sys.stdin.buffer.read())"


def serve(tmp: Path, canary: str) -> Server:
    cfg = tmp / "canary.toml"
    hook = json.dumps([sys.executable, "-c", KEEP_EVENT, str(tmp / "event.json")])
    cfg.write_text(
        f"""
[[models]]
name = "primary"
source = "{PYMODELS}:cancer_a"

[[models]]
name = "canary"
source = "{PYMODELS}:{canary}"
inline_max_us = 0

[[endpoints]]
name = "cancer"
variants = [
    {{ model = "primary", weight = 80 }},
    {{ model = "canary", weight = 20, rollback = {{ window_s = {WINDOW_S}, min_requests = 10 }} }},
]

[[hooks]]
type = "command"
command = {hook}
on = ["rollback"]
"""
    )
    return start_server([], tmp, ["--config", str(cfg)])


def _drive(srv: Server, seconds: float) -> tuple[dict, list[tuple[float, int, str]]]:
    """Requests one after another for `seconds`: (time, status, variant) of each, and the
    endpoint's state at the end."""
    host, port = srv.host_port.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    seen = []
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < seconds:
        rows = X[i % len(X) : i % len(X) + 1]
        tensor = {"name": "input", "datatype": "FP64", "shape": [1, 30], "data": rows.ravel().tolist()}
        conn.request("POST", "/v2/models/cancer/infer", json.dumps({"inputs": [tensor]}))
        r = conn.getresponse()
        body = json.loads(r.read())
        # A failure names its variant in the mlrt-variant header, as an answer does in its body.
        variant = body.get("model_name") or (r.getheader("mlrt-variant") or "").partition("/")[0]
        seen.append((time.monotonic() - start, r.status, variant))
        i += 1
    conn.request("GET", "/v2/endpoints/cancer")
    state = json.loads(conn.getresponse().read())
    conn.request("GET", "/metrics")
    metrics = conn.getresponse().read().decode()
    conn.close()
    state["metrics"] = metrics
    return state, seen


@pytest.mark.parametrize(("canary", "why"), [("cancer_broken", "error rate"), ("cancer_slow", "p99 latency")])
def test_a_bad_canary_is_rolled_back_within_its_window(tmp_path: Path, canary: str, why: str) -> None:
    srv = serve(tmp_path, canary)
    try:
        state, seen = _drive(srv, WINDOW_S + 6)
    finally:
        stop_server(srv)
    weights = {v["model"]: v["weight"] for v in state["variants"]}
    assert weights == {"primary": 80, "canary": 0}, state
    (rollback,) = state["rollbacks"]
    assert rollback["rollbacks"] == 1 and why in rollback["last"]["reason"], rollback
    assert 'mlrt_endpoint_rollbacks_total{endpoint="cancer",variant="canary"} 1.0' in state["metrics"]
    # The primary never failed; every failure was the canary's.
    primary = [s for _, s, m in seen if m == "primary"]
    assert primary and all(s == 200 for s in primary)
    failures = [t for t, s, _ in seen if s != 200]
    if why == "error rate":
        assert failures and all(s == 500 for _, s, _ in seen if s != 200)
        assert all(m == "canary" for _, s, m in seen if s != 200)  # each failure says whose
    else:
        assert not failures
    # Rolled back within its window: the canary's last answer came less than a window (and
    # a tick) after its first, and nothing went to it for the rest of the run.
    canary_times = [t for t, s, m in seen if m == "canary" or s != 200]
    assert canary_times[-1] - canary_times[0] < WINDOW_S + 1.5, canary_times
    assert seen[-1][0] - canary_times[-1] > 3
    log = srv.stderr_path.read_text()
    assert "canary canary rolled back (weight 20 -> 0)" in log
    # The hooks fired, with the event that says what happened.
    event = json.loads((tmp_path / "event.json").read_text())
    assert event["event"] == "rollback" and event["endpoint"] == "cancer" and event["model"] == "canary"
    assert event["weight_was"] == 20 and why in event["reason"] and event["version"]
