"""Drift of a fleet: the bin counts of many replicas, summed, judged by the server's rule.

Every replica of a model version bins with the same frozen reference edges and exports its
counts per bin (`mlrt_feature_bin_total`, `mlrt_prediction_bin_total`: runtime/metrics/drift.py).
Summed over replicas they are the counts one process would have made of all the traffic, so
`fleet_report` gives exactly the report of the union, through the same `evaluate` as
`GET .../drift` and `mlrt drift`. `mlrt drift REF.json --prometheus URL` feeds it from a
Prometheus that scrapes the replicas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..config import MonitorConfig
from .drift import evaluate, report_json
from .histogram import Histogram
from .profile import Profile

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
