"""Serving metrics: per model version, request/queue/compute histograms, status and
rejection counts and queue depth, exported by one Prometheus collector.

Every observation happens on the event-loop thread (request ends and batch results
are both handled there), so a model version keeps plain Python counters and bucket
lists where prometheus_client's locked children cost ~1.7 us an update; a collector
turns them into Prometheus families at scrape time (also on the loop). The common case,
a request answered 200 or a batch that ran, is not even counted when it happens: its
numbers are appended to a list, and the list is folded into the counters (bucketed by
numpy, in one pass) when it reaches FOLD_AT entries or when anything reads them. An
append is the one thing a request pays; at concurrency 1, where every request runs its
own batch with the caches cold, the counting it replaces cost several microseconds.

    registry = CollectorRegistry()
    metrics = ServingMetrics(registry)
    m = metrics.for_model("iris", "1")
    m.observe_request(0.0004, 200)
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from .drift import DriftCollector
from .triton import Duration, TritonStats, statistics

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


class PlainHistogram:
    """A Prometheus-style histogram as plain numbers (updated on one thread only)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        # Bucket i counts values <= bounds[i]: the first bound >= value.
        self.counts[bisect_left(self.bounds, value)] += times
        self.total += value * times

    def observe_many(self, values: Sequence[float]) -> None:
        """observe(v) for each of `values`, at once (the same buckets and the same total)."""
        at = np.searchsorted(np.asarray(self.bounds, dtype=np.float64), np.asarray(values), side="left")
        for i, n in enumerate(np.bincount(at, minlength=len(self.counts)).tolist()):
            self.counts[i] += n
        # Added to the total in order, as observe() would have (a loop in C, not in Python).
        self.total = sum(values, self.total)

    def add(self, counts: Sequence[int], total: float) -> None:
        """Many observations at once, already bucketed (one count per bucket, +Inf last)."""
        for i, n in enumerate(counts):
            self.counts[i] += int(n)
        self.total += total

    def family_sample(self) -> tuple[list[tuple[str, float]], float]:
        buckets, running = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        return buckets, self.total


# Families read from objects' attributes: {attribute: (metric name, help)}.
_MODEL_HISTOGRAMS = {
    "request": ("mlrt_request_duration_seconds", "Infer request time, arrival to response"),
    "queue": ("mlrt_queue_duration_seconds", "Time a request waited in the batch queue"),
    "compute": ("mlrt_compute_duration_seconds", "Model execution time per batch"),
    "batch": ("mlrt_batch_size", "Rows per model execution"),
}
_SHADOW_COUNTS = {
    "sent": ("mlrt_shadow_requests", "Request copies sent to a shadow model"),
    "dropped": ("mlrt_shadow_dropped", "Request copies not sent: the shadow's queue was full"),
    "failed": ("mlrt_shadow_failed", "Request copies the shadow model failed or refused"),
    "compared": ("mlrt_shadow_compared", "Rows whose class the shadow and the primary both gave"),
    "agreed": ("mlrt_shadow_agreed", "Compared rows where the shadow gave the primary's class"),
}
_LOG_COUNTS = {
    "written": ("mlrt_prediction_log_rows", "Rows written to the prediction log"),
    "dropped": ("mlrt_prediction_log_dropped", "Rows not logged: the log writer was too far behind"),
    "lost": ("mlrt_prediction_log_lost", "Rows the log writer failed to write"),
    "files": ("mlrt_prediction_log_files", "Prediction log files closed (Parquet)"),
}


# Per model version figures read from their owner when scraped: {for_model's keyword:
# (family type, metric name, help)}.
_READ_AT_SCRAPE = {
    "queue_depth": (GaugeMetricFamily, "mlrt_queue_depth", "Rows waiting in the model's batch queue"),
    "stuck_calls": (
        GaugeMetricFamily,
        "mlrt_stuck_calls",
        "Model calls still running after every request in their batch was answered at its deadline",
    ),
    "observe_failures": (
        CounterMetricFamily,
        "mlrt_drift_observe_failures",
        "Batches the drift monitor failed to count: answered, but missing from the drift window",
    ),
}


