"""Serving metrics: Prometheus collectors and Triton-style cumulative statistics.

Everything a request touches is pre-bound per model version (no label lookups on
the hot path); the queue depth is read from the batchers at scrape time.

    registry = CollectorRegistry()
    metrics = ServingMetrics(registry)
    m = metrics.for_model("iris", "1")
    m.observe_request(0.0004, 200)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Latency buckets from 50 µs to 10 s: mlrt's own overhead lives at the low end.
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, n: int = 1) -> None:
        self.count += n
        self.ns += int(seconds * 1e9)

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class TritonStats:
    """The cumulative counters Triton's `GET .../stats` reports."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    inference_count: int = 0  # rows
    execution_count: int = 0  # model calls
    last_inference_ms: int = 0
    batches: dict[int, Duration] = field(default_factory=dict)


class ModelMetrics:
    """One model version's bound metric children and statistics."""

    def __init__(self, parent: ServingMetrics, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self._parent = parent
        self._request = parent.request_duration.labels(model, version)
        self._queue = parent.queue_duration.labels(model, version)
        self._compute = parent.compute_duration.labels(model, version)
        self._batch = parent.batch_size.labels(model, version)
        self._codes: dict[int, Any] = {}
        self._reasons: dict[str, Any] = {}
        self.stats = TritonStats()
        # on_batch may run on an executor thread while requests finish on the loop.
        self._lock = threading.Lock()

    def observe_request(self, seconds: float, code: int) -> None:
        self._request.observe(seconds)
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._parent.requests.labels(self.model, self.version, str(code))
        child.inc()
        with self._lock:
            (self.stats.success if code == 200 else self.stats.fail).add(seconds)

    def reject(self, reason: str) -> None:
        child = self._reasons.get(reason)
        if child is None:
            child = self._reasons[reason] = self._parent.rejected.labels(self.model, self.version, reason)
        child.inc()

    def observe_batch(self, rows: int, queue_s: list[float], compute_s: float, failed: bool) -> None:
        self._compute.observe(compute_s)
        self._batch.observe(rows)
        for q in queue_s:
            self._queue.observe(q)
        with self._lock:
            s = self.stats
            s.queue.add(sum(queue_s), len(queue_s))
            if not failed:
                s.compute_infer.add(compute_s)
                s.inference_count += rows
                s.execution_count += 1
                s.last_inference_ms = int(time.time() * 1000)
                s.batches.setdefault(rows, Duration()).add(compute_s)

    def triton_stats(self) -> dict[str, Any]:
        with self._lock:
            s = self.stats
            return {
                "name": self.model,
                "version": self.version,
                "last_inference": s.last_inference_ms,
                "inference_count": s.inference_count,
                "execution_count": s.execution_count,
                "inference_stats": {
                    "success": s.success.to_dict(),
                    "fail": s.fail.to_dict(),
                    "queue": s.queue.to_dict(),
                    "compute_input": {"count": s.success.count, "ns": 0},
                    "compute_infer": s.compute_infer.to_dict(),
                    "compute_output": {"count": s.success.count, "ns": 0},
                },
                "batch_stats": [
                    {"batch_size": n, "compute_infer": d.to_dict()} for n, d in sorted(s.batches.items())
                ],
            }


class _QueueDepth(Collector):
    def __init__(self, sources: dict[tuple[str, str], Callable[[], int]]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "mlrt_queue_depth", "Rows waiting in the model's batch queue", labels=["model", "version"]
        )
        for (model, version), read in list(self._sources.items()):
            g.add_metric([model, version], read())
        yield g


class ServingMetrics:
    """The serving metrics of one server, registered in the registry it is given."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ["model", "version"]
        r = self.registry
        self.request_duration = Histogram(
            "mlrt_request_duration_seconds",
            "Infer request time, arrival to response",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_duration = Histogram(
            "mlrt_queue_duration_seconds",
            "Time a request waited in the batch queue",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.compute_duration = Histogram(
            "mlrt_compute_duration_seconds",
            "Model execution time per batch",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "mlrt_batch_size", "Rows per model execution", labels, buckets=BATCH_BUCKETS, registry=r
        )
        self.requests = Counter(
            "mlrt_requests", "Infer requests by HTTP status", [*labels, "code"], registry=r
        )
        self.rejected = Counter(
            "mlrt_rejected", "Requests refused without running the model", [*labels, "reason"], registry=r
        )
        self.reloads = Counter(
            "mlrt_model_reloads",
            "Model (re)loads by outcome: swapped, failed",
            ["model", "result"],
            registry=r,
        )
        self._depth_sources: dict[tuple[str, str], Callable[[], int]] = {}
        r.register(_QueueDepth(self._depth_sources))
        self._models: dict[tuple[str, str], ModelMetrics] = {}

    def watch_drift(self, monitors: Callable[[], list[Any]]) -> None:
        """Export the drift figures of the monitors `monitors()` returns at each scrape."""
        self.registry.register(DriftCollector(monitors))

    def for_model(
        self, model: str, version: str, queue_depth: Callable[[], int] | None = None
    ) -> ModelMetrics:
        key = (model, version)
        if key not in self._models:
            self._models[key] = ModelMetrics(self, model, version)
        if queue_depth is not None:
            self._depth_sources[key] = queue_depth
        return self._models[key]

    def forget(self, model: str, version: str) -> None:
        """Stop reporting a version's queue depth (after it is unloaded)."""
        self._depth_sources.pop((model, version), None)

    def models(self) -> list[ModelMetrics]:
        return list(self._models.values())


class DriftCollector(Collector):
    """Drift figures read from the monitors' count arrays at scrape time.

    `monitors` returns the ModelMonitor of every monitored model version. Bin
    counters are totals since load (they only grow, so Prometheus can rate and sum
    them across replicas); PSI, statuses and window rows describe the sliding window.
    """

    def __init__(self, monitors: Callable[[], list[Any]]) -> None:
        self._monitors = monitors

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        mv = ["model", "version"]
        feature_psi = GaugeMetricFamily(
            "mlrt_feature_psi", "PSI of an input feature over the window", labels=[*mv, "feature"]
        )
        pred_psi = GaugeMetricFamily(
            "mlrt_prediction_psi", "PSI of a model output over the window", labels=[*mv, "output"]
        )
        feature_status = GaugeMetricFamily(
            "mlrt_feature_drift_status",
            "Drift status of an input feature: 0 ok, 1 warn, 2 alert",
            labels=[*mv, "feature"],
        )
        pred_status = GaugeMetricFamily(
            "mlrt_prediction_drift_status",
            "Drift status of a model output: 0 ok, 1 warn, 2 alert",
            labels=[*mv, "output"],
        )
        status = GaugeMetricFamily(
            "mlrt_drift_status", "Model drift status: 0 ok, 1 warn, 2 alert", labels=mv
        )
        rows = GaugeMetricFamily("mlrt_window_rows", "Rows in the drift window", labels=mv)
        feature_bins = CounterMetricFamily(
            "mlrt_feature_bin",
            "Rows per reference bin of an input feature since load",
            labels=[*mv, "feature", "bin"],
        )
        pred_bins = CounterMetricFamily(
            "mlrt_prediction_bin",
            "Rows per reference bin of a model output since load",
            labels=[*mv, "output", "bin"],
        )
        feature_ref = GaugeMetricFamily(
            "mlrt_feature_reference_share",
            "Reference share of an input feature's bin",
            labels=[*mv, "feature", "bin"],
        )
        pred_ref = GaugeMetricFamily(
            "mlrt_prediction_reference_share",
            "Reference share of a model output's bin",
            labels=[*mv, "output", "bin"],
        )
        for mon in self._monitors():
            m, v = mon.model, mon.version
            report = mon.report()
            for d in report:
                psi_family, status_family = (
                    (feature_psi, feature_status) if d.section == "features" else (pred_psi, pred_status)
                )
                psi_family.add_metric([m, v, d.name], d.psi)
                status_family.add_metric([m, v, d.name], STATUS_CODES[d.status])
            status.add_metric([m, v], STATUS_CODES[mon.status(report)])
            rows.add_metric([m, v], mon.window_rows)
            for section, name, counts, ref in mon.bin_totals():
                bins, shares = (feature_bins, feature_ref) if section == "features" else (pred_bins, pred_ref)
                last = len(counts) - 1
                for i, (c, r) in enumerate(zip(counts.tolist(), ref.tolist(), strict=True)):
                    label = "missing" if i == last else str(i)
                    bins.add_metric([m, v, name, label], c)
                    shares.add_metric([m, v, name, label], r)
        yield from (
            feature_psi,
            pred_psi,
            feature_status,
            pred_status,
            status,
            rows,
            feature_bins,
            pred_bins,
            feature_ref,
            pred_ref,
        )


STATUS_CODES = {"ok": 0, "warn": 1, "alert": 2}
