"""Hooks fired by a real server's drift monitor: a command hook receives the event
once per drift episode, and a failing hook does not disturb serving."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.serving import REPO_ROOT, start_server, stop_server

pytestmark = pytest.mark.integration

DEMO = REPO_ROOT / "runtime" / "demo"
RECORDER = "import sys, pathlib; p = pathlib.Path(sys.argv[1]); p.open('a').write(sys.stdin.read() + '\\n')"


def _config(tmp_path: Path, events: Path) -> Path:
    cfg = tmp_path / "mlrt.toml"
    command = [sys.executable, "-c", RECORDER, str(events)]
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    cfg.write_text(
        "[monitor]\nwindow_s = 60\nslices = 6\ntick_s = 0.2\nmin_rows = 50\n\n"
        f"[[hooks]]\ntype = \"command\"\ncommand = {json.dumps(command)}\non = [\"alert\"]\n\n"
        f"[[hooks]]\ntype = \"command\"\ncommand = {json.dumps(failing)}\non = [\"alert\"]\n"
    )
    return cfg


def _send(client: httpx.Client, X: np.ndarray, rows: np.ndarray) -> None:
    for chunk in np.array_split(rows, max(1, len(rows) // 8)):
        body = {"inputs": [{"name": "features", "shape": [len(chunk), 30], "datatype": "FP32",
                            "data": X[chunk].ravel().tolist()}]}
        r = client.post("/v2/models/demo/infer", json=body)
        assert r.status_code == 200, r.text


def _wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def test_command_hook_fires_once_per_episode(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    srv = start_server(
        [f"demo={DEMO / 'model.onnx'}"], tmp_path,
        ["--profile", str(DEMO / "profile.json"), "--config", str(_config(tmp_path, events))],
    )  # fmt: skip
    try:
        with np.load(DEMO / "data.npz") as d:
            X, y = d["features"], d["labels"]
        malignant = np.flatnonzero(y == 0)
        with httpx.Client(base_url=srv.url, timeout=30.0) as client:
            _send(client, X, np.resize(malignant, 400))
            _wait_for(events.exists, 30, "the hook's event file")
            _send(client, X, np.resize(malignant, 400))  # still drifting: same episode
            time.sleep(1.0)  # several ticks
            assert client.get("/v2/health/ready").status_code == 200
        lines = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
        assert len(lines) == 1, lines
        event = lines[0]
        assert event["model"] == "demo" and event["version"] == "1"
        assert event["status"] == "alert"
        drifting = {f["name"] for f in event["features"] if f["status"] == "alert"}
        assert "mean radius" in drifting
        assert event["rows"] >= 50  # min_rows: the hook fired at the first tick past the guard
        log = srv.stderr()
        assert "drift status ok -> alert" in log  # the status change is logged
        assert "exited with status 3" in log  # and so is the failing hook, which changed nothing
    finally:
        stop_server(srv)
