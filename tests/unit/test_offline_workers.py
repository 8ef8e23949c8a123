"""runtime/offline/workers.py, what the Spark and Dask jobs share: one scorer per thread,
a partition's counts as a difference of running totals, their exact sum, the registry
alias pinned to one version, and the driver's report of summed counts."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bench import models as bench_models
from runtime.monitor.profile import Profile
from runtime.offline import ScorerSpec, workers
from runtime.registry import FilesystemRegistry


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    """The bench MLP (input [-1, 20] FP32, output [-1, 2]), a profile of its inputs, and rows."""
    tmp = tmp_path_factory.mktemp("mlp")
    model = bench_models.mlp(tmp / "mlp.onnx")
    X = np.random.default_rng(0).standard_normal((3000, 20)).astype(np.float32)
    Profile.fit({f"f{j}": X[:1000, j] for j in range(20)}).save(tmp / "ref.json")
    return model, tmp / "ref.json", X


def _batch(X: np.ndarray) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(X[:, j]) for j in range(X.shape[1])],
                                      names=[f"f{j}" for j in range(X.shape[1])])  # fmt: skip


def test_one_scorer_per_spec_and_thread(mlp) -> None:
    model, ref, _ = mlp
    spec = ScorerSpec(str(model), profile=str(ref), threads=1)
    first = workers.scorer_for(spec)
    assert workers.scorer_for(spec) is first and workers.scorers_built(spec) == 1
    assert workers.scorer_for(ScorerSpec(str(model), profile=str(ref), threads=1)) is first  # equal specs

    other: list[object] = []
    t = threading.Thread(target=lambda: other.append(workers.scorer_for(spec)))
    t.start()
    t.join()
    assert other[0] is not first and workers.scorers_built(spec) == 2


def test_partition_counts_add_up_to_one_scorers_counts(mlp) -> None:
    model, ref, X = mlp
    spec = ScorerSpec(str(model), profile=str(ref), threads=1)
    one = spec.build()
    one.score(_batch(X))

    shared = workers.scorer_for(spec)  # reused across "partitions", its totals only grow
    parts = []
    for rows in np.array_split(np.arange(len(X)), 5):
        before = shared.drift_counts()
        shared.score(_batch(X[rows]))
        parts.append(workers.counts_from_bytes(workers.counts_to_bytes(workers.counts_since(shared, before))))
    total = workers.add_counts(parts)
    assert total.keys() == one.drift_counts().keys() == {"features"}
    np.testing.assert_array_equal(total["features"], one.drift_counts()["features"])
    assert total["features"].dtype == np.int64

    reports = workers.DriftReports(spec.build())
    report = reports.report(total)
    assert report == one.drift_report() and report["window"] == {"rows": 3000}
    assert reports.report(total) is report  # the same counts: the same report, not counted twice
    half = workers.add_counts(parts[:2])
    assert reports.report(half)["window"] == {"rows": sum(len(r) for r in np.array_split(range(3000), 5)[:2])}


def test_without_a_profile_there_is_nothing_to_report(mlp) -> None:
    model, _, _ = mlp
    reports = workers.DriftReports(ScorerSpec(str(model)).build())
    assert not reports.enabled and reports.report({}) is None


def test_a_registry_alias_is_pinned_to_its_version(mlp, tmp_path: Path) -> None:
    model, ref, _ = mlp
    reg = FilesystemRegistry(tmp_path / "registry")
    for _ in range(3):
        reg.register(model, "mlp", profile=ref)
    reg.set_alias("mlp", "champion", "2")
    spec = ScorerSpec("mlp@champion", registry=str(reg.root), passthrough=("id",))
    work = workers.pinned(spec, spec.build())
    assert work.model == "mlp=mlp/2" and work.passthrough == ("id",) and work.registry == spec.registry
    assert work.build().model.version == "2"
    served = ScorerSpec("scorer=mlp@champion", registry=str(reg.root))
    assert workers.pinned(served, served.build()).model == "scorer=mlp/2"
    # Files, Python models and versions already pinned are left as they are.
    for fixed in (str(model), "mlp/3"):
        plain = ScorerSpec(fixed, registry=str(reg.root))
        assert workers.pinned(plain, plain.build()) is plain
