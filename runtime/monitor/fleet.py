"""Drift of a fleet: the bin counts of many replicas, summed, judged by the server's rule.

Every replica of a model version bins with the same frozen reference edges and exports its
counts per bin (`mlrt_feature_bin_total`, `mlrt_prediction_bin_total`: runtime/metrics/drift.py).
Summed over replicas they are the counts one process would have made of all the traffic, so
`fleet_report` gives exactly the report of the union, through the same `evaluate` as
`GET .../drift` and `mlrt drift`. `mlrt drift REF.json --prometheus URL` feeds it from a
Prometheus that scrapes the replicas.

The workers of one server (`mlrt serve --workers N`) are a fleet on one host: `SummedMonitor`
sums their window counts and counts since load, and answers for the whole server as one
process's `ModelMonitor` would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..config import MonitorConfig
from .drift import FeatureDrift, bin_totals, evaluate, report_json, window_json
from .histogram import Histogram
from .profile import Profile
from .rule import worst

#: section -> (name -> {bin label -> count}); a bin label is "0".."k" or "missing", as exported.
Counts = Mapping[str, Mapping[str, Mapping[str, float]]]


def _flat(hist: Histogram, counts: Mapping[str, Mapping[str, float]], section: str) -> np.ndarray:
    out = np.zeros(int(hist.offsets[-1]), dtype=np.int64)
    for j, f in enumerate(hist.features):
        bins = counts.get(f.name)
        if bins is None:
            what = f"{section[:-1]} {f.name!r}"
            raise ValueError(f"no counts for {what}: is this the profile the replicas serve?")
        base, slots = int(hist.offsets[j]), int(hist.offsets[j + 1] - hist.offsets[j])
        for label, value in bins.items():
            i = slots - 1 if label == "missing" else int(label)
            if not 0 <= i < slots:
                raise ValueError(f"{f.name!r}: bin {label!r} is not one of the profile's {slots} slots")
            # Counters sum to whole rows; a windowed increase() is extrapolated, so round.
            out[base + i] += int(round(value))
    return out


def fleet_report(
    profile: Profile, counts: Counts, config: MonitorConfig | None = None, window: Mapping[str, Any] = ()
) -> dict[str, Any]:
    """The drift report of summed bin counts (`counts["features"]`, and `counts["outputs"]`
    when the profile has outputs and they were counted)."""
    config = config or MonitorConfig()
    sections = []
    rows = 0
    for name in ("features", "outputs"):
        feats = getattr(profile, name)
        if not feats or not counts.get(name):
            continue
        hist = Histogram(profile, section=name, eps=config.eps)
        flat = _flat(hist, counts[name], name)
        hist.merge(flat)
        if name == "features":
            rows = hist.rows
        sections.append((name, hist))
    if not sections:
        raise ValueError("no bin counts for this model: nothing was scraped, or the model is not monitored")
    return report_json(evaluate(sections, config), profile, config, {"rows": rows, **dict(window)})


#: Per section, (window counts, counts since load) of one worker: ModelMonitor.section_counts.
SectionCounts = Mapping[str, tuple[np.ndarray, np.ndarray]]


class SummedMonitor:
    """One model version's drift over the traffic of several workers: their counts summed,
    judged by the same rule, reported like `ModelMonitor` (the attributes and methods the
    drift route, the metrics and the drift ticks read)."""

    def __init__(self, monitor: Any, parts: Sequence[SectionCounts]) -> None:
        self.model = monitor.model
        self.version = monitor.version
        self.profile = monitor.profile
        self.config = monitor.config
        self._sections: list[tuple[str, Histogram]] = []
        self._totals: dict[str, np.ndarray] = {}
        for name in parts[0]:
            hist = Histogram(self.profile, section=name, eps=self.config.eps)
            hist.merge(sum(p[name][0] for p in parts))
            self._sections.append((name, hist))
            self._totals[name] = sum(p[name][1] for p in parts)
        self.workers = len(parts)

    def report(self) -> list[FeatureDrift]:
        return evaluate(self._sections, self.config)

    def status(self, report: Sequence[FeatureDrift] | None = None) -> str:
        return worst([d.status for d in (self.report() if report is None else report)])

    @property
    def window_rows(self) -> int:
        return self._sections[0][1].rows

    def bin_totals(self) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
        return bin_totals([(name, hist, self._totals[name]) for name, hist in self._sections])

    def to_json(self, report: Sequence[FeatureDrift] | None = None) -> dict[str, Any]:
        report = self.report() if report is None else report
        return window_json(self.model, self.version, self.profile, self.config, report, self.window_rows)
