"""Offline batch scoring: a model over files on one machine (`mlrt predict`,
`predict_files`), and over Spark or Dask DataFrames (runtime.offline.spark, .dask).
docs/offline.md walks through it."""

from __future__ import annotations

from .files import PredictSummary, predict_files
from .scoring import BatchScorer, ScorerSpec, ScoringOptions

__all__ = ["BatchScorer", "PredictSummary", "ScorerSpec", "ScoringOptions", "predict_files"]
