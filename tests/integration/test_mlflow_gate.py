"""A gate report recorded on an MLflow version must be about that version: `mlrt gate` over
real models logged to a sqlite tracking store, judged by reference and by file, then
`record_gate` and promotion with `require_gate`. Needs the mlrt[mlflow] extra."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("mlflow")
skl2onnx = pytest.importorskip("skl2onnx")

from runtime.cli import main as mlrt  # noqa: E402
from runtime.registry import RegistryError, get_registry  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def cancer(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two logistic regressions on scikit-learn's breast cancer data, logged as versions 1
    (strongly regularised) and 2 of `cancer`, and the held-out rows as Parquet."""
    from mlflow import MlflowClient
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    tmp = tmp_path_factory.mktemp("cancer")
    d = load_breast_cancer()
    Xtr, Xte, ytr, yte = train_test_split(d.data, d.target, test_size=0.4, random_state=0)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("gate", artifact_location=(tmp / "artifacts").as_uri())
    client.create_registered_model("cancer")
    files = {}
    for version, c in (("1", 1e-4), ("2", 1.0)):
        clf = LogisticRegression(C=c, max_iter=5000).fit(Xtr, ytr)
        src = tmp / f"v{version}"
        src.mkdir()
        onx = skl2onnx.to_onnx(clf, Xtr[:1].astype(np.float32), options={"zipmap": False})
        (src / "model.onnx").write_bytes(onx.SerializeToString())
        run_id = client.create_run(experiment).info.run_id
        client.log_artifacts(run_id, str(src), "model")
        client.set_terminated(run_id)
        made = client.create_model_version("cancer", f"runs:/{run_id}/model", run_id=run_id).version
        assert str(made) == version
        files[version] = src / "model.onnx"
    client.set_registered_model_alias("cancer", "champion", "1")
    table = pa.table({**{f"f{j}": Xte[:, j] for j in range(Xte.shape[1])}, "malignant": yte})
    pq.write_table(table, tmp / "test.parquet")
    return {"uri": f"mlflow+{uri}", "files": files, "data": tmp / "test.parquet", "dir": tmp}


def _gate(cancer: dict, candidate: str, out: Path) -> dict:
    code = mlrt(["gate", "--candidate", candidate, "--baseline", "models:/cancer@champion",
                 "--registry", str(cancer["uri"]), "--data", str(cancer["data"]), "--target", "malignant",
                 "--columns", *[f"f{j}" for j in range(30)], "--metric", "auc", "--bootstrap", "200",
                 "-o", str(out)])  # fmt: skip
    assert code == 0, code
    return json.loads(out.read_text())


def test_a_report_is_recorded_only_on_the_version_it_judged(cancer, tmp_path) -> None:
    reg = get_registry(str(cancer["uri"]))
    by_ref = _gate(cancer, "models:/cancer/2", tmp_path / "ref.json")
    assert by_ref["passed"] and by_ref["versions"]["candidate"] == "2"
    assert by_ref["candidate_sha256"] is None  # a reference, not a file
    with pytest.raises(RegistryError, match=r"judged 'models:/cancer/2' \(version 2\), not models:/cancer/1"):
        reg.record_gate("cancer", "1", by_ref)
    with pytest.raises(RegistryError, match="cancer version 1 has no gate"):
        reg.set_alias("cancer", "champion", "1", require_gate=True)
    assert reg.record_gate("cancer", "2", by_ref)["passed"]

    # Gated as the file that was logged: its content is version 2's model, not version 1's.
    by_file = _gate(cancer, str(cancer["files"]["2"]), tmp_path / "file.json")
    assert by_file["passed"] and by_file["candidate_sha256"]
    with pytest.raises(RegistryError, match="judged another model .* than models:/cancer/1's artifacts"):
        reg.record_gate("cancer", "1", by_file)
    assert reg.record_gate("cancer", "2", by_file)["passed"]
    reg.set_alias("cancer", "champion", "2", require_gate=True)
    assert reg.alias_target("cancer", "champion") == "2"
