"""Models of different quality for the gate tests, each trained on one half of a data set
that scikit-learn ships; `test_split(name)` is the other half, with its labels."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

_DATA = {"cancer": load_breast_cancer(), "diabetes": load_diabetes(), "iris": load_iris()}
_ORDER = {name: np.random.default_rng(7).permutation(len(d.target)) for name, d in _DATA.items()}


def _half(name: str, second: bool) -> tuple[np.ndarray, np.ndarray]:
    d, order = _DATA[name], _ORDER[name]
    rows = order[len(order) // 2 :] if second else order[: len(order) // 2]
    return d.data[rows], d.target[rows]


def test_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    return _half(name, second=True)


test_split.__test__ = False  # type: ignore[attr-defined]  # not a pytest test

_X, _y = _half("cancer", second=False)
cancer_good = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(_X, _y)
cancer_poor = DecisionTreeClassifier(max_depth=1, random_state=0).fit(_X, _y)

_X, _y = _half("iris", second=False)
iris_good = LogisticRegression(max_iter=1000).fit(_X, _y)
iris_poor = DecisionTreeClassifier(max_depth=1, random_state=0).fit(_X, _y)

_X, _y = _half("diabetes", second=False)
diabetes_good = LinearRegression().fit(_X, _y)
diabetes_poor = DummyRegressor().fit(_X, _y)

# Classes by name, as scikit-learn keeps labels fitted as text: predict answers the names
# (BYTES when served), predict_proba's columns follow classes_.
_X, _y = _half("iris", second=False)
species_good = LogisticRegression(max_iter=1000).fit(_X, _DATA["iris"].target_names[_y])
species_poor = DecisionTreeClassifier(max_depth=1, random_state=0).fit(_X, _DATA["iris"].target_names[_y])


class _Reversed:
    """species_good with its classes, and so its scores' columns, in the reverse order."""

    classes_ = species_good.classes_[::-1]
    n_features_in_ = 4

    def predict(self, x: np.ndarray) -> np.ndarray:
        return species_good.predict(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return species_good.predict_proba(x)[:, ::-1]


species_reversed = _Reversed()
