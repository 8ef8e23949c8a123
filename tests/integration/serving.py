"""Running `mlrt serve` as a subprocess on 127.0.0.1 for the integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
PYMODELS = "tests.integration.pymodels"


@dataclass
class Server:
    host_port: str  # "127.0.0.1:PORT", as tritonclient wants it
    process: subprocess.Popen[bytes]
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    models: Sequence[str], workdir: Path, args: Sequence[str] = (), env: dict[str, str] | None = None
) -> Server:
    """Start `python -m runtime serve` and wait until /v2/health/ready answers 200."""
    port = free_port()
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), environ.get("PYTHONPATH")) if p)
    stderr_path = workdir / f"server-{port}.stderr"
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "runtime", "serve", *models, "--host", "127.0.0.1"]
            + ["--port", str(port), "--log-level", "warning", *args],
            cwd=REPO_ROOT,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    server = Server(f"127.0.0.1:{port}", process, stderr_path)
    try:
        wait_ready(server)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return server


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"mlrt serve exited with {server.process.returncode} before it was ready; "
                f"stderr:\n{server.stderr()}"
            )
        try:
            if httpx.get(f"{server.url}/v2/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(
        f"mlrt serve was not ready on {server.url} within {READY_TIMEOUT_S:.0f} s; stderr:\n{server.stderr()}"
    )


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `predicate` until it holds; fail the test, saying what was awaited, at `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def terminate(server: Server) -> int:
    """SIGTERM; the exit status (negative: killed by that signal)."""
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()
        pytest.fail(f"mlrt serve ignored SIGTERM; stderr:\n{server.stderr()}")


def stop_server(server: Server) -> None:
    """SIGTERM, then expect a clean exit (status 0)."""
    code = terminate(server)
    assert code == 0, f"mlrt serve exited with {code} on SIGTERM; stderr:\n{server.stderr()}"


def check_metrics(text: str) -> None:
    """`promtool check metrics` finds nothing to say about a /metrics page."""
    import shutil

    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is needed: install the Debian package `prometheus`")
    proc = subprocess.run([path, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), proc.stdout + proc.stderr
