"""In-process Python models the integration server loads as `name=tests.integration.pymodels:obj`."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

_IRIS = load_iris()

# scikit-learn style: served with input `input` FP64 [-1, 4] and outputs `predict`,
# `predict_proba`, learned from the object itself.
iris = LogisticRegression(max_iter=1000).fit(_IRIS.data, _IRIS.target)


def picky(x: np.ndarray) -> np.ndarray:
    """Doubles its input, and fails (as a model's own bug would) on negative values."""
    if (x < 0).any():
        raise ValueError("picky model refuses negative values")
    return x * 2


picky.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
picky.outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]
