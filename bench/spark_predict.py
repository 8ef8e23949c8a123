"""Scoring a Spark DataFrame three ways, on local[2]: rows/s of the same model over the same rows.

    python -m bench.spark_predict [--rows 10000000] [--naive-rows 200000] [--rounds 5] [--batch-rows 10000]
                                  [--json [PATH]]

The bench MLP (20 FP32 features -> 64 -> 32 -> 2 probabilities, bench/models.py) over a
Parquet folder of `--rows` rows (20 float32 features and an int64 id, 8 files). Each system
turns it into a DataFrame of the id and the two probabilities, and the timed action is
`write.format("noop")` (every row computed, nothing written), the same for all:

  mlrt mapInArrow          runtime.offline.spark.predict: Arrow batches from the JVM straight
                           into the scorer and back (the scorer is loaded once per Python worker)
  mlrt mapInArrow + drift  the same with a reference profile: every row counted, and the drift
                           report made after the action (included in the time)
  pandas_udf               an iterator-of-Series pandas UDF returning a struct of the two
                           columns, with the same onnxruntime session kept per Python worker:
                           the pattern Spark's documentation gives for model inference
  per-row Python UDF       the naive way, a plain `udf`: one session.run per row (the session
                           is kept per worker too; Spark 4 moves the rows to Python as Arrow
                           by default, and still calls the function once per row); run on
                           `--naive-rows` rows (a folder of its own with the same layout) and
                           its rows/s extrapolated to `--rows`, labelled as such
  mapInArrow, no model     the floor: the same rows through mapInArrow to Python and back,
                           id and two zero columns returned, no model; what any Python
                           scorer on Spark pays before the model runs

onnxruntime runs one thread in every system (Spark runs two tasks at once on local[2]); Arrow
batches are `--batch-rows` rows for every system (spark.sql.execution.arrow.maxRecordsPerBatch;
Spark's default, 10,000, unless given). Before timing, the three are checked to give the same
probabilities on the naive folder's rows.

Rounds run the systems in rotated order after one warm-up each; figures are rows/s, medians
over rounds [min-max], and per round mlrt mapInArrow's rows/s over each other system's. The
data are seeded (the scored folder seed 0, the naive folder seed 1); `--json` writes every
round's seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import _results, models
from ._results import spread

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1

FEATURES = [f"f{j}" for j in range(20)]
FILES = 8
CHUNK = 500_000  # rows generated and written at a time
MASTER = "local[2]"
DRIVER_MEMORY = "4g"
SEEDS = {"rows": 0, "naive_rows": 1}  # write_data's seed for each folder


def write_data(folder: Path, rows: int, seed: int = 0) -> None:
    """`rows` rows of 20 standard normal float32 features and an id, in FILES Parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    schema = pa.schema([("id", pa.int64()), *[(n, pa.float32()) for n in FEATURES]])
    per_file = -(-rows // FILES)
    for i in range(FILES):
        start, stop = i * per_file, min(rows, (i + 1) * per_file)
        if start >= stop:
            break
        with pq.ParquetWriter(str(folder / f"part-{i}.parquet"), schema) as w:
            for s in range(start, stop, CHUNK):
                n = min(CHUNK, stop - s)
                X = rng.standard_normal((n, len(FEATURES)), dtype=np.float32)
                cols = [pa.array(np.arange(s, s + n)), *[pa.array(X[:, j]) for j in range(len(FEATURES))]]
                w.write_batch(pa.RecordBatch.from_arrays(cols, schema=schema))


def fit_profile(path: Path, data: Path) -> None:
    import pyarrow.parquet as pq

    from runtime.monitor import Profile

    table = pq.read_table(sorted(data.glob("*.parquet"))[0], columns=FEATURES).slice(0, 200_000)
    Profile.fit({n: table.column(n).to_numpy() for n in FEATURES}).save(path)


# -- the Python side of the two UDFs: one session per worker process, as mlrt keeps one ------

_sessions: dict[str, Any] = {}


def _session(model: str) -> Any:
    if model not in _sessions:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        _sessions[model] = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    return _sessions[model]


def pandas_udf_frame(df: Any, model: str) -> Any:
    from collections.abc import Iterator

    import pandas as pd
    from pyspark.sql.functions import col, pandas_udf

    def score(batches):  # type: ignore[no-untyped-def]
        session = _session(model)
        for columns in batches:
            x = np.column_stack([c.to_numpy(dtype=np.float32) for c in columns])
            p = session.run(None, {"input": x})[0]
            yield pd.DataFrame({"p0": p[:, 0], "p1": p[:, 1]})

    # PySpark picks the UDF's kind from its type hints, which must be objects, not the
    # strings this module's annotations are: an iterator of column tuples in, of frames out.
    score.__annotations__ = {"batches": Iterator[tuple[pd.Series, ...]], "return": Iterator[pd.DataFrame]}
    udf = pandas_udf(score, "p0 float, p1 float")  # type: ignore[call-overload]
    return df.select("id", udf(*[col(n) for n in FEATURES]).alias("p")).select("id", "p.p0", "p.p1")


def naive_udf_frame(df: Any, model: str) -> Any:
    from pyspark.sql.functions import col, udf
    from pyspark.sql.types import ArrayType, FloatType

    @udf(returnType=ArrayType(FloatType()))
    def score(*values: float) -> list[float]:
        p = _session(model).run(None, {"input": np.array([values], dtype=np.float32)})[0]
        return [float(p[0, 0]), float(p[0, 1])]

    out = df.select("id", score(*[col(n) for n in FEATURES]).alias("p"))
    return out.select("id", col("p")[0].alias("p0"), col("p")[1].alias("p1"))


def floor_frame(df: Any) -> Any:
    """The same trip through Python with no model: each batch's id and two zero columns."""

    def passthrough(batches):  # type: ignore[no-untyped-def]
        import pyarrow as pa

        for b in batches:
            zeros = pa.array(np.zeros(b.num_rows, np.float32))
            yield pa.RecordBatch.from_arrays([b.column(0), zeros, zeros], names=["id", "p0", "p1"])

    return df.select("id", *FEATURES).mapInArrow(passthrough, "id long, p0 float, p1 float")


def mlrt_frame(df: Any, model: str, profile: str | None) -> Any:
    from runtime.offline import spark as mlrt_spark

    scored = mlrt_spark.predict(df, model, profile=profile, passthrough=["id"], threads=1)
    renamed = scored.df.withColumnRenamed("output_0", "p0").withColumnRenamed("output_1", "p1")
    return renamed, scored


def check_agree(spark: Any, small: Path, model: str) -> None:
    """The three systems give the same probabilities on the same rows (float32 tolerance:
    pandas_udf and the naive UDF feed onnxruntime other batch shapes)."""
    df = spark.read.parquet(str(small))
    frames = {
        "mlrt": mlrt_frame(df, model, None)[0],
        "pandas_udf": pandas_udf_frame(df, model),
        "naive": naive_udf_frame(df, model),
    }
    got = {}
    for name, frame in frames.items():
        rows = frame.orderBy("id").limit(2000).collect()
        got[name] = np.array([[r["p0"], r["p1"]] for r in rows])
    for name in ("pandas_udf", "naive"):
        np.testing.assert_allclose(got[name], got["mlrt"], rtol=1e-5, atol=1e-6, err_msg=name)


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    model = str(models.mlp(tmp / "mlp.onnx"))
    big, small = tmp / "rows", tmp / "naive-rows"
    t = time.perf_counter()
    write_data(big, args.rows, seed=SEEDS["rows"])
    write_data(small, args.naive_rows, seed=SEEDS["naive_rows"])
    fit_profile(tmp / "ref.json", big)
    print(f"[bench.spark_predict] data written in {time.perf_counter() - t:.0f} s", file=sys.stderr)

    spark = (
        SparkSession.builder.master(MASTER)
        .appName("bench.spark_predict")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", DRIVER_MEMORY)
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch_rows))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        check_agree(spark, small, model)
        df, naive_df = spark.read.parquet(str(big)), spark.read.parquet(str(small))
        partitions = df.rdd.getNumPartitions()

        def timed(make: Callable[[], Any], after: Callable[[Any], None] | None = None) -> float:
            t = time.perf_counter()
            frame, handle = make()
            frame.write.format("noop").mode("overwrite").save()
            if after is not None:
                after(handle)
            return time.perf_counter() - t

        def with_drift() -> float:
            def report(scored: Any) -> None:
                assert scored.drift_report()["window"]["rows"] == args.rows

            return timed(lambda: mlrt_frame(df, model, str(tmp / "ref.json")), report)

        systems: dict[str, tuple[Callable[[], float], int]] = {
            "mapInArrow, no model (floor)": (lambda: timed(lambda: (floor_frame(df), None)), args.rows),
            "mlrt mapInArrow": (lambda: timed(lambda: mlrt_frame(df, model, None)), args.rows),
            "mlrt mapInArrow + drift": (with_drift, args.rows),
            "pandas_udf": (lambda: timed(lambda: (pandas_udf_frame(df, model), None)), args.rows),
            "per-row Python UDF": (
                lambda: timed(lambda: (naive_udf_frame(naive_df, model), None)),
                args.naive_rows,
            ),
        }
        names = list(systems)
        for name in names:  # warm-up: files in the page cache, Python workers started
            systems[name][0]()
        seconds: dict[str, list[float]] = {n: [] for n in names}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                seconds[name].append(systems[name][0]())
                print(
                    f"[bench.spark_predict] round {r + 1}: {name} {seconds[name][-1]:.1f} s", file=sys.stderr
                )
    finally:
        spark.stop()
    return {
        "partitions": partitions,
        "agree": True,  # check_agree raises otherwise
        "rows_measured": {n: systems[n][1] for n in names},
        "seconds": seconds,
    }


