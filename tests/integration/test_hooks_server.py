"""Hooks fired by a real server's drift monitor: a command hook receives the event
once per drift episode, and a failing hook does not disturb serving.

"Once" is checked only after the server has provably evaluated the drifting model again
(a second model's episode fires after it) and every firing has finished (shutdown waits
for them): a slow machine makes the test slower, never vacuous."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.serving import REPO_ROOT, start_server, stop_server, wait_for

pytestmark = pytest.mark.integration

DEMO = REPO_ROOT / "runtime" / "demo"
RECORDER = "import sys, pathlib; p = pathlib.Path(sys.argv[1]); p.open('a').write(sys.stdin.read() + '\\n')"


def _config(tmp_path: Path, events: Path) -> Path:
    cfg = tmp_path / "mlrt.toml"
    command = [sys.executable, "-c", RECORDER, str(events)]
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    # No cooldown: only the episode rule can keep a hook from firing again.
    hooks = "".join(
        f'[[hooks]]\ntype = "command"\ncommand = {json.dumps(argv)}\non = ["alert"]\ncooldown_s = 0\n\n'
        for argv in (command, failing)
    )
    cfg.write_text("[monitor]\nwindow_s = 60\nslices = 6\ntick_s = 0.2\nmin_rows = 50\n\n" + hooks)
    return cfg


def _send(client: httpx.Client, model: str, X: np.ndarray, rows: np.ndarray) -> None:
    for chunk in np.array_split(rows, max(1, len(rows) // 8)):
        body = {"inputs": [{"name": "features", "shape": [len(chunk), 30], "datatype": "FP32",
                            "data": X[chunk].ravel().tolist()}]}
        r = client.post(f"/v2/models/{model}/infer", json=body)
        assert r.status_code == 200, r.text


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    # A line still being written is not an event yet.
    return [json.loads(line) for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")
            and line.strip()]


def test_command_hook_fires_once_per_episode(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    model, profile = DEMO / "model.onnx", DEMO / "profile.json"
    # Two models with the same profile: "probe" is there to prove that the server looked
    # at "demo" again, with more drifting rows, before the test counts demo's events.
    srv = start_server(
        [f"demo={model}", f"probe={model}"], tmp_path,
        ["--profile", f"demo={profile}", "--profile", f"probe={profile}",
         "--config", str(_config(tmp_path, events))],
    )  # fmt: skip
    try:
        with np.load(DEMO / "data.npz") as d:
            X, y = d["features"], d["labels"]
        malignant = np.resize(np.flatnonzero(y == 0), 400)
        with httpx.Client(base_url=srv.url, timeout=30.0) as client:
            _send(client, "demo", X, malignant)
            wait_for(lambda: len(_events(events)) >= 1, 30, "the hook's first event")
            _send(client, "demo", X, malignant)  # still drifting: same episode
            # Every tick evaluates every model, and the hooks for one tick are submitted in
            # the order of its models. The tick that fires probe's hook has seen demo's
            # second batch too: had demo's still-alert status fired again, by then or in
            # that tick, that firing was submitted no later than probe's.
            _send(client, "probe", X, malignant)
            wait_for(lambda: any(e["model"] == "probe" for e in _events(events)), 30, "probe's event")
            assert client.get("/v2/health/ready").status_code == 200

            # The dashboard's timeline has each firing and its outcome beside the drift change.
            def timeline() -> list[str]:
                return [
                    f"{e['kind']} {e['model']}: {e['text']}"
                    for e in client.get("/dashboard.json").json()["events"]
                ]

            wait_for(lambda: sum(" failed: " in t for t in timeline()) >= 2, 30, "the hooks' outcomes")
            told = timeline()
            assert any(t.startswith("drift demo: v1 drift ok -> alert") for t in told), told
            assert sum(t.startswith("hook demo: hook ") and " fired: " in t for t in told) == 2, told
    finally:
        stop_server(srv)  # the dispatcher's close waits for every firing submitted
    lines = _events(events)
    assert sorted(e["model"] for e in lines) == ["demo", "probe"], lines
    for event in lines:
        assert event["version"] == "1"
        assert event["status"] == "alert" and event["previous"] == "ok"
        drifting = {f["name"] for f in event["features"] if f["status"] == "alert"}
        assert "mean radius" in drifting
        assert event["rows"] >= 50  # min_rows: the hook fired at the first tick past the guard
    log = srv.stderr()
    assert "model 'demo' v1 drift status ok -> alert" in log  # the status change is logged
    # and so is the failing hook, which changed nothing: once per episode, like the recorder
    assert log.count("exited with status 3") == 2, log