def _families(make: Any, labels: list[str], spec: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """One metric family per attribute of a table above, made fresh for a scrape."""
    return {attr: make(name, doc, labels=labels) for attr, (name, doc) in spec.items()}


#: Pending observations folded at once (see the module's doc): bounds their memory.
FOLD_AT = 1024


class _Folded:
    """A ModelMetrics figure read after its pending observations are counted: `request`
    reads `_request` once `fold()` has run."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.private = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        obj.fold()
        return getattr(obj, self.private)


class ModelMetrics:
    """One model version's serving metrics and Triton statistics.

    `request`, `queue`, `compute`, `batch`, `codes` and `stats` are read through
    properties that fold the pending observations first, so a reader always sees every
    request answered so far."""

    def __init__(self, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self._request = PlainHistogram(LATENCY_BUCKETS)
        self._queue = PlainHistogram(LATENCY_BUCKETS)
        self._compute = PlainHistogram(LATENCY_BUCKETS)
        self._batch = PlainHistogram(BATCH_BUCKETS)
        self._codes: dict[int, int] = {}
        self.reasons: dict[str, int] = {}
        self._stats = TritonStats()
        # Not yet counted: durations of requests answered 200; (rows, compute seconds) of
        # batches that ran, and their requests' queue waits.
        self._ok: list[float] = []
        self._ran: list[tuple[int, float]] = []
        self._waits: list[float] = []
        self._last_ran = 0.0  # time.time() of the latest batch that ran

    # What readers see, pending observations counted first.
    request = _Folded()
    queue = _Folded()
    compute = _Folded()
    batch = _Folded()
    codes = _Folded()
    stats = _Folded()

    def fold(self) -> None:
        """Count the pending observations."""
        ok, ran, waits = self._ok, self._ran, self._waits
        if ok:
            self._ok = []
            self._request.observe_many(ok)
            self._codes[200] = self._codes.get(200, 0) + len(ok)
            self._stats.success.add_many(ok)
        if waits:
            self._waits = []
            self._queue.observe_many(waits)
            self._stats.queue.add_many(waits)
        if ran:
            self._ran = []
            s = self._stats
            rows = [r for r, _ in ran]
            seconds = [c for _, c in ran]
            self._compute.observe_many(seconds)
            self._batch.observe_many(rows)
            s.compute_infer.add_many(seconds)
            s.inference_count += sum(rows)
            s.execution_count += len(ran)
            s.last_inference_ms = int(self._last_ran * 1000)
            batches = s.batches
            for n, c in ran:
                d = batches.get(n)
                if d is None:
                    d = batches[n] = Duration()
                d.add(c)

    def observe_request(self, seconds: float, code: int) -> None:
        if code == 200:
            ok = self._ok
            ok.append(seconds)
            if len(ok) >= FOLD_AT:
                self.fold()
            return
        self._request.observe(seconds)
        self._codes[code] = self._codes.get(code, 0) + 1
        self._stats.fail.add(seconds)

    def reject(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def observe_batch(self, rows: int, queue_s: list[float], compute_s: float, failed: bool) -> None:
        if failed:
            self._compute.observe(compute_s)
            self._batch.observe(rows)
            self._queue.observe_many(queue_s)
            self._stats.queue.add_many(queue_s)
            return
        ran = self._ran
        ran.append((rows, compute_s))
        self._waits += queue_s
        self._last_ran = time.time()
        if len(ran) >= FOLD_AT or len(self._waits) >= 64 * FOLD_AT:
            self.fold()

    def triton_stats(self) -> dict[str, Any]:
        """Triton's `GET .../stats` record of this version."""
        return statistics(self.model, self.version, self.stats)


class _ServingCollector(Collector):
    """The serving families, built from every model version's numbers at scrape time."""

    def __init__(
        self,
        models: dict[tuple[str, str], ModelMetrics],
        sources: dict[str, dict[tuple[str, str], Callable[[], int]]],
    ) -> None:
        self._models = models
        self._sources = sources

    def collect(self) -> Iterator[Any]:
        mv = ["model", "version"]
        hists = _families(HistogramMetricFamily, mv, _MODEL_HISTOGRAMS)
        requests = CounterMetricFamily("mlrt_requests", "Infer requests by HTTP status", labels=[*mv, "code"])
        rejected = CounterMetricFamily(
            "mlrt_rejected", "Requests refused without running the model", labels=[*mv, "reason"]
        )
        for (model, version), m in list(self._models.items()):
            for name, family in hists.items():
                buckets, total = getattr(m, name).family_sample()
                family.add_metric([model, version], buckets, total)
            for code, n in sorted(m.codes.items()):
                requests.add_metric([model, version, str(code)], n)
            for reason, n in sorted(m.reasons.items()):
                rejected.add_metric([model, version, reason], n)
        read_now = []
        for source, (make, name, doc) in _READ_AT_SCRAPE.items():
            family = make(name, doc, labels=mv)
            for (model, version), read in list(self._sources[source].items()):
                family.add_metric([model, version], read())
            read_now.append(family)
        yield from (*hists.values(), requests, rejected, *read_now)


class ServingMetrics:
    """The serving metrics of one server, registered in the registry it is given."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.reloads = Counter(
            "mlrt_model_reloads",
            "Model (re)loads by outcome: swapped, failed",
            ["model", "result"],
            registry=r,
        )
        # Per _READ_AT_SCRAPE family, per model version: what reads its figure.
        self._sources: dict[str, dict[tuple[str, str], Callable[[], int]]] = {k: {} for k in _READ_AT_SCRAPE}
        self._models: dict[tuple[str, str], ModelMetrics] = {}
        r.register(_ServingCollector(self._models, self._sources))

    def watch_drift(self, monitors: Callable[[], list[Any]]) -> None:
        """Export the drift figures of the monitors `monitors()` returns at each scrape."""
        self.registry.register(DriftCollector(monitors))

    def watch_endpoints(self, endpoints: Callable[[], list[Any]]) -> None:
        """Export the requests routed through each endpoint's variants (runtime/traffic)."""
        self.registry.register(_EndpointCollector(endpoints))

    def for_model(
        self,
        model: str,
        version: str,
        queue_depth: Callable[[], int] | None = None,
        stuck_calls: Callable[[], int] | None = None,
        observe_failures: Callable[[], int] | None = None,
    ) -> ModelMetrics:
        key = (model, version)
        if key not in self._models:
            self._models[key] = ModelMetrics(model, version)
        given = {"queue_depth": queue_depth, "stuck_calls": stuck_calls, "observe_failures": observe_failures}
        for source, read in given.items():
            if read is not None:
                self._sources[source][key] = read
        return self._models[key]

    def forget(self, model: str, version: str) -> None:
        """Stop reporting a version's queue depth, stuck calls and drift observation
        failures (after it is unloaded)."""
        for sources in self._sources.values():
            sources.pop((model, version), None)

    def models(self) -> list[ModelMetrics]:
        return list(self._models.values())


class _EndpointCollector(Collector):
    """mlrt_endpoint_requests_total{endpoint,variant} and the shadows' mlrt_shadow_*
    families: the endpoints' own counts, read at scrape time (they are plain integers
    kept on the event loop's thread)."""

    def __init__(self, endpoints: Callable[[], list[Any]]) -> None:
        self._endpoints = endpoints

    def collect(self) -> Iterator[Any]:
        family = CounterMetricFamily(
            "mlrt_endpoint_requests",
            "Requests routed through an endpoint, by the variant (model) chosen",
            labels=["endpoint", "variant"],
        )
        labels = ["endpoint", "shadow"]
        counts = _families(CounterMetricFamily, labels, _SHADOW_COUNTS)
        diff = HistogramMetricFamily(
            "mlrt_shadow_abs_diff", "|shadow - primary| of every score both models output", labels=labels
        )
        duration = HistogramMetricFamily(
            "mlrt_shadow_duration_seconds", "From a copy sent to the shadow's answer", labels=labels
        )
        log_counts = _families(CounterMetricFamily, ["endpoint"], _LOG_COUNTS)
        labelled = CounterMetricFamily(
            "mlrt_feedback_labels", "Rows labelled by ground-truth feedback", labels=["endpoint", "variant"]
        )
        refused = CounterMetricFamily(
            "mlrt_feedback_refused",
            "Feedback items refused (unknown or repeated id, bad label)",
            labels=["endpoint"],
        )
        reused = CounterMetricFamily(
            "mlrt_feedback_reused_ids",
            "Answers under a request id answered before: neither can be labelled",
            labels=["endpoint"],
        )
        quality = GaugeMetricFamily(
            "mlrt_quality",
            "A variant's quality over its most recent labelled rows (the feedback window)",
            labels=["endpoint", "variant", "metric"],
        )
        rollbacks = CounterMetricFamily(
            "mlrt_endpoint_rollbacks",
            "Automatic rollbacks of a canary variant (its weight set to 0)",
            labels=["endpoint", "variant"],
        )
        for e in self._endpoints():
            for r in e.rollbacks:
                rollbacks.add_metric([e.name, r.model], r.count)
            if e.log is not None:
                for attr, fam in log_counts.items():
                    fam.add_metric([e.name], getattr(e.log, attr))
            if e.feedback is not None:
                refused.add_metric([e.name], e.feedback.refused)
                reused.add_metric([e.name], e.feedback.reused)
                for model, q in e.feedback.summary().items():
                    labelled.add_metric([e.name, model], q["labelled"])
                    for metric in ("accuracy", "log_loss", "auc", "mae", "rmse"):
                        if q.get(metric) is not None:
                            quality.add_metric([e.name, model, metric], q[metric])
            for v in () if e.own else e.variants:
                family.add_metric([e.name, v.model], v.requests)
            for sh in e.shadows:
                key = [e.name, sh.model]
                for attr, fam in counts.items():
                    fam.add_metric(key, getattr(sh, attr))
                diff.add_metric(key, *sh.abs_diff.family_sample())
                duration.add_metric(key, *sh.duration.family_sample())
        yield family
        yield from counts.values()
        yield diff
        yield duration
        yield from log_counts.values()
        yield labelled
        yield refused
        yield reused
        yield quality
        yield rollbacks
