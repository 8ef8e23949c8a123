"""`mlrt demo`, the README's first command: it serves, drives real traffic, shows drift,
stops on its own, and refuses a port that is taken."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

from tests.integration.serving import REPO_ROOT, free_port

pytestmark = pytest.mark.integration


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "runtime", "demo", *args], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_demo_runs_and_reports_drift() -> None:
    done = _demo("--duration", "8", "--drift-after", "2", "--port", str(free_port()))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert "serving model 'demo'" in lines[0]
    assert any("req/s" in line and "accuracy" in line for line in lines)
    assert any("PSI" in line for line in lines[:2]), "the numbers say what they are"
    final = lines[-1]
    assert final.startswith("done:") and " 0 errors" in final
    # The traffic shifted after 2 s and was all shifted by 4 s: with the window the
    # demo picks for 8 s, the drift phase shows by the end, up to alert.
    assert "traffic shift reached 100%" in final, final
    assert "drift status alert" in final, final
    alerted = int(re.search(r"features that reached alert: (\d+)", final).group(1))  # type: ignore[union-attr]
    assert alerted >= 1, final


def test_demo_refuses_a_taken_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        done = _demo("--duration", "2", "--port", str(s.getsockname()[1]))
    assert done.returncode == 1
    assert "already in use" in done.stdout + done.stderr
