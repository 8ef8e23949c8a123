"""An ordinary scikit-learn classifier exported with skl2onnx (input `X`, outputs `label`
and `probabilities` [-1, k]): `mlrt profile --model` profiles its outputs as `label`
(categorical) and `probabilities[0..k-1]`, the server monitors them by those names, and
`mlrt drift --url` reads the running server's report from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from runtime.cli import main as mlrt
from runtime.monitor.profile import Profile
from tests.integration.drift_client import infer
from tests.integration.serving import start_server, stop_server

pytestmark = pytest.mark.integration

skl2onnx = pytest.importorskip("skl2onnx")
sklearn_datasets = pytest.importorskip("sklearn.datasets")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sklearn.linear_model import LogisticRegression

    tmp = tmp_path_factory.mktemp("sklearn")
    d = sklearn_datasets.load_iris()
    X, y = d.data, d.target
    clf = LogisticRegression(max_iter=500).fit(X, y)
    onx = skl2onnx.to_onnx(clf, X[:1].astype(np.float32), options={"zipmap": False})
    (tmp / "clf.onnx").write_bytes(onx.SerializeToString())
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    columns = {n: X[:, j] for j, n in enumerate(names)}
    pacsv.write_csv(pa.table({**columns, "species": y}), tmp / "train.csv")
    return {"model": tmp / "clf.onnx", "data": tmp / "train.csv", "dir": tmp}


def test_profile_names_a_classifiers_outputs_and_the_server_monitors_them(exported, capsys) -> None:
    ref = exported["dir"] / "ref.json"
    argv = ["profile", str(exported["data"]), "-o", str(ref), "--model", str(exported["model"])]
    assert mlrt([*argv, "--exclude", "species"]) == 0
    said = capsys.readouterr().out
    assert "outputs (label, probabilities[0], probabilities[1], probabilities[2])" in said
    profile = Profile.load(ref)
    names = ["label", "probabilities[0]", "probabilities[1]", "probabilities[2]"]
    assert [f.name for f in profile.outputs] == names
    assert profile.feature("label").kind == "categorical" and profile.feature("label").levels == [0, 1, 2]
    assert {f.dtype for f in profile.features} == {"float32"}

    # The target column left in: a message that says what to do, not a traceback.
    assert mlrt(argv) == 2
    err = capsys.readouterr().err
    assert "take 4 columns but the data has 5" in err and "--exclude" in err

    srv = start_server([f"iris={exported['model']}"], exported["dir"], ["--profile", f"iris={ref}"])
    try:
        X = sklearn_datasets.load_iris().data
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            for start in range(0, len(X), 10):
                infer(client, "iris", {"X": X[start : start + 10].astype(np.float32)})
        report = httpx.get(f"{srv.url}/v2/models/iris/drift").json()
        assert [o["name"] for o in report["outputs"]][:2] == ["label", "probabilities[0]"]
        assert report["status"] == "ok"
        assert all(f["psi"] == 0.0 for f in report["features"] + report["outputs"])

        # The same report from the command line, as a table and as JSON.
        assert mlrt(["drift", "--url", srv.url]) == 0
        table = capsys.readouterr().out
        assert "drift of iris v1: 150 rows against 150 reference rows" in table
        assert "status: ok" in table and "output probabilities[2]" in table
        assert mlrt(["drift", "--url", srv.url, "--model", "iris", "--format", "json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["model_name"] == "iris" and doc["window"]["rows"] == 150
        assert mlrt(["drift", "--url", srv.url, "--model", "nosuch"]) == 2
        assert "unknown model 'nosuch'" in capsys.readouterr().err
    finally:
        stop_server(srv)
    assert mlrt(["drift", "--url", srv.url]) == 2
    assert "cannot reach" in capsys.readouterr().err
