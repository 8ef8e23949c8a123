"""Model backends: the ONNX backend against onnxruntime itself, and in-process Python
models (scikit-learn objects, functions, classes)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from bench import models as bench_models
from runtime.config import ModelConfig
from runtime.errors import ConfigError, MlrtError, ModelLoadError
from runtime.models import Model, TensorSpec, load_model
from runtime.models.python import PythonModel

# -- ONNX ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx")
    bench_models.mlp(path / "mlp.onnx")
    bench_models.two_io(path / "two_io.onnx")
    bench_models.strings(path / "strings.onnx")
    return path


def load_onnx(path: Path, **fields: Any) -> Model:
    return load_model(ModelConfig(name=path.stem, source=str(path), **fields))


def reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def signature(specs: tuple[TensorSpec, ...]) -> list[tuple[str, str, tuple[int, ...]]]:
    return [(s.name, s.datatype, s.shape) for s in specs]


def test_onnx_signature(onnx_dir: Path) -> None:
    mlp = load_onnx(onnx_dir / "mlp.onnx")
    assert isinstance(mlp, Model)
    assert (mlp.name, mlp.version, mlp.platform) == ("mlp", "1", "onnxruntime_onnx")
    assert signature(mlp.inputs) == [("input", "FP32", (-1, 20))]
    assert signature(mlp.outputs) == [("output", "FP32", (-1, 2))]
    two = load_onnx(onnx_dir / "two_io.onnx")
    assert signature(two.inputs) == [("x", "FP32", (-1, 3)), ("n", "INT64", (-1, 1))]
    assert signature(two.outputs) == [("sum", "FP32", (-1, 1)), ("twice", "INT64", (-1, 1))]
    text = load_onnx(onnx_dir / "strings.onnx")
    assert signature(text.inputs) == [("text", "BYTES", (-1, 1))]
    assert signature(text.outputs) == [("echo", "BYTES", (-1, 1))]


@pytest.mark.parametrize("rows", [1, 7, 1000])
def test_onnx_predict_equals_onnxruntime(onnx_dir: Path, rows: int) -> None:
    rng = np.random.default_rng(rows)
    x = rng.standard_normal((rows, 20)).astype(np.float32)
    got = load_onnx(onnx_dir / "mlp.onnx").predict({"input": x})
    want = reference(onnx_dir / "mlp.onnx", {"input": x})
    assert list(got) == ["output"]
    np.testing.assert_array_equal(got["output"], want["output"])
    assert got["output"].dtype == np.float32


def test_onnx_two_inputs_of_different_datatypes(onnx_dir: Path) -> None:
    x = np.array([[1, 2, 3], [0.5, 0.25, 0]], np.float32)
    n = np.array([[10], [-4]], np.int64)
    got = load_onnx(onnx_dir / "two_io.onnx").predict({"x": x, "n": n})
    np.testing.assert_array_equal(got["sum"], np.array([[16], [-3.25]], np.float32))
    np.testing.assert_array_equal(got["twice"], np.array([[20], [-8]], np.int64))
    for name, want in reference(onnx_dir / "two_io.onnx", {"x": x, "n": n}).items():
        np.testing.assert_array_equal(got[name], want)


def test_onnx_bytes_in_and_out(onnx_dir: Path) -> None:
    text = np.array([[b"hello"], ["h\u00e9".encode()], [b""]], dtype=object)
    got = load_onnx(onnx_dir / "strings.onnx").predict({"text": text})
    assert got["echo"].shape == (3, 1)
    assert got["echo"].reshape(-1).tolist() == [b"hello", "h\u00e9".encode(), b""]


def test_onnx_thread_settings_and_declared_signature(onnx_dir: Path) -> None:
    model = load_onnx(
        onnx_dir / "mlp.onnx",
        intra_op_threads=2,
        inter_op_threads=2,
        inputs=({"name": "input", "datatype": "FP32", "shape": [4, 20]},),
    )
    assert signature(model.inputs) == [("input", "FP32", (4, 20))]
    out = model.predict({"input": np.zeros((4, 20), np.float32)})
    assert out["output"].shape == (4, 2)


def test_onnx_classifier_knows_its_classes(tmp_path: Path, onnx_dir: Path) -> None:
    # skl2onnx writes scikit-learn's classes_ into the classifier node: they say which column
    # of the scores is which class (feedback and gates use it). A graph without them: None.
    from skl2onnx import to_onnx
    from sklearn.tree import DecisionTreeClassifier

    data = load_iris()
    X = data.data.astype(np.float32)
    for labels in (data.target_names[data.target], data.target + 1):
        clf = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, labels)
        onx = to_onnx(clf, X[:1], options={"zipmap": False})
        (tmp_path / "clf.onnx").write_bytes(onx.SerializeToString())
        assert load_onnx(tmp_path / "clf.onnx").classes == tuple(clf.classes_.tolist())
    assert load_onnx(onnx_dir / "mlp.onnx").classes is None


def test_python_classifier_knows_its_classes(iris: tuple[np.ndarray, LogisticRegression]) -> None:
    x, clf = iris
    assert python_model(clf).classes == (0, 1, 2)
    named = LogisticRegression(max_iter=1000).fit(x, load_iris().target_names[load_iris().target])
    assert python_model(named).classes == ("setosa", "versicolor", "virginica")
    from sklearn.linear_model import LinearRegression

    assert python_model(LinearRegression().fit(x, x[:, 0])).classes is None


def test_onnx_string_input_refuses_a_missing_value_per_request(onnx_dir: Path) -> None:
    # onnxruntime's string tensors cannot hold one: a 400 naming it, not a failed batch.
    from runtime.models.base import check_inputs

    model = load_onnx(onnx_dir / "strings.onnx")
    name = model.inputs[0].name
    sent = {name: np.array([b"a", None], dtype=object).reshape((2, *model.inputs[0].shape[1:]))}
    with pytest.raises(MlrtError, match=f"input '{name}': element 1 is null, and this model's string input"):
        check_inputs(model, sent, {name: "BYTES"})


def test_onnx_string_input_refuses_pandas_missing_text_rather_than_scoring_nan(onnx_dir: Path) -> None:
    # A missing value in a DataFrame's text column is NaN (object dtype) or pd.NA (string
    # dtype): they reached onnxruntime as the text "nan" and "<NA>", scored as an unseen
    # category without a word, where `mlrt predict` and the server refuse the same row.
    pd = pytest.importorskip("pandas")
    import runtime

    with runtime.load(str(onnx_dir / "strings.onnx")) as m:
        name = m.inputs[0].name
        assert m.predict(pd.DataFrame({name: ["a", "b"]}))  # text alone is fine
        for column in (
            pd.Series(["a", np.nan], dtype=object),
            pd.Series(["a", None], dtype=object),
            pd.Series(["a", None], dtype="string"),
        ):
            with pytest.raises(MlrtError, match=f"input '{name}': element 1 is null"):
                m.predict(pd.DataFrame({name: column}))


def test_onnx_declared_signature_may_narrow_the_graph_but_not_contradict_it() -> None:
    # A declared input the graph does not have loaded, then failed every request in
    # onnxruntime ("Invalid input name").
    demo = Path(__file__).resolve().parents[2] / "runtime" / "demo" / "model.onnx"

    def declared(**kw: object) -> ModelConfig:
        return ModelConfig(name="d", source=str(demo), **kw)  # type: ignore[arg-type]

    narrowed = load_model(declared(inputs=[{"name": "features", "datatype": "FP32", "shape": [8, 30]}]))
    assert narrowed.inputs[0].shape == (8, 30)
    bad = {
        "is not one of the graph's inputs \\['features'\\]": [
            {"name": "x", "datatype": "FP32", "shape": [-1, 30]}
        ],
        "FP32\\[-1, 3\\] does not fit the graph's FP32\\[-1, 30\\]": [
            {"name": "features", "datatype": "FP32", "shape": [-1, 3]}
        ],
        "FP64\\[-1, 30\\] does not fit": [{"name": "features", "datatype": "FP64", "shape": [-1, 30]}],
    }
    for match, inputs in bad.items():
        with pytest.raises(ModelLoadError, match=match):
            load_model(declared(inputs=inputs))
    with pytest.raises(ModelLoadError, match="declared output 'score' is not one of the graph's outputs"):
        load_model(declared(outputs=[{"name": "score", "datatype": "FP32", "shape": [-1, 1]}]))


def test_onnx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model 'gone': no such file .*gone.onnx"):
        load_model(ModelConfig(name="gone", source=str(tmp_path / "gone.onnx")))


def test_onnx_file_that_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"this is not protobuf")
    with pytest.raises(ModelLoadError, match="model 'junk': cannot load .*junk.onnx"):
        load_model(ModelConfig(name="junk", source=str(path)))


def test_onnx_unknown_provider(onnx_dir: Path) -> None:
    with pytest.raises(MlrtError):
        load_onnx(onnx_dir / "mlp.onnx", providers=("NoSuchExecutionProvider",))


# -- Python models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, LogisticRegression]:
    data = load_iris()
    clf = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    return data.data, clf


def python_model(obj: Any, **fields: Any) -> PythonModel:
    return PythonModel(ModelConfig(name="py", source="tests.fake:obj", **fields), obj=obj)


X4 = {"name": "x", "datatype": "FP64", "shape": [-1, 4]}


def test_sklearn_estimator(iris: tuple[np.ndarray, LogisticRegression]) -> None:
    x, clf = iris
    model = python_model(clf)
    assert model.platform == "python"
    assert signature(model.inputs) == [("input", "FP64", (-1, 4))]
    assert signature(model.outputs) == [
        ("predict", "INT64", (-1,)),
        ("predict_proba", "FP64", (-1, 3)),
    ]
    out = model.predict({"input": x})
    np.testing.assert_array_equal(out["predict"], clf.predict(x))
    np.testing.assert_array_equal(out["predict_proba"], clf.predict_proba(x))
    assert (out["predict"] == load_iris().target).mean() > 0.9


def test_a_multi_output_classifier_answers_one_probability_output_per_target() -> None:
    # predict_proba gives a list, one [n, k_i] array per target. Stacked, it put the targets
    # where the rows go ([2, n, k]: a batch of requests split along the wrong axis), or,
    # with different class counts, failed to load with a bare numpy error.
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_iris(return_X_y=True)
    targets = np.c_[y, (x[:, 0] > 5.8).astype(int)]  # 3 classes and 2
    rf = RandomForestClassifier(10, random_state=0).fit(x, targets)
    model = python_model(rf)
    assert signature(model.outputs) == [
        ("predict", "INT64", (-1, 2)),
        ("predict_proba_0", "FP64", (-1, 3)),
        ("predict_proba_1", "FP64", (-1, 2)),
    ]
    out = model.predict({"input": x[:7]})
    for i, proba in enumerate(rf.predict_proba(x[:7])):
        np.testing.assert_array_equal(out[f"predict_proba_{i}"], proba)
    assert model.classes is None  # one list per target: no single column order


def test_sklearn_estimator_answers_zero_rows(iris: tuple[np.ndarray, LogisticRegression]) -> None:
    # scikit-learn refuses an empty array ("Found array with 0 sample(s)"); onnxruntime answers
    # it, and V2 allows the shape, so the estimator's request of zero rows gets empty outputs.
    x, clf = iris
    out = python_model(clf).predict({"input": x[:0]})
    assert out["predict"].shape == (0,) and out["predict"].dtype == np.int64
    assert out["predict_proba"].shape == (0, 3) and out["predict_proba"].dtype == np.float64
    with pytest.raises(ValueError, match="0 sample"):
        clf.predict(x[:0])  # what it did before


def test_a_function_gets_its_zero_rows_itself() -> None:
    # Only an estimator is answered for: a function decides what zero rows mean.
    seen = []

    def fn(x: np.ndarray) -> np.ndarray:
        seen.append(x.shape)
        return x.sum(axis=1)

    fn.inputs = [X4]  # type: ignore[attr-defined]
    model = python_model(fn)
    assert model.predict({"x": np.zeros((0, 4))})["output"].shape == (0,)
    assert seen[-1] == (0, 4)


@pytest.mark.parametrize("suffix", [".joblib", ".pkl"])
def test_a_pickled_estimator_file(
    iris: tuple[np.ndarray, LogisticRegression], tmp_path: Path, suffix: str
) -> None:
    # What scikit-learn's docs save a model as; served from `mlrt serve iris.joblib`.
    import pickle

    import joblib

    from runtime.config import parse_model_spec

    x, clf = iris
    path = tmp_path / f"iris{suffix}"
    if suffix == ".joblib":
        joblib.dump(clf, path)
    else:
        path.write_bytes(pickle.dumps(clf))
    config = parse_model_spec(str(path))
    assert (config.name, config.backend) == ("iris", "python")
    model = load_model(config)
    assert signature(model.inputs) == [("input", "FP64", (-1, 4))]
    np.testing.assert_array_equal(model.predict({"input": x})["predict_proba"], clf.predict_proba(x))


def test_a_pickle_that_cannot_load_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import pickle

    with pytest.raises(ModelLoadError, match=r"model 'gone': no such file"):
        load_model(ModelConfig(name="gone", source=str(tmp_path / "gone.pkl")))
    (tmp_path / "text.pkl").write_text("plan,tenure\nbasic,3\n")
    with pytest.raises(ModelLoadError, match=r"model 'text': cannot unpickle .*UnpicklingError"):
        load_model(ModelConfig(name="text", source=str(tmp_path / "text.pkl")))
    # A pickle of a class from a module that is not importable here (the training code's own
    # transformer, say): the error names the module.
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "mlrt_training_code.py").write_text("class Double:\n    pass\n")
    with monkeypatch.context() as m:
        m.syspath_prepend(str(tmp_path / "src"))
        module = importlib.import_module("mlrt_training_code")
        (tmp_path / "custom.pkl").write_bytes(pickle.dumps(module.Double()))
    sys.modules.pop("mlrt_training_code")
    with pytest.raises(ModelLoadError, match=r"it needs module 'mlrt_training_code'"):
        load_model(ModelConfig(name="custom", source=str(tmp_path / "custom.pkl")))
    # A class the training script defined itself: pickled as __main__.Wrapper, which only that
    # script's run had; Python's own message alone does not say what to do.
    script = tmp_path / "train.py"
    script.write_text(
        "import pickle, sys\nclass Wrapper:\n    pass\n"
        "open(sys.argv[1], 'wb').write(pickle.dumps(Wrapper()))\n"
    )
    subprocess.run([sys.executable, str(script), str(tmp_path / "main.pkl")], check=True)
    with pytest.raises(ModelLoadError, match=r"Can't get attribute 'Wrapper'.*move that class into a module"):
        load_model(ModelConfig(name="main", source=str(tmp_path / "main.pkl")))


def test_sklearn_estimator_with_declared_input(iris: tuple[np.ndarray, LogisticRegression]) -> None:
    x, clf = iris
    model = python_model(clf, inputs=(X4,))
    assert signature(model.inputs) == [("x", "FP64", (-1, 4))]
    np.testing.assert_array_equal(model.predict({"x": x[:5]})["predict"], clf.predict(x[:5]))


def test_plain_function_on_one_array_with_config_signature() -> None:
    def double(x):
        assert isinstance(x, np.ndarray)
        return x * 2

    model = python_model(double, inputs=(X4,), outputs=({"name": "y", "datatype": "FP64", "shape": [-1, 4]},))
    assert signature(model.outputs) == [("y", "FP64", (-1, 4))]
    x = np.arange(8, dtype=np.float64).reshape(2, 4)
    np.testing.assert_array_equal(model.predict({"x": x})["y"], x * 2)


def test_plain_function_outputs_are_learned_by_warm_up() -> None:
    def stats(x):
        return x.sum(axis=1), (x > 0).all(axis=1)

    model = python_model(stats, inputs=(X4,))
    assert signature(model.outputs) == [("output_0", "FP64", (-1,)), ("output_1", "BOOL", (-1,))]
    out = model.predict({"x": np.array([[1.0, 2, 3, 4], [-1, 0, 0, 0]])})
    np.testing.assert_array_equal(out["output_0"], [10.0, -1.0])
    np.testing.assert_array_equal(out["output_1"], [True, False])


def test_single_array_output_is_named_output() -> None:
    model = python_model(lambda x: x[:, :1].astype(np.int32), inputs=(X4,))
    assert signature(model.outputs) == [("output", "INT32", (-1, 1))]


def test_function_annotated_to_take_a_dict() -> None:
    def f(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert isinstance(inputs, dict)
        return {"s": inputs["x"].sum(axis=1).astype(np.float32)}

    model = python_model(f, inputs=(X4,))
    assert signature(model.outputs) == [("s", "FP32", (-1,))]
    out = model.predict({"x": np.ones((3, 4))})
    np.testing.assert_array_equal(out["s"], np.full(3, 4, np.float32))


def test_function_annotated_with_mapping_and_two_inputs() -> None:
    def f(inputs: Mapping[str, np.ndarray]):
        return {"total": inputs["a"] + inputs["b"]}

    spec = {"datatype": "INT64", "shape": [-1]}
    model = python_model(f, inputs=({"name": "a", **spec}, {"name": "b", **spec}))
    out = model.predict({"a": np.array([1, 2]), "b": np.array([10, 20])})
    np.testing.assert_array_equal(out["total"], [11, 22])


class Scaler:
    """A class the backend instantiates, whose signature is its `inputs` attribute."""

    inputs = [{"name": "v", "datatype": "FP32", "shape": [-1, 2]}]

    def __init__(self) -> None:
        self.factor = np.float32(3)

    def __call__(self, v: np.ndarray) -> dict[str, np.ndarray]:
        return {"scaled": v * self.factor, "label": np.array([b"x"] * len(v), dtype=object)}


def test_class_with_inputs_attribute() -> None:
    model = python_model(Scaler)
    assert signature(model.inputs) == [("v", "FP32", (-1, 2))]
    assert signature(model.outputs) == [("scaled", "FP32", (-1, 2)), ("label", "BYTES", (-1,))]
    out = model.predict({"v": np.ones((2, 2), np.float32)})
    np.testing.assert_array_equal(out["scaled"], np.full((2, 2), 3, np.float32))
    assert out["label"].tolist() == [b"x", b"x"]


def test_string_outputs_become_bytes() -> None:
    model = python_model(lambda x: np.array(["a", "b\u00e9"])[: len(x)], inputs=(X4,))
    assert signature(model.outputs) == [("output", "BYTES", (-1,))]
    assert model.predict({"x": np.zeros((2, 4))})["output"].tolist() == [b"a", "b\u00e9".encode()]


def test_tuple_of_the_wrong_length_is_an_error() -> None:
    model = python_model(
        lambda x: (x, x),
        inputs=(X4,),
        outputs=({"name": "only", "datatype": "FP64", "shape": [-1, 4]},),
    )
    with pytest.raises(ValueError, match="returned 2 values, but 1 outputs are declared"):
        model.predict({"x": np.zeros((1, 4))})


def test_import_from_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mlrt_test_pkg").mkdir()
    (tmp_path / "mlrt_test_pkg" / "__init__.py").write_text("")
    (tmp_path / "mlrt_test_pkg" / "mod.py").write_text(
        textwrap.dedent(
            """
            inputs = [{"name": "x", "datatype": "INT32", "shape": [-1]}]

            class Holder:
                @staticmethod
                def fn(x):
                    return x + 1

            Holder.fn.inputs = inputs
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        model = load_model(ModelConfig(name="inc", source="mlrt_test_pkg.mod:Holder.fn"))
        assert model.platform == "python"
        np.testing.assert_array_equal(model.predict({"x": np.array([1, 2], np.int32)})["output"], [2, 3])
    finally:
        for name in ("mlrt_test_pkg", "mlrt_test_pkg.mod"):
            sys.modules.pop(name, None)