MLRT = "mlrt mapInArrow"


def markdown(saved: dict[str, Any], name: str = "spark_predict") -> str:
    """A saved run's table (bench/_results.py's layout) in Markdown."""
    r, s = saved["results"], saved["settings"]
    rows = s["rows"]
    rates = {n: [r["rows_measured"][n] / sec for sec in secs] for n, secs in r["seconds"].items()}
    lines = [
        f"| system | rows/s | time for {rows:,} rows | {MLRT} / this, per round |",
        "|---|---|---|---|",
    ]
    for system, v in rates.items():
        measured = r["rows_measured"][system]
        label = system if measured == rows else f"{system} ({measured:,} rows, extrapolated)"
        ratio = "" if system == MLRT else spread([a / b for a, b in zip(rates[MLRT], v, strict=True)], '.2f')
        lines.append(f"| {label} | {spread(v, ',.0f')} | {rows / statistics.median(v):,.1f} s | {ratio} |")
    rounds = len(rates[MLRT])
    lines += [
        "",
        f"The bench MLP over {rows:,} rows ({s['files']} Parquet files, {r['partitions']} partitions), "
        f"Spark {s['master']}, Arrow batches of {s['batch_rows']:,} rows, onnxruntime on "
        f"{s['onnxruntime_threads']} thread per task; each system's DataFrame written to Spark's noop "
        f"sink. Rows/s median [min-max] over {rounds} round{'s' if rounds > 1 else ''} in rotated order "
        "after one warm-up each; "
        "time = rows / median rows/s; ratios per round. The per-row UDF ran on "
        f"{s['naive_rows']:,} rows, its time extrapolated. The three scorers gave the same "
        "probabilities before timing.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from ._results import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000, help="rows scored (10,000,000)")
    p.add_argument("--naive-rows", type=int, default=200_000, help="rows for the per-row UDF (200,000)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--batch-rows", type=int, default=10_000, help="Arrow batch size (Spark's default, 10,000)"
    )
    _results.json_option(p)
    args = p.parse_args(argv)
    args.naive_rows = min(args.naive_rows, args.rows)
    settings: dict[str, Any] = {
        "rows": args.rows,
        "naive_rows": args.naive_rows,
        "rounds": args.rounds,
        "batch_rows": args.batch_rows,
        "master": MASTER,
        "driver_memory": DRIVER_MEMORY,
        "files": FILES,
        "onnxruntime_threads": 1,
        "seeds": SEEDS,
    }
    run = Run("spark_predict", SCRIPT_VERSION, settings, argv=argv,
              measured=("runtime", "native", "setup.py", "bench/models.py"))  # fmt: skip
    # The UDFs' functions must come from an importable module, not __main__, for the Python
    # workers to import it and keep one session per process (cloudpickle copies __main__).
    from bench import spark_predict

    with tempfile.TemporaryDirectory(prefix="mlrt-bench-spark-") as d:
        results = spark_predict.run(args, Path(d))
    print(markdown(run.envelope(results), "spark_predict"), end="")
    if args.json is not None:
        run.save(results, args.json or None)


if __name__ == "__main__":
    main()
