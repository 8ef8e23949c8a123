"""Live traffic for `mlrt demo`: real rows from the bundled data set, sent as V2
JSON by a few concurrent clients, with a rolling latency and throughput summary.

The traffic drifts: at first rows are drawn from the whole data set (as the model
was trained), then more and more only from malignant cases, a real shift in the
population the model sees (every feature that separates the classes moves).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).parent
MODEL_PATH = HERE / "model.onnx"
DATA_PATH = HERE / "data.npz"
PROFILE_PATH = HERE / "profile.json"


@dataclass
class Shift:
    """Share of rows drawn from the shifted population: 0 until `start_s`, then
    rising linearly to `full` at `end_s`."""

    start_s: float
    end_s: float
    full: float = 1.0

    def at(self, elapsed_s: float) -> float:
        if elapsed_s <= self.start_s:
            return 0.0
        if elapsed_s >= self.end_s:
            return self.full
        return self.full * (elapsed_s - self.start_s) / (self.end_s - self.start_s)


@dataclass
class Stats:
    started: float = field(default_factory=time.monotonic)
    requests: int = 0
    rows: int = 0
    errors: int = 0
    correct: int = 0
    latencies_s: list[float] = field(default_factory=list)  # since the last snapshot
    shift: float = 0.0

    def snapshot(self) -> dict[str, float]:
        lat = np.array(self.latencies_s) * 1e3 if self.latencies_s else np.zeros(1)
        self.latencies_s = []
        elapsed = time.monotonic() - self.started
        return {
            "elapsed_s": elapsed,
            "requests": self.requests,
            "req_per_s": self.requests / elapsed if elapsed else 0.0,
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "errors": self.errors,
            "accuracy": self.correct / self.rows if self.rows else 0.0,
            "shift": self.shift,
        }


def load_data() -> tuple[np.ndarray, np.ndarray]:
    with np.load(DATA_PATH) as d:
        return d["features"], d["labels"]


async def _client(
    url: str,
    X: np.ndarray,
    y: np.ndarray,
    stats: Stats,
    stop: asyncio.Event,
    seed: int,
    shift: Shift,
) -> None:
    rng = np.random.default_rng(seed)
    shifted = np.flatnonzero(y == 0)  # malignant cases
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        while not stop.is_set():
            n = int(rng.integers(1, 5))
            share = shift.at(time.monotonic() - stats.started)
            stats.shift = share
            from_shifted = rng.random(n) < share
            rows = np.where(from_shifted, rng.choice(shifted, n), rng.integers(0, len(X), n))
            body = {
                "inputs": [
                    {
                        "name": "features",
                        "shape": [n, X.shape[1]],
                        "datatype": "FP32",
                        "data": X[rows].ravel().tolist(),
                    }
                ],
                "outputs": [{"name": "label"}],
            }
            t0 = time.perf_counter()
            try:
                r = await client.post("/v2/models/demo/infer", json=body)
            except httpx.HTTPError:
                stats.errors += 1
                await asyncio.sleep(0.1)
                continue
            stats.latencies_s.append(time.perf_counter() - t0)
            stats.requests += 1
            if r.status_code != 200:
                stats.errors += 1
                continue
            labels = np.array(r.json()["outputs"][0]["data"])
            stats.rows += n
            stats.correct += int((labels == y[rows]).sum())


async def drive(
    url: str,
    *,
    duration_s: float | None,
    concurrency: int,
    report: Callable[[dict[str, float]], Any],
    shift: Shift,
    interval_s: float = 1.0,
) -> dict[str, float]:
    """Send traffic until `duration_s` passes (or forever); report every interval
    (`report` may be a coroutine function)."""
    X, y = load_data()
    stats = Stats()
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(_client(url, X, y, stats, stop, i, shift)) for i in range(concurrency)
    ]
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        while deadline is None or time.monotonic() < deadline:
            wait = interval_s if deadline is None else min(interval_s, deadline - time.monotonic())
            await asyncio.sleep(max(0.0, wait))
            out = report(stats.snapshot())
            if asyncio.iscoroutine(out):
                await out
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return stats.snapshot()