# -- bad sources ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("no_such_module_mlrt:obj", "cannot import module 'no_such_module_mlrt'"),
        ("json:no_such_attr", "module 'json' has no attribute 'no_such_attr'"),
        ("json.decoder:JSONDecoder.nope", "has no attribute 'JSONDecoder.nope'"),
        ("json:", "expected package.module:object, got 'json:'"),
    ],
)
def test_bad_python_source(source: str, match: str) -> None:
    with pytest.raises(ModelLoadError, match=match):
        PythonModel(ModelConfig(name="bad", source=source, backend="python"))


def test_object_that_is_neither_callable_nor_a_predictor() -> None:
    with pytest.raises(ModelLoadError, match="neither callable nor has predict"):
        python_model(42)


def test_undeclared_inputs() -> None:
    with pytest.raises(ModelLoadError, match="declare its inputs"):
        python_model(lambda x: x)


def test_class_that_cannot_be_instantiated() -> None:
    class NeedsArgs:
        def __init__(self, weights: Any) -> None:
            pass

    with pytest.raises(ModelLoadError, match="cannot instantiate"):
        python_model(NeedsArgs)


def test_warm_up_failure_is_a_load_error() -> None:
    def broken(x):
        raise RuntimeError("weights missing")

    with pytest.raises(ModelLoadError, match="warm-up call on a zero row failed \\(weights missing\\)"):
        python_model(broken, inputs=(X4,))


