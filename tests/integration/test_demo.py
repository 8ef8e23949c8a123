"""`mlrt demo`, the README's first command: it serves, drives real traffic, shows drift,
stops on its own, and refuses a port that is taken.

The run is read line by line against what the demo promises: every live line parses in
full (requests served, no errors, the model still right, PSI per named feature with a
status its value allows); the drift status stays below alert while the traffic is
unshifted and reaches warn or alert once it shifts; the closing line counts the same
run. A traceback, an empty run or a half-printed line fails the test."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from runtime.monitor.rule import Thresholds
from tests.integration.serving import REPO_ROOT, free_port

pytestmark = pytest.mark.integration

FEATURES = {f["name"] for f in json.loads((REPO_ROOT / "runtime/demo/profile.json").read_text())["features"]}
OUTPUTS = {f["name"] for f in json.loads((REPO_ROOT / "runtime/demo/profile.json").read_text())["outputs"]}
ORDER = {"ok": 0, "warn": 1, "alert": 2}

# runtime/commands/demo.py's line() and its closing print, field by field.
LIVE = re.compile(
    r"\s*(?P<elapsed>[\d.]+)s  (?P<rate>\d+) req/s  p50 [\d.]+ ms  p99 [\d.]+ ms  "
    r"errors (?P<errors>\d+)  accuracy (?P<accuracy>[\d.]+)  shift (?P<shift>\d+)%  "
    r"drift (?P<status>ok|warn|alert), PSI: (?P<psi>.*)"
)
PSI_ITEM = re.compile(r"(?P<name>.+) (?P<psi>\d+\.\d\d) (?P<status>ok|warn|alert)")
DONE = re.compile(
    r"done: (?P<requests>\d+) requests, (?P<errors>\d+) errors; traffic shift reached (?P<shift>\d+)%; "
    r"drift status (?P<status>\w+) \(highest (?P<highest>\w+)\); "
    r"features that reached alert: (?P<alerted>\d+) \((?P<names>.*)\)"
)


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "runtime", "demo", *args], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _psi(text: str) -> list[tuple[str, float, str]]:
    """The 'PSI:' list of a live line: up to three features, worst first."""
    items = []
    for part in text.split(", "):
        m = PSI_ITEM.fullmatch(part)
        assert m, f"not 'feature PSI status': {part!r}"
        items.append((m["name"], float(m["psi"]), m["status"]))
    return items


def test_demo_runs_and_reports_drift() -> None:
    done = _demo("--duration", "8", "--drift-after", "2", "--port", str(free_port()))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert done.stderr == "", output  # no warning, no traceback
    first, *middle, final = done.stdout.strip().splitlines()
    assert first.startswith("mlrt demo: serving model 'demo' at http://127.0.0.1:"), first
    assert "(PSI per feature over a 4 s window); traffic shifts after 2 s" in first, first

    assert middle, output
    limits = Thresholds()  # the demo's config keeps the default PSI bands
    lines = []
    for text in middle:
        m = LIVE.fullmatch(text)
        assert m, f"not a live line: {text!r}"
        lines.append(m)
        assert int(m["errors"]) == 0, text
        assert float(m["accuracy"]) > 0.9, text  # the model answers, and answers right
        psi = _psi(m["psi"])
        assert 1 <= len(psi) <= 3, text
        # The most severe first (an output's alert too), then the highest PSI.
        keys = [(-ORDER[st], -p) for _, p, st in psi]
        assert keys == sorted(keys), text
        for name, value, status in psi:
            assert name in FEATURES or name.removeprefix("output ") in OUTPUTS, text
            # A feature's status never says more than its PSI allows (the rule also asks
            # for significance, so a high PSI may still be "ok").
            if status == "alert":
                assert value >= limits.alert_psi, text
            elif status == "warn":
                assert value >= limits.warn_psi, text
        # The model's status is the worst of its features' and outputs', and the line shows it
        # (an alert from an output, not shown, read as "drift alert" over features in warn).
        assert ORDER[m["status"]] == ORDER[psi[0][2]], text
    assert float(lines[-1]["elapsed"]) >= 7, "the run lasted its --duration"

    # Before the shift the traffic is the reference's: no alert. After it, drift shows.
    unshifted = [m for m in lines if m["shift"] == "0"]
    shifted = [m for m in lines if int(m["shift"]) > 0]
    assert unshifted and shifted, output
    assert all(m["status"] != "alert" for m in unshifted), output
    assert int(shifted[-1]["shift"]) == 100, output
    rose = [m for m in shifted if m["status"] in ("warn", "alert")]
    assert rose, f"the drift status never left ok after the shift:\n{output}"
    name, value, status = _psi(rose[-1]["psi"])[0]
    assert status in ("warn", "alert") and value >= limits.warn_psi, rose[-1].string

    # The closing line: the same run, in one line a script can check.
    end = DONE.fullmatch(final)
    assert end, f"not the closing line: {final!r}"
    assert int(end["requests"]) > 0 and int(end["errors"]) == 0, final
    assert int(end["requests"]) >= int(lines[-1]["rate"]), final  # a second's worth at least
    assert end["shift"] == "100", final
    # The traffic was all shifted by 4 s: with the window the demo picks for 8 s, the drift
    # phase shows by the end, up to alert.
    assert end["status"] == "alert" and end["highest"] == "alert", final
    alerted = int(end["alerted"])
    named = end["names"].removesuffix("...").split(", ")
    assert alerted >= 1 and len(named) == min(alerted, 5), final
    assert set(named) <= FEATURES, final


def test_demo_refuses_a_taken_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        done = _demo("--duration", "2", "--port", str(s.getsockname()[1]))
    assert done.returncode == 1
    assert "already in use" in done.stdout + done.stderr
