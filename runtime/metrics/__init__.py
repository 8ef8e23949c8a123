"""Prometheus metrics and Triton statistics: serving (serving.py), Triton's statistics
extension (triton.py) and drift (drift.py)."""

from __future__ import annotations

from .drift import DriftCollector
from .serving import BATCH_BUCKETS, LATENCY_BUCKETS, ModelMetrics, PlainHistogram, ServingMetrics
from .triton import TritonStats

__all__ = [
    "BATCH_BUCKETS",
    "LATENCY_BUCKETS",
    "DriftCollector",
    "ModelMetrics",
    "PlainHistogram",
    "ServingMetrics",
    "TritonStats",
]