@pytest.mark.parametrize(
    "inputs",
    [
        ({"name": "x", "datatype": "FP33", "shape": [-1]},),
        ({"name": "x", "datatype": "FP32", "shape": [-2]},),
        ({"name": "x", "datatype": "FP32"},),
        ({"name": "x", "datatype": "FP32", "shape": ["a"]},),
        # BUG: TensorSpec.from_dict builds its error message with dict(d), which raises
        # ValueError for a non-mapping entry such as a bare string.
        ("x",),
    ],
)
def test_bad_declared_signature(inputs: tuple[Any, ...]) -> None:
    with pytest.raises((ConfigError, ModelLoadError)):
        python_model(lambda x: x, inputs=inputs)


def test_the_client_sends_pandas_missing_text_as_null() -> None:
    # pd.NA (a pandas string column's missing value) went out as the text "<NA>".
    pd = pytest.importorskip("pandas")
    from runtime.formats import as_tensor

    column = pd.Series(["a", None, "c"], dtype="string").to_numpy()
    arr, datatype = as_tensor("s", column)
    assert datatype == "BYTES" and arr.tolist() == [b"a", None, b"c"]
    arr, _ = as_tensor("s", np.array(["a", np.nan, None], dtype=object))
    assert arr.tolist() == [b"a", None, None]


@pytest.mark.parametrize(
    ("values", "datatype", "sent"),
    [
        ([1, np.int32(2), 3], "INT64", [1, 2, 3]),
        ([1.5, None, np.float32(2.5)], "FP64", [1.5, None, 2.5]),  # None: NaN, shown as None
        ([1, float("nan")], "FP64", [1.0, None]),
        ([1, 2**70], "FP64", [1.0, float(2**70)]),  # past int64: a float, not an overflow
        ([True, 1], "BYTES", [b"True", b"1"]),  # a bool is not a number here
        ([1.5, "a"], "BYTES", [b"1.5", b"a"]),
        ([None, None], "BYTES", [None, None]),  # no number to tell the type by
    ],
)
def test_the_client_sends_objects_that_are_numbers_as_numbers(
    values: list, datatype: str, sent: list
) -> None:
    from runtime.formats import as_tensor

    arr, got = as_tensor("x", np.array(values, dtype=object))
    assert got == datatype
    flat = arr.tolist()
    if datatype == "FP64":
        flat = [None if v != v else v for v in flat]
    assert flat == sent
