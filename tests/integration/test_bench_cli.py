"""`mlrt bench` end to end, in a subprocess: against a stub V2 server (asyncio, in a thread
of this process) that delays, stalls or fails on purpose, and against a real mlrt server.

The only timings asserted are the ones the stub injects, with generous margins.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.integration.scripted_http import LoopbackServer
from tests.integration.serving import REPO_ROOT, Server

pytestmark = pytest.mark.integration

METADATA = {
    "name": "stub",
    "versions": ["1"],
    "platform": "stub",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}],
}
ANSWER = b'{"model_name":"stub","outputs":[{"name":"y","datatype":"FP32","shape":[1,1],"data":[0.5]}]}'


class Stub(LoopbackServer):
    """A V2 server that answers every infer after `delay_s`; with `stall_after_s`, the
    requests arriving in [t, t + stall_s) (t: the first infer after `stall_after_s`
    seconds, counted from the first infer) all wait until t + stall_s, once; with
    `fail_every` = k, every k-th infer gets 503."""

    def __init__(
        self,
        delay_s: float = 0.0,
        stall_after_s: float | None = None,
        stall_s: float = 1.0,
        fail_every: int = 0,
    ) -> None:
        super().__init__()
        self.delay_s, self.stall_after_s, self.stall_s, self.fail_every = (
            delay_s,
            stall_after_s,
            stall_s,
            fail_every,
        )
        self.first: float | None = None
        self.stall_until = 0.0
        self.stalled = False
        self.infers = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ")
                length = 0
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "content-length":
                        length = int(v)
                if length:
                    await reader.readexactly(length)
                status, body = 200, b""
                if method == "GET" and path == "/v2/models/stub":
                    body = json.dumps(METADATA).encode()
                elif method == "POST" and path == "/v2/models/stub/infer":
                    status, body = await self._infer()
                elif method == "GET" and path.startswith("/v2/health"):
                    pass
                else:
                    status, body = 404, b'{"error":"not found"}'
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _infer(self) -> tuple[int, bytes]:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.infers += 1
        n = self.infers
        if self.stall_after_s is not None and not self.stalled and now - self.first >= self.stall_after_s:
            self.stalled = True
            self.stall_until = now + self.stall_s
        if now < self.stall_until:
            await asyncio.sleep(self.stall_until - now)
        elif self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_every and n % self.fail_every == 0:
            return 503, b'{"error":"overloaded"}'
        return 200, ANSWER


def bench(*args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "bench", *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        env=env,
    )
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def bench_json(*args: str) -> dict:
    doc = json.loads(bench(*args, "--json").stdout)
    return doc


@pytest.fixture
def stub() -> Iterator[Stub]:
    with Stub() as s:
        yield s


# -- against the stub -----------------------------------------------------------------------


def test_closed_loop_latency_matches_injected_delay() -> None:
    with Stub(delay_s=0.02) as s:
        doc = bench_json(
            s.url, "--model", "stub", "--concurrency", "4", "--duration", "1.5", "--warmup", "0.3"
        )
    r = doc["result"]
    lat = r["latency_ms"]
    assert 19.0 <= lat["p50"] <= 50.0, lat
    assert lat["min"] >= 19.0, lat
    assert r["errors"] == {}
    # Four connections each waiting 20 ms: at most 200 req/s.
    assert 0 < r["ok_rps"] <= 4 / 0.02 * 1.05


def test_open_loop_latency_matches_injected_delay() -> None:
    with Stub(delay_s=0.02) as s:
        doc = bench_json(s.url, "--model", "stub", "--rate", "100", "--duration", "2", "--warmup", "0.3")
    r = doc["result"]
    assert r["mode"] == "open" and r["offered_rps"] == 100
    assert 19.0 <= r["latency_ms"]["p50"] <= 50.0, r["latency_ms"]
    # The schedule is fixed in advance: 100/s for 2 s, whatever the server does.
    assert r["requests"] == pytest.approx(200, abs=3)
    # At 100/s with 20 ms answers about two requests are in flight: no pile-up.
    assert r["delayed_sends"] == 0


def test_open_loop_shows_the_stall_that_closed_loop_hides() -> None:
    """A server that stalls once for 1 s. Open loop: every request due during the stall waits
    for its end, so about a third of a 3 s run is slow and p99 is near 1 s. Closed loop with
    one connection: only the one request in flight waits; p99 stays small, only max shows it."""
    with Stub(stall_after_s=1.0, stall_s=1.0) as s:
        opened = bench_json(s.url, "--model", "stub", "--rate", "200", "--duration", "3", "--warmup", "0.3")[
            "result"
        ]
    with Stub(stall_after_s=1.0, stall_s=1.0) as s:
        closed = bench_json(
            s.url, "--model", "stub", "--concurrency", "1", "--duration", "3", "--warmup", "0.3"
        )["result"]
    assert opened["errors"] == {} and closed["errors"] == {}
    # Open loop: the slowest 1% were due at the stall's start and waited nearly all of it.
    assert opened["latency_ms"]["p99"] >= 800, opened["latency_ms"]
    # About 1/3 of the requests were due during the stall, 1/4 in its first 750 ms: p90 >= 250 ms.
    assert opened["latency_ms"]["p90"] >= 250, opened["latency_ms"]
    # The generator kept the schedule by opening more connections (the initial 8 were stuck).
    assert opened["connections"] > 8 and opened["delayed_sends"] > 0
    assert opened["requests"] == pytest.approx(600, abs=5)
    # Closed loop: the stall is one sample among thousands.
    assert closed["latency_ms"]["max"] >= 800, closed["latency_ms"]
    assert closed["latency_ms"]["p99"] < 250, closed["latency_ms"]


def test_error_statuses_are_counted() -> None:
    with Stub(fail_every=4) as s:
        r = bench_json(s.url, "--model", "stub", "--concurrency", "2", "--duration", "1", "--warmup", "0.2")[
            "result"
        ]
        infers = s.infers
    assert set(r["errors"]) == {"503"}
    assert r["statuses"]["503"] == r["errors"]["503"] == r["error_count"]
    assert r["requests"] == r["ok"] + r["error_count"]
    assert r["requests"] <= infers
    assert r["error_count"] / r["requests"] == pytest.approx(0.25, abs=0.02)


def test_json_output_schema(stub: Stub) -> None:
    doc = bench_json(stub.url, "--model", "stub", "--concurrency", "2", "--duration", "0.5", "--warmup", "0")
    assert doc["schema"] == "mlrt.bench/1"
    assert {
        "mlrt_version",
        "target",
        "model",
        "encoding",
        "batch_size",
        "data",
        "mode",
        "result",
        "sweep",
    } <= set(doc)
    assert (doc["model"], doc["mode"], doc["encoding"], doc["data"], doc["sweep"]) == (
        "stub",
        "closed",
        "json",
        "random",
        None,
    )
    r = doc["result"]
    for key in ("duration_s", "throughput_rps", "ok_rps", "rows_per_s"):
        assert isinstance(r[key], float | int) and r[key] >= 0, key
    for key in ("requests", "ok", "error_count", "connections"):
        assert isinstance(r[key], int), key
    assert set(r["latency_ms"]) == {"p50", "p90", "p99", "p99.9", "max", "min", "mean"}
    lat = r["latency_ms"]
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    curve = r["percentile_curve_ms"]
    assert curve[0][0] == 0.0 and all(
        a[0] < b[0] and a[1] <= b[1] for a, b in zip(curve[:-1], curve[1:], strict=True)
    )
    assert r["concurrency"] == 2 and r["processes"] == 1


def test_sweep_against_stub_finds_a_rate_and_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "sweep.png"
    # 20 ms answers meet a 100 ms p99 target at any rate these steps reach.
    with Stub(delay_s=0.02) as s:
        doc = bench_json(
            s.url,
            "--model",
            "stub",
            "--sweep",
            "--rate",
            "50",
            "--sweep-steps",
            "2",
            "--slo-ms",
            "100",
            "--duration",
            "0.6",
            "--warmup",
            "0.1",
            "--plot",
            str(png),
        )
    sw = doc["sweep"]
    assert doc["mode"] == "sweep" and doc["result"] is None
    assert sw["sustainable_rps"] == 100 and [st["offered_rps"] for st in sw["steps"]] == [50, 100]
    assert all(st["passed"] for st in sw["steps"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_output_and_bad_target(stub: Stub) -> None:
    out = bench(
        stub.url, "--model", "stub", "--concurrency", "1", "--duration", "0.3", "--warmup", "0"
    ).stdout
    assert "latency p99" in out and "throughput" in out
    bad = bench(stub.url, "--model", "nope", "--duration", "0.3", check=False)
    assert bad.returncode == 1 and "404" in bad.stderr
    missing = bench("no/such/model.onnx", check=False)
    assert missing.returncode == 1 and "neither" in missing.stderr


# -- against a real mlrt server -------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "binary", "msgpack"])
def test_real_server_encodings(server: Server, encoding: str) -> None:
    doc = bench_json(
        server.url,
        "--model",
        "mlp",
        "--encoding",
        encoding,
        "--batch-size",
        "3",
        "--concurrency",
        "2",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
    )
    r = doc["result"]
    assert r["errors"] == {} and r["ok"] > 0
    assert r["rows_per_s"] == pytest.approx(3 * r["ok_rps"], rel=0.01)


def test_real_server_open_loop_with_two_processes(server: Server) -> None:
    doc = bench_json(
        server.url,
        "--model",
        "mlp",
        "--rate",
        "200",
        "--processes",
        "2",
        "--duration",
        "1",
        "--warmup",
        "0.2",
    )
    r = doc["result"]
    assert r["processes"] == 2 and r["errors"] == {}
    # The two processes split one schedule of 200/s: together 200 requests in the window.
    assert r["requests"] == pytest.approx(200, abs=4)


def test_real_server_rows_from_a_data_file(server: Server, tmp_path: Path) -> None:
    data = tmp_path / "rows.npy"
    np.save(data, np.random.default_rng(0).standard_normal((10, 20)).astype(np.float32))
    doc = bench_json(
        server.url,
        "--model",
        "mlp",
        "--data",
        str(data),
        "--batch-size",
        "5",
        "--concurrency",
        "1",
        "--duration",
        "0.3",
        "--warmup",
        "0",
    )
    assert doc["data"] == str(data) and doc["result"]["errors"] == {}


def test_model_file_target_starts_and_stops_a_server(model_dir: Path) -> None:
    doc = bench_json(str(model_dir / "mlp.onnx"), "--concurrency", "1", "--duration", "0.3", "--warmup", "0")
    assert doc["model"] == "mlp" and doc["result"]["ok"] > 0
    assert doc["target"].startswith("http://127.0.0.1:")
