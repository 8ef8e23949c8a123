"""In-process Python models the integration server loads as `name=tests.integration.pymodels:obj`."""

from __future__ import annotations

import time

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

_IRIS = load_iris()

# scikit-learn style: served with input `input` FP64 [-1, 4] and outputs `predict`,
# `predict_proba`, learned from the object itself.
iris = LogisticRegression(max_iter=1000).fit(_IRIS.data, _IRIS.target)


def picky(x: np.ndarray) -> np.ndarray:
    """Doubles its input, and fails (as a model's own bug would) on negative values; for a
    first value of 777 it answers text, for 888 three columns: not what it declares."""
    if (x < 0).any():
        raise ValueError("picky model refuses negative values")
    if len(x) and x[0, 0] == 777:
        return np.array(["a"] * len(x))
    if len(x) and x[0, 0] == 888:
        return np.ones((len(x), 3), np.float32)
    return x * 2


picky.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
picky.outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]


# Classifiers whose classes are names, as scikit-learn keeps them when fitted on text labels
# (tests/integration/test_feedback.py): their `predict` is BYTES, `predict_proba`'s columns
# follow `classes_`.
_SPECIES = _IRIS.target_names[_IRIS.target]
species_a = LogisticRegression(max_iter=1000).fit(_IRIS.data, _SPECIES)
species_b = DecisionTreeClassifier(max_depth=1, random_state=0).fit(_IRIS.data, _SPECIES)


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


# Variants for the prediction log and feedback (tests/integration/test_feedback.py): two
# classifiers of the breast cancer data set (binary: AUC is defined) and two regressors of
# the diabetes data set, each pair different enough that their quality differs.
_CANCER = load_breast_cancer()
cancer_a = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
cancer_a.fit(_CANCER.data, _CANCER.target)
cancer_b = DecisionTreeClassifier(max_depth=2, random_state=0).fit(_CANCER.data, _CANCER.target)
_DIABETES = load_diabetes()
diabetes_a = LinearRegression().fit(_DIABETES.data, _DIABETES.target)
diabetes_b = Ridge(alpha=1.0).fit(_DIABETES.data, _DIABETES.target)


# Canaries that must be rolled back (tests/integration/test_rollback.py): one fails every
# real call, one answers cancer_a's labels 50 ms late. Both answer the server's zero-row
# calibration at once, as a model broken only on real data would.
def cancer_broken(input: np.ndarray) -> np.ndarray:
    if np.any(input):
        raise RuntimeError("cancer_broken fails every real call")
    return np.zeros(len(input), np.int64)


def cancer_slow(input: np.ndarray) -> np.ndarray:
    if np.any(input):
        time.sleep(0.05)
    return cancer_a.predict(input)


for _f in (cancer_broken, cancer_slow):
    _f.inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, 30]}]
    _f.outputs = [{"name": "predict", "datatype": "INT64", "shape": [-1]}]


def hangs_on_nines(input: np.ndarray) -> np.ndarray:
    """`iris`'s labels at once, except for a batch holding a 9, on which it hangs for 20 s
    (a lock never released, a network call that never returns): fast at warm-up, stuck on
    one input (tests/integration/test_faults.py)."""
    if np.any(input == 9):
        time.sleep(20.0)
    return iris.predict(input)


hangs_on_nines.inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
hangs_on_nines.outputs = [{"name": "predict", "datatype": "INT64", "shape": [-1]}]


class slow_to_load:  # noqa: N801 - named as the other models here, for the command line
    """`iris` after three seconds of loading (a large artifact, a download): a server told
    to stop meanwhile must still stop (tests/integration/test_workers.py)."""

    inputs = [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    outputs = [{"name": "predict", "datatype": "INT64", "shape": [-1]}]

    def __init__(self) -> None:
        time.sleep(3.0)

    def predict(self, input: np.ndarray) -> np.ndarray:
        return iris.predict(input)


def echo32(x: np.ndarray) -> np.ndarray:
    """Its input back, in FP32: one variant of a parameter-sticky endpoint
    (tests/integration/test_traffic.py)."""
    return x


echo32.inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}]
echo32.outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 1]}]


def echo64(x: np.ndarray) -> np.ndarray:
    """Its input back, in FP64: the other variant, which must receive what was sent."""
    return x


echo64.inputs = [{"name": "x", "datatype": "FP64", "shape": [-1, 1]}]
echo64.outputs = [{"name": "y", "datatype": "FP64", "shape": [-1, 1]}]
