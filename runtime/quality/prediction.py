"""What a model's prediction is, among its outputs: one rule for everything that judges
predictions against the truth (ground-truth feedback, the CI gate).

The first rule that applies (`label_output`, `score_output` and `value_output` override):
- a classifier has an integer, boolean or string output with one value per row (its
  label), and/or a float output with two or more columns per row (its class scores);
  without a label output, the predicted class is the scores' argmax;
- a regressor (kind "regressor", or a model with neither) predicts its first float output
  with one value per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["KINDS", "PredictionSpec", "prediction_spec"]

KINDS = ("classifier", "regressor")


@dataclass(frozen=True, slots=True)
class PredictionSpec:
    """Which outputs of a model carry its prediction."""

    kind: str
    label: str | None = None
    scores: str | None = None
    value: str | None = None


def _one_per_row(a: np.ndarray) -> bool:
    return a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1)


def prediction_spec(
    outputs: Mapping[str, np.ndarray],
    kind: str | None = None,
    names: Mapping[str, str | None] | None = None,
) -> PredictionSpec:
    """The spec for a model whose outputs look like `outputs` (ValueError if none fits).
    `names` may hold label_output, score_output and value_output."""
    names = {"label_output": None, "score_output": None, "value_output": None, **(names or {})}
    for role, name in names.items():
        if name is not None and name not in outputs:
            raise ValueError(f"{role} = {name!r}: the model has no such output; it has {sorted(outputs)}")
    label = names["label_output"]
    if label is None:
        label = next((n for n, a in outputs.items() if a.dtype.kind in "iubOSU" and _one_per_row(a)), None)
    scores = names["score_output"]
    if scores is None:
        scores = next(
            (n for n, a in outputs.items() if a.dtype.kind == "f" and a.ndim == 2 and a.shape[1] >= 2), None
        )
    if kind is None:
        kind = "classifier" if label is not None or scores is not None else "regressor"
    if kind == "classifier":
        if label is None and scores is None:
            raise ValueError(f"no output looks like a class label or class scores among {sorted(outputs)}")
        return PredictionSpec(kind, label=label, scores=scores)
    value = names["value_output"]
    if value is None:
        value = next((n for n, a in outputs.items() if a.dtype.kind == "f" and _one_per_row(a)), None)
    if value is None:
        raise ValueError(f"no float output with one value per row among {sorted(outputs)}")
    return PredictionSpec("regressor", value=value)
