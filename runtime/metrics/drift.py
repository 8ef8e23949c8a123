"""The drift families of /metrics, read from the monitors' count arrays at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..monitor.rule import STATUS_CODE


class DriftCollector(Collector):
    """Drift figures read from the monitors' count arrays at scrape time.

    `monitors` returns the ModelMonitor of every monitored model version. Bin
    counters are totals since load (they only grow, so Prometheus can rate and sum
    them across replicas); PSI, statuses and window rows describe the sliding window.
    """

    def __init__(self, monitors: Callable[[], list[Any]]) -> None:
        self._monitors = monitors

    def collect(self) -> Iterator[Any]:
        mv = ["model", "version"]
        psi = _pair(GaugeMetricFamily, "psi", "PSI of {} over the window", [])
        feature_status = _pair(
            GaugeMetricFamily, "drift_status", "Drift status of {}: 0 ok, 1 warn, 2 alert", []
        )
        status = GaugeMetricFamily(
            "mlrt_drift_status", "Model drift status: 0 ok, 1 warn, 2 alert", labels=mv
        )
        rows = GaugeMetricFamily("mlrt_window_rows", "Rows in the drift window", labels=mv)
        bins = _pair(CounterMetricFamily, "bin", "Rows per reference bin of {} since load", ["bin"])
        shares = _pair(GaugeMetricFamily, "reference_share", "Reference share of {}'s bin", ["bin"])
        for mon in self._monitors():
            m, v = mon.model, mon.version
            report = mon.report()
            for d in report:
                psi[d.section].add_metric([m, v, d.name], d.psi)
                feature_status[d.section].add_metric([m, v, d.name], STATUS_CODE[d.status])
            status.add_metric([m, v], STATUS_CODE[mon.status(report)])
            rows.add_metric([m, v], mon.window_rows)
            for section, name, counts, ref in mon.bin_totals():
                last = len(counts) - 1
                for i, (c, r) in enumerate(zip(counts.tolist(), ref.tolist(), strict=True)):
                    label = "missing" if i == last else str(i)
                    bins[section].add_metric([m, v, name, label], c)
                    shares[section].add_metric([m, v, name, label], r)
        for pair in (psi, feature_status):
            yield from pair.values()
        yield from (status, rows)
        for pair in (bins, shares):
            yield from pair.values()


def _pair(family: type, what: str, help_text: str, extra: list[str]) -> dict[str, Any]:
    """One family for input features (`mlrt_feature_<what>`, label `feature`) and its twin
    for model outputs (`mlrt_prediction_<what>`, label `output`), by section."""
    mv = ["model", "version"]
    return {
        "features": family(f"mlrt_feature_{what}", help_text.format("an input feature"),
                           labels=[*mv, "feature", *extra]),
        "outputs": family(f"mlrt_prediction_{what}", help_text.format("a model output"),
                          labels=[*mv, "output", *extra]),
    }  # fmt: skip
