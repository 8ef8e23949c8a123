"""In-process Python models the integration server loads as `name=tests.integration.pymodels:obj`."""

from __future__ import annotations

import time

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

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


# Shadows of `iris` (tests/integration/test_shadow.py). A one-split tree knows two classes
# of three, so it disagrees with `iris` on about a third of the rows.
iris_stump = DecisionTreeClassifier(max_depth=1, random_state=0).fit(_IRIS.data, _IRIS.target)


def sleepy(input: np.ndarray) -> np.ndarray:
    """`iris`'s labels after a second's sleep, on every call with a non-zero value (the
    server calibrates a model on zero rows, which this answers at once)."""
    if np.any(input):
        time.sleep(1.0)
    return iris.predict(input)


sleepy.inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
sleepy.outputs = [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
