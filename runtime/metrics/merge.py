"""The metric families of several worker processes of one server, merged into the server's.

Each worker of `mlrt serve --workers N` keeps its own counters (runtime/metrics/serving.py:
plain numbers on its event loop). A scrape of any worker asks the others for their families
(runtime/server/peers.py) and merges them here, so /metrics describes the whole server:

- counters, histograms and summaries are added sample by sample (same name, same labels);
  the whole server's requests are the sum of its workers' requests, exactly;
- a `_created` sample is the earliest of the workers';
- gauges are added (queued rows, open connections, stuck calls are the server's totals),
  except those in `GAUGE_MAX`, where the worst worker is the server's figure.

Drift families are not merged here: PSI is not a sum of PSIs. The workers' bin counts are
summed and judged again (runtime/monitor/fleet.py, `SummedMonitor`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

#: Gauges where the server's figure is its worst worker's, not the sum.
GAUGE_MAX = frozenset({"mlrt_event_loop_stall_seconds"})

#: A family as it travels between workers: name, help, type, unit, [(sample, labels, value)].
Wire = tuple[str, str, str, str, list[tuple[str, dict[str, str], float]]]


def to_wire(families: Iterable[Metric]) -> list[Wire]:
    return [
        (
            f.name,
            f.documentation,
            f.type,
            f.unit,
            [(s.name, dict(s.labels), float(s.value)) for s in f.samples],
        )
        for f in families
    ]


def merge(workers: Sequence[Sequence[Wire]]) -> list[Metric]:
    """One family per name, its samples combined across workers (see the module's rules)."""
    out: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for families in workers:
        for name, doc, kind, unit, samples in families:
            if name not in out:
                out[name] = Metric(name, doc, kind, unit)
                values[name] = {}
            seen = values[name]
            for sample, labels, value in samples:
                key = (sample, tuple(sorted(labels.items())))
                before = seen.get(key)
                if before is None:
                    seen[key] = value
                elif sample.endswith("_created"):
                    seen[key] = min(before, value)
                elif kind == "gauge" and name in GAUGE_MAX:
                    seen[key] = max(before, value)
                else:
                    seen[key] = before + value
    for name, metric in out.items():
        for (sample, labels), value in values[name].items():
            metric.add_sample(sample, dict(labels), value)
    return list(out.values())


class Families(Collector):
    """Hands ready-made families to prometheus_client's exposition."""

    def __init__(self, families: Sequence[Any]) -> None:
        self._families = families

    def collect(self) -> Iterator[Any]:
        yield from self._families
