"""Triton's statistics extension: the cumulative counters `GET .../stats` reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float, n: int = 1) -> None:
        self.count += n
        self.ns += int(seconds * 1e9)

    def add_many(self, each: list[float]) -> None:
        """add(s) for each s of `each` (the same count and the same nanoseconds)."""
        self.count += len(each)
        # int(s * 1e9) for each, summed: the same product and the same truncation toward
        # zero in numpy, without a Python int per observation.
        self.ns += int((np.asarray(each, dtype=np.float64) * 1e9).astype(np.int64).sum())

    def to_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class TritonStats:
    """The cumulative counters Triton's `GET .../stats` reports."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    inference_count: int = 0  # rows
    execution_count: int = 0  # model calls
    last_inference_ms: int = 0
    batches: dict[int, Duration] = field(default_factory=dict)


def statistics(model: str, version: str, s: TritonStats) -> dict[str, Any]:
    """One model version's record in Triton's `model_stats` list."""
    return {
        "name": model,
        "version": version,
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": s.success.to_dict(),
            "fail": s.fail.to_dict(),
            "queue": s.queue.to_dict(),
            "compute_input": {"count": s.success.count, "ns": 0},
            "compute_infer": s.compute_infer.to_dict(),
            "compute_output": {"count": s.success.count, "ns": 0},
        },
        "batch_stats": [
            {"batch_size": n, "compute_infer": d.to_dict()} for n, d in sorted(s.batches.items())
        ],
    }
