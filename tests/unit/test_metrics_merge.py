"""Merging the metric families of a server's workers (runtime/metrics/merge.py): what each
kind of sample becomes, checked on real prometheus_client families and exposition."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from runtime.metrics.merge import Families, merge, to_wire


def _worker(requests: dict[str, int], buckets: list[float], stall: float, queued: int, created: float):  # type: ignore[no-untyped-def]
    reg = CollectorRegistry()
    c = CounterMetricFamily("mlrt_requests", "requests", labels=["code"])
    for code, n in requests.items():
        c.add_metric([code], n)
    h = HistogramMetricFamily("mlrt_request_duration_seconds", "time", labels=["model"])
    cum = [sum(buckets[: i + 1]) for i in range(len(buckets))]
    h.add_metric(["m"], [("0.001", cum[0]), ("0.01", cum[1]), ("+Inf", cum[2])], sum_value=sum(buckets) / 100)
    reloads = Counter("mlrt_model_reloads", "reloads", ["model"], registry=reg)
    reloads.labels("m").inc()
    reloads.labels("m")._created = created  # the earliest worker's start is the server's
    Gauge("mlrt_event_loop_stall_seconds", "worst lag", registry=reg).set(stall)
    Gauge("mlrt_queue_depth", "queued", registry=reg).set(queued)
    fams = [c, h, *reg.collect()]
    return to_wire(fams)


def test_counters_and_histograms_add_gauges_add_or_take_the_worst() -> None:
    a = _worker({"200": 30, "503": 1}, [10, 5, 1], stall=0.002, queued=3, created=100.0)
    b = _worker({"200": 12}, [4, 0, 2], stall=0.150, queued=4, created=90.0)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Families(merge([a, b])))
    text = generate_latest(reg).decode()
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert got[("mlrt_requests_total", (("code", "200"),))] == 42
    assert got[("mlrt_requests_total", (("code", "503"),))] == 1
    buckets = {
        s.labels["le"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "mlrt_request_duration_seconds_bucket"
    }
    assert buckets == {"0.001": 14, "0.01": 19, "+Inf": 22}
    assert got[("mlrt_request_duration_seconds_count", (("model", "m"),))] == 22
    assert got[("mlrt_model_reloads_total", (("model", "m"),))] == 2
    assert got[("mlrt_model_reloads_created", (("model", "m"),))] == 90.0
    assert got[("mlrt_event_loop_stall_seconds", ())] == 0.150
    assert got[("mlrt_queue_depth", ())] == 7


def test_a_family_only_one_worker_has_is_kept_whole() -> None:
    a = to_wire([CounterMetricFamily("mlrt_only_here", "x", value=5)])
    merged = merge([a, []])
    assert [(s.name, s.value) for s in merged[0].samples] == [("mlrt_only_here_total", 5)]
