"""runtime.offline.dask on a real Dask cluster (distributed.LocalCluster: 2 worker
processes of one thread): the scored rows and the drift counts equal what one process
scoring the same rows gives, and scoring and counting share one pass.

One cluster for the module; 6 partitions, each scored in batches of 256 rows by the
scorer its worker keeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

pytest.importorskip("dask.dataframe", reason="dask is not installed (pip install -e '.[dask]')")
pytest.importorskip("distributed", reason="distributed is not installed (pip install -e '.[dask]')")
pytest.importorskip("skl2onnx")

import dask  # noqa: E402
import dask.dataframe as dd  # noqa: E402
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402

from runtime.errors import ConfigError  # noqa: E402
from runtime.offline import ScorerSpec, workers  # noqa: E402
from runtime.offline import dask as mlrt_dask  # noqa: E402
from tests.integration.offline_data import Digits, assert_counts_equal, digits, single_process  # noqa: E402

pytestmark = pytest.mark.dask

PARTITIONS = 6
BATCH = 256


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    return digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def frame(data: Digits) -> dd.DataFrame:
    """The rows in 6 partitions, on an index of their own (not 0..n-1: it must survive)."""
    pdf = data.table.to_pandas()
    pdf.index = pdf.index * 10 + 5
    return dd.from_pandas(pdf, npartitions=PARTITIONS)


def _spec(data: Digits, **kw: object) -> ScorerSpec:
    return ScorerSpec(str(data.model), profile=str(data.profile), **kw)  # type: ignore[arg-type]


def _scored_tasks(stream: list[dict[str, object]]) -> int:
    keys = [t["key"] if isinstance(t["key"], str) else t["key"][0] for t in stream]  # type: ignore[index]
    return sum("_score_partition" in str(k) for k in keys)


def test_outputs_equal_single_process_row_for_row(client: Client, frame, data: Digits) -> None:
    scored = mlrt_dask.predict(
        frame, str(data.model), profile=str(data.profile), passthrough=["id"], batch_rows=BATCH
    )
    names = ["id", "label", *[f"probabilities_{k}" for k in range(10)]]
    assert list(scored.df.columns) == names
    assert scored.df.divisions == frame.divisions  # the input's index, kept
    got, report = scored.compute()
    want, single = single_process(data.table, _spec(data, passthrough=("id",)))
    assert len(got) == 3594
    assert list(got.index) == list(frame.index.compute())  # row for row, in order
    assert str(got["label"].dtype) == "int64" and str(got["probabilities_0"].dtype) == "float32"
    for name in names:
        np.testing.assert_array_equal(got[name].to_numpy(), want.column(name).to_numpy(), err_msg=name)
    assert report == single.drift_report()


def test_drift_counts_are_the_single_process_counts_from_the_same_pass(
    client: Client, frame, data: Digits, tmp_path: Path
) -> None:
    scored = mlrt_dask.predict(frame, str(data.model), profile=str(data.profile), batch_rows=BATCH)
    with get_task_stream(client) as stream:
        report = scored.to_parquet(str(tmp_path / "scored"))
    assert _scored_tasks(stream.data) == PARTITIONS  # written and counted: each partition scored once
    assert pq.read_table(tmp_path / "scored").num_rows == 3594
    _, single = single_process(data.table, _spec(data))
    assert report == single.drift_report()
    assert report is not None and report["window"] == {"rows": 3594} and report["status"] == "alert"

    counts = scored.counts.compute()  # one row per partition, int64, summed exactly
    assert counts.shape[0] == PARTITIONS and set(counts.dtypes.astype(str)) == {"int64"}
    assert_counts_equal(mlrt_dask.summed(counts), single.drift_counts())

    # Any other output, computed with the counts: one pass too.
    with get_task_stream(client) as stream:
        (n_rows, counts) = dask.compute(scored.df["label"].count(), scored.counts)
    assert _scored_tasks(stream.data) == PARTITIONS and n_rows == 3594
    assert scored.drift_report(counts) == report
    # A writer that returns Delayed objects, with the counts as Delayed objects too.
    with get_task_stream(client) as stream:
        _, parts = dask.compute(scored.df.to_csv(str(tmp_path / "csv-*.csv"), compute=False),
                                scored.counts.to_delayed())  # fmt: skip
    assert _scored_tasks(stream.data) == PARTITIONS and len(list(tmp_path.glob("csv-*.csv"))) == PARTITIONS
    assert scored.drift_report(parts) == report


def test_each_worker_loads_the_model_once(client: Client, frame, data: Digits) -> None:
    scored = mlrt_dask.predict(
        frame, str(data.model), profile=str(data.profile), outputs=["label"], batch_rows=BATCH
    )
    got, _ = scored.compute()
    assert list(got.columns) == ["label"]
    # The workers' spec names the input columns and leaves the passthrough to pandas.
    work = ScorerSpec(str(data.model), profile=str(data.profile), columns=tuple(f"px{j}" for j in range(64)),
                      outputs=("label",), threads=1)  # fmt: skip
    built = client.run(workers.scorers_built, work)
    assert sorted(built.values()) in ([0, 1], [1, 1]), built  # 6 partitions, 15 batches: one load each


def test_a_registry_alias_is_pinned_to_the_version_it_named_when_planned(
    client: Client, frame, data: Digits, tmp_path: Path
) -> None:
    from runtime.registry import FilesystemRegistry

    reg = FilesystemRegistry(tmp_path / "registry")
    assert reg.register(data.model, "digits") == "1"
    assert reg.register(data.other, "digits") == "2"
    reg.set_alias("digits", "champion", "1")
    scored = mlrt_dask.predict(frame, "digits@champion", registry=str(reg.root), passthrough=["id"])
    reg.set_alias("digits", "champion", "2")  # promoted while the job is planned, not run
    got, _ = scored.compute()
    v1, _ = single_process(data.table, ScorerSpec(str(data.model), passthrough=("id",)))
    v2, _ = single_process(data.table, ScorerSpec(str(data.other), passthrough=("id",)))
    p0 = "probabilities_0"
    assert not np.array_equal(v1.column(p0).to_numpy(), v2.column(p0).to_numpy())
    np.testing.assert_array_equal(got[p0].to_numpy(), v1.column(p0).to_numpy())


def test_a_missing_column_fails_before_anything_runs(frame, data: Digits) -> None:
    with pytest.raises(ConfigError, match=r"no column\(s\) \['px99'\]"):
        mlrt_dask.predict(frame, str(data.model), columns=[*(f"px{j}" for j in range(63)), "px99"])
    with pytest.raises(ConfigError, match=r"no such column\(s\) \['customer_id'\]"):
        mlrt_dask.predict(frame, str(data.model), passthrough=["customer_id"])
    with pytest.raises(ConfigError, match="take 64 columns but 63"):
        mlrt_dask.predict(frame.drop(columns=["px5"]), str(data.model), passthrough=["id"])
    with pytest.raises(TypeError, match="dask.dataframe.DataFrame"):
        mlrt_dask.predict(data.table, str(data.model))


def test_without_a_profile_there_is_no_drift(client: Client, frame, data: Digits) -> None:
    scored = mlrt_dask.predict(frame, str(data.model), passthrough=["id"])
    got, report = scored.compute()
    assert report is None and len(got) == 3594
    assert scored.counts.compute().shape == (PARTITIONS, 0)


def test_an_empty_partition_scores_to_an_empty_frame(client: Client, frame, data: Digits) -> None:
    sparse = frame[frame["id"] < 7 * 500]  # rows in the first partition only
    scored = mlrt_dask.predict(sparse, str(data.model), profile=str(data.profile), passthrough=["id"])
    got, report = scored.compute()
    table = data.table.filter(pc.less(data.table.column("id"), 7 * 500))
    want, single = single_process(table, _spec(data, passthrough=("id",)))
    assert len(got) == table.num_rows
    np.testing.assert_array_equal(got["label"].to_numpy(), want.column("label").to_numpy())
    assert report == single.drift_report()
