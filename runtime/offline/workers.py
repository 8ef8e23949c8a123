"""What the Spark and Dask jobs share on their workers: one BatchScorer per process and
thread for each ScorerSpec, kept for every partition and batch it scores, and the drift
bin counts of one partition, which the driver sums.

A partition's counts are the difference of the scorer's running totals after and before
the partition: the scorer is reused across partitions (loading a model per partition
would cost more than scoring a small one), and its totals only grow.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..config import parse_model_spec
from .scoring import BatchScorer, ScorerSpec

__all__ = [
    "DriftReports",
    "add_counts",
    "counts_from_bytes",
    "counts_since",
    "counts_to_bytes",
    "names_schema",
    "pinned",
    "scorer_for",
    "scorers_built",
]

#: Scorers kept per process. A long-lived worker (Dask's, Spark's reused Python workers)
#: that scores many models drops the least recently used; one that is needed again is
#: loaded again, which costs time, never correctness.
_KEEP = 16
_scorers: OrderedDict[tuple[ScorerSpec, int], BatchScorer] = OrderedDict()
_lock = threading.Lock()
_built: Counter[ScorerSpec] = Counter()


def scorer_for(spec: ScorerSpec) -> BatchScorer:
    """This thread's scorer for `spec`, built on first use.

    One per thread, not one per process: a Dask worker runs tasks on several threads at
    once, and a scorer's running drift totals may only be read around a partition that
    no other thread is adding to (`counts_since`). A Spark Python worker runs one task at
    a time, so there it is one per process."""
    key = (spec, threading.get_ident())
    with _lock:
        scorer = _scorers.get(key)
        if scorer is not None:
            _scorers.move_to_end(key)
            return scorer
    scorer = spec.build()  # outside the lock: other threads' keys differ, and loading takes time
    with _lock:
        _scorers[key] = scorer
        _built[spec] += 1
        while len(_scorers) > _KEEP:
            _scorers.popitem(last=False)
    return scorer


def scorers_built(spec: ScorerSpec) -> int:
    """How many scorers for `spec` this process has built (the tests check that a model is
    loaded once per worker, not per partition or batch)."""
    return _built[spec]


def names_schema(names: Iterable[str]) -> Any:
    """An Arrow schema of a DataFrame's column names, every type null: all that
    BatchScorer.check needs to choose the columns (the types that matter, the passthrough
    columns', are the DataFrame's own, which the jobs keep)."""
    import pyarrow as pa

    return pa.schema([pa.field(n, pa.null()) for n in names])


def pinned(spec: ScorerSpec, scorer: BatchScorer) -> ScorerSpec:
    """The spec the workers build: a registry alias (`churn@champion`, `models:/churn@prod`)
    replaced by the version it pointed at when the driver loaded it (`churn/3`), so that a
    promotion while the job runs cannot score some partitions with another version."""
    config = parse_model_spec(spec.model)
    ref = config.registry_ref
    if ref is None or "@" not in ref:
        return spec
    return dataclasses.replace(spec, model=f"{config.name}={ref.rpartition('@')[0]}/{scorer.model.version}")


def counts_since(scorer: BatchScorer, before: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The scorer's drift counts added since `before` (its `drift_counts()` then)."""
    return {section: counts - before[section] for section, counts in scorer.drift_counts().items()}


def add_counts(parts: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The sum of several partitions' counts, section by section, in int64: exact."""
    total: dict[str, np.ndarray] = {}
    for part in parts:
        for section, counts in part.items():
            counts = np.asarray(counts, dtype=np.int64)
            total[section] = total[section] + counts if section in total else counts.copy()
    return total


# Counts cross the wire as little-endian int64 bytes: one binary column per section.
_WIRE = np.dtype("<i8")


def counts_to_bytes(counts: Mapping[str, np.ndarray]) -> dict[str, bytes]:
    return {section: np.ascontiguousarray(c, dtype=_WIRE).tobytes() for section, c in counts.items()}


def counts_from_bytes(data: Mapping[str, bytes | None]) -> dict[str, np.ndarray]:
    return {s: np.frombuffer(b, dtype=_WIRE).astype(np.int64) for s, b in data.items() if b is not None}


class DriftReports:
    """The drift report of a job's summed counts, made on the driver by the scorer that
    checked the job's schema (a scorer of its own, never one of `scorer_for`'s).

    A scorer's counts can only be added to, so the first counts reported go into it and
    the report is kept; counts that differ from those (an input that changed between two
    runs) are reported by a freshly built scorer."""

    def __init__(self, scorer: BatchScorer) -> None:
        self._scorer = scorer
        self._counts: dict[str, np.ndarray] | None = None
        self._report: dict[str, Any] | None = None

    @property
    def enabled(self) -> bool:
        """Whether there is a profile, hence counts to report."""
        return self._scorer.monitor is not None

    def report(self, counts: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        if self._counts is not None:
            if _same(counts, self._counts):
                return self._report
            self._scorer = self._scorer.spec.build()
        if counts:  # none when no row was scored: the report of zero rows
            self._scorer.add_drift_counts(counts)
        self._counts = {s: np.asarray(c, dtype=np.int64).copy() for s, c in counts.items()}
        self._report = self._scorer.drift_report()
        return self._report


def _same(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[s], b[s]) for s in a)
