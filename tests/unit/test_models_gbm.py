"""LightGBM and XGBoost models fitted on pandas `category` columns, served as Python models
(runtime/models/python.py): the categories live in the booster, not in a scikit-learn
encoder, and the model wants them back as categoricals with the training codes. Real data:
diamonds (pydataset), its cut, color and clarity as categories."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from runtime.config import ModelConfig
from runtime.models.base import check_inputs
from runtime.models.python import PythonModel
from tests.unit.test_models_dataframe import TEXT, pd, pydataset


@pytest.fixture(scope="module")
def diamonds() -> Any:
    df = pydataset.data("diamonds").sample(n=6000, random_state=0).reset_index(drop=True)
    df["expensive"] = (df["price"] > df["price"].median()).astype(int)
    return df


def _lightgbm(frame: Any, y: Any) -> Any:
    lgb = pytest.importorskip("lightgbm")
    return lgb.LGBMClassifier(n_estimators=30, verbose=-1, random_state=0).fit(frame, y)


def _xgboost(frame: Any, y: Any) -> Any:
    xgb = pytest.importorskip("xgboost")
    return xgb.XGBClassifier(n_estimators=30, enable_categorical=True, tree_method="hist").fit(frame, y)


def _request(rows: Any) -> dict[str, np.ndarray]:
    """A client's request: text as BYTES (None for a missing value), numbers as FP64."""
    out = {}
    for c in rows.columns:
        if c in TEXT:
            values = [None if v is None or v != v else str(v).encode() for v in rows[c]]
            out[c] = np.array(values, dtype=object).reshape(-1, 1)
        else:
            out[c] = rows[c].to_numpy(np.float64).reshape(-1, 1)
    return out


@pytest.mark.parametrize("fit", [_lightgbm, _xgboost], ids=["lightgbm", "xgboost"])
def test_categories_kept_by_the_booster_take_text_per_column(diamonds: Any, fit: Any) -> None:
    cols = ["carat", *TEXT, "depth", "table"]
    frame = diamonds[cols].astype({c: "category" for c in TEXT})
    train, rest = frame.iloc[:5000], frame.iloc[5000:]
    model = fit(train, diamonds["expensive"].iloc[:5000])
    m = PythonModel(ModelConfig(name="gbm", source="tests.fake:obj"), obj=model)
    assert [(s.name, s.datatype) for s in m.inputs] == [(c, "BYTES" if c in TEXT else "FP64") for c in cols]
    # A category never seen and a missing one: both missing to the booster, as for the
    # library itself given the same categoricals.
    rows = rest.iloc[:200].astype({c: object for c in TEXT})
    rows.loc[rows.index[0], "cut"] = "Flawless"
    rows.loc[rows.index[1], "color"] = None
    got = m.predict(check_inputs(m, _request(rows), {s.name: s.datatype for s in m.inputs}))
    expected_frame = rows.copy()
    for c in TEXT:
        expected_frame[c] = pd.Categorical(rows[c]).set_categories(train[c].cat.categories)
    np.testing.assert_array_equal(got["predict_proba"], model.predict_proba(expected_frame))
    proba = got["predict_proba"][:, 1]
    assert 0.1 < (proba > 0.5).mean() < 0.9  # a model that tells rows apart, not a constant


@pytest.mark.parametrize("fit", [_lightgbm, _xgboost], ids=["lightgbm", "xgboost"])
def test_numeric_categories_are_fed_as_the_training_codes(fit: Any) -> None:
    # airquality's Month (5..9) as a `category` column has codes 0..4. Served as one FP64
    # matrix, XGBoost read the numbers 5..9 as codes: 46 of 47 held-out predictions wrong by
    # up to 7 ppb of ozone, without an error. Now one input per column, Month a categorical.
    air = pydataset.data("airquality").dropna().reset_index(drop=True)
    frame = air[["Solar.R", "Wind", "Temp", "Month"]].astype({"Month": "category"})
    y = (air["Ozone"] > air["Ozone"].median()).astype(int)
    model = fit(frame.iloc[:80], y.iloc[:80])
    m = PythonModel(ModelConfig(name="gbm", source="tests.fake:obj"), obj=model)
    assert [(s.name, s.datatype) for s in m.inputs] == [(c, "FP64") for c in frame.columns]
    rows = frame.iloc[80:]
    request = {c: rows[c].to_numpy(np.float64).reshape(-1, 1) for c in frame.columns}
    request["Month"][0, 0] = 4.0  # a month never seen: missing, as the library takes it
    got = m.predict(check_inputs(m, request, {c: "FP64" for c in frame.columns}))
    expected_frame = rows.copy()
    codes = [-1, *(int(v) - 5 for v in rows["Month"].iloc[1:])]  # month 4: no category
    expected_frame["Month"] = pd.Categorical.from_codes(codes, categories=[5, 6, 7, 8, 9])
    np.testing.assert_array_equal(got["predict_proba"], model.predict_proba(expected_frame))
