"""The MLflow adapter against a real MLflow tracking store (sqlite, in-process). Needs mlrt[mlflow]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mlflow")

from runtime.monitor.profile import Profile  # noqa: E402
from runtime.registry import (  # noqa: E402
    NothingToRollBack,
    UnknownAlias,
    UnknownModel,
    UnknownVersion,
    get_registry,
)
from runtime.registry.mlflow import MlflowRegistry  # noqa: E402

# MLflow's sqlite store uses a SQLAlchemy loader strategy that SQLAlchemy 2.1 deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("mlrt", artifact_location=(root / "artifacts").as_uri())
    return {"root": root, "uri": uri, "client": client, "experiment": experiment}


def _log_version(store, name: str, payload: bytes, *, profile: Path | None = None,
                 profile_in_model: bool = False, params=None, metrics=None, tags=None) -> str:
    client = store["client"]
    run = client.create_run(store["experiment"], tags=tags or {})
    run_id = run.info.run_id
    for k, v in (params or {}).items():
        client.log_param(run_id, k, v)
    for k, v in (metrics or {}).items():
        client.log_metric(run_id, k, v)
    src = store["root"] / f"src-{run_id}"
    src.mkdir()
    (src / "model.onnx").write_bytes(payload)
    if profile is not None and profile_in_model:
        (src / "profile.json").write_bytes(profile.read_bytes())
    client.log_artifacts(run_id, str(src), "model")
    if profile is not None and not profile_in_model:
        client.log_artifact(run_id, str(profile))
    client.set_terminated(run_id)
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name)
    return str(client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version)


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    path = tmp_path / "profile.json"
    Profile.fit(np.random.default_rng(2).normal(size=(300, 4))).save(path)
    return path


@pytest.fixture
def reg(store, tmp_path) -> MlflowRegistry:
    return MlflowRegistry(store["uri"], cache_dir=tmp_path / "cache")


def test_resolve_alias_and_version(store, reg, profile_file):
    v1 = _log_version(store, "fraud", b"v1", profile=profile_file, params={"depth": "6", "loss": "log"},
                      metrics={"auc": 0.91},
                      tags={"mlflow.source.git.commit": "abc123", "mlflow.source.name": "train.py",
                            "mlrt.data": "s3://bucket/train.parquet"})
    v2 = _log_version(store, "fraud", b"v2", profile=profile_file, profile_in_model=True)
    store["client"].set_registered_model_alias("fraud", "champion", v1)

    m = reg.resolve("models:/fraud@champion")
    assert (m.name, m.version, m.alias) == ("fraud", v1, "champion")
    assert m.model_path.name == "model.onnx" and m.model_path.read_bytes() == b"v1"
    assert m.profile_path is not None and Profile.load(m.profile_path).row_count == 300
    assert m.card["params"] == {"depth": 6, "loss": "log"}
    assert m.card["metrics"] == {"auc": 0.91}
    assert m.card["data"] == "s3://bucket/train.parquet"
    assert m.card["lineage"]["git_commit"] == "abc123" and m.card["lineage"]["pipeline"] == "train.py"
    assert m.card["profile"]["features"] == 4
    assert m.card["created_at"].endswith("Z")

    m2 = reg.resolve(f"models:/fraud/{v2}")
    assert m2.model_path.read_bytes() == b"v2" and m2.profile_path is not None
    assert reg.resolve(f"fraud/{v2}").model_path == m2.model_path  # the models:/ prefix is optional


def test_list_and_aliases(store, reg):
    v1 = _log_version(store, "churn", b"a")
    v2 = _log_version(store, "churn", b"b")
    store["client"].set_registered_model_alias("churn", "champion", v2)
    assert "churn" in reg.list_models()
    infos = reg.list_versions("churn")
    assert [i.version for i in infos] == [v1, v2]
    assert infos[1].aliases == ("champion",) and infos[0].aliases == ()
    assert reg.aliases("churn") == {"champion": v2}
    assert reg.alias_target("churn", "champion") == v2
    assert reg.alias_target("churn", "challenger") is None


def test_set_alias_and_rollback(store, reg):
    versions = [_log_version(store, "ranker", bytes([i])) for i in range(3)]
    for v in versions:
        reg.set_alias("ranker", "champion", v)
    assert reg.alias_target("ranker", "champion") == versions[2]
    assert reg.rollback("ranker", "champion") == versions[1]
    assert reg.resolve("models:/ranker@champion").model_path.read_bytes() == bytes([1])
    assert reg.rollback("ranker", "champion") == versions[0]
    with pytest.raises(NothingToRollBack):
        reg.rollback("ranker", "champion")


def test_errors(store, reg):
    _log_version(store, "errs", b"x")
    with pytest.raises(UnknownModel, match="unknown model 'nope'"):
        reg.resolve("models:/nope@champion")
    with pytest.raises(UnknownAlias, match="no alias 'champion'"):
        reg.resolve("models:/errs@champion")
    with pytest.raises(UnknownVersion, match="no version '99'"):
        reg.resolve("models:/errs/99")


def test_get_registry_picks_the_mlflow_adapter(store):
    reg = get_registry("mlflow+" + store["uri"])
    assert isinstance(reg, MlflowRegistry) and reg.tracking_uri == store["uri"]


def _gate_report(passed: bool) -> dict[str, object]:
    """The fields of an `mlrt gate -o` report that a card keeps (runtime/gates/gate.py)."""
    return {
        "schema": 1, "passed": passed, "failures": [] if passed else ["accuracy: -0.050 < -0.01"],
        "candidate": "gated/2", "baseline": "gated@champion", "versions": {"baseline": "1"},
        "data": {"paths": ["test.parquet"], "rows": 285, "sha256": "ab" * 32},
        "metric": {"name": "accuracy", "candidate": 0.9, "baseline": 0.95, "delta": -0.05,
                   "interval": [-0.08, -0.02], "min_delta": 0.01},
        "latency": {"ratio": 1.1},
    }  # fmt: skip


def test_promotion_can_require_a_passing_gate(store, reg):
    from runtime.registry import RegistryError

    v1, v2 = (_log_version(store, "gated", bytes([i])) for i in range(2))
    with pytest.raises(RegistryError, match=f"gated version {v1} has no gate on its card"):
        reg.set_alias("gated", "champion", v1, require_gate=True)
    reg.record_gate("gated", v2, _gate_report(passed=False))
    with pytest.raises(RegistryError, match=f"gated version {v2} failed its gate: accuracy: -0.050"):
        reg.set_alias("gated", "champion", v2, require_gate=True)
    assert reg.alias_target("gated", "champion") is None
    gate = reg.record_gate("gated", v2, _gate_report(passed=True))
    reg.set_alias("gated", "champion", v2, require_gate=True)
    assert reg.alias_target("gated", "champion") == v2
    card = reg.resolve("models:/gated@champion").card
    assert card["gate"] == gate and card["gate"]["baseline_version"] == "1" and card["gate"]["passed"]
    with pytest.raises(RegistryError, match="not an `mlrt gate` report"):
        reg.record_gate("gated", v1, {"passed": True})
