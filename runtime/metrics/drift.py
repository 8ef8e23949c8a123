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
                status_family.add_metric([m, v, d.name], STATUS_CODE[d.status])
            status.add_metric([m, v], STATUS_CODE[mon.status(report)])
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

