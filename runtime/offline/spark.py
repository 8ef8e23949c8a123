"""Score a Spark DataFrame with any mlrt model: the batch scoring of `mlrt predict`, spread
over a Spark job (docs/offline-spark-dask.md).

    from runtime.offline import spark as mlrt_spark

    scored = mlrt_spark.predict(df, "churn.onnx", profile="ref.json", passthrough=["customer_id"])
    scored.df.write.parquet("scored/")      # the action: every partition scored once
    scored.drift_report()                   # the drift of every row, as one process counts it

Rows reach Python as Arrow record batches (`DataFrame.mapInArrow`) and go back to the JVM
as Arrow: no row is ever a Python object. Each Python worker process builds one
BatchScorer for the job (runtime/offline/workers.py) and keeps it for every partition
and batch it scores.

Drift: each partition's bin counts are recorded once the partition has been scored to
its end, keyed by the partition's index; a retried, speculative or recomputed task
records the same counts under the same key again instead of adding them a second time,
so the sum over the indexes is exactly what one process scoring every row counts.
Partitions that no action scored in full are counted by `drift_counts()` itself, with a
small job that returns one row per partition.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Unpack

import numpy as np

from ..errors import ConfigError
from .scoring import BatchScorer, ScorerSpec, ScoringOptions
from .workers import (
    DriftReports,
    add_counts,
    counts_from_bytes,
    counts_since,
    counts_to_bytes,
    names_schema,
    pinned,
    scorer_for,
)

__all__ = ["SparkPrediction", "predict"]

#: The partition's index, added to the rows sent to Python: mapInArrow's function cannot
#: ask which input partition it is reading (TaskContext gives the task's partition, which
#: is not the input's once a coalesce follows), and spark_partition_id() evaluated below
#: the Python step is the input's.
PARTITION = "__mlrt_partition__"


def predict(
    df: Any,
    model: str,
    **options: Unpack[ScoringOptions],
) -> SparkPrediction:
    """Score the pyspark DataFrame `df` with `model` (anything `mlrt serve` takes, at a path
    every executor can read): a SparkPrediction whose `df` holds the `passthrough` columns,
    then the model's outputs as columns (``label``, ``probabilities_<class>``...), row for row.

    Nothing runs until an action computes `df`; the model is loaded here once to check the
    columns (a missing column, or a count that does not fit the model's inputs, raises
    ConfigError now). The `options` are `mlrt predict`'s (runtime.offline.ScoringOptions);
    `threads` is onnxruntime's per Python worker, 1 by default because Spark already runs
    one task per core.
    """
    if not hasattr(df, "mapInArrow"):
        raise TypeError(f"predict() takes a pyspark.sql.DataFrame; got {type(df).__name__}")
    from pyspark.sql import functions as F

    if PARTITION in df.columns:
        raise ConfigError(f"the DataFrame has a column named {PARTITION!r}, which mlrt uses for itself")
    context = _spark_context(df)
    check_local_workers(context)
    spec = ScorerSpec.of(model, options, threads=1)
    scorer = spec.build()
    read = scorer.check(names_schema(df.columns))
    # mapInArrow looks its input columns up by name unquoted (`df[name]`), so a name with a
    # dot (R's `Solar.R`) would be a struct field to it: they travel as c0, c1... and take
    # their names back in the worker (_data).
    source = df.select(
        *[F.col(_quoted(c)).alias(f"c{i}") for i, c in enumerate(read)],
        F.spark_partition_id().alias(PARTITION),
    )
    schema, casts = _output_schema(scorer, df)
    accumulator = None
    if scorer.monitor is not None and context is not None:
        accumulator = context.accumulator({}, _ByPartition())
    work = pinned(spec, scorer)
    scored = source.mapInArrow(_scoring(work, read, accumulator, casts), schema)
    return SparkPrediction(scored, work, read, source, accumulator, DriftReports(scorer))


class SparkPrediction:
    """A scored DataFrame (`df`, lazy) and the drift of its rows (`drift_report()`)."""

    def __init__(
        self,
        df: Any,
        spec: ScorerSpec,
        names: Sequence[str],
        source: Any,
        accumulator: Any,
        reports: DriftReports,
    ) -> None:
        self.df = df
        self.spec = spec
        self._names = list(names)
        self._source = source
        self._accumulator = accumulator
        self._reports = reports
        self._counts: dict[str, np.ndarray] | None = None

    def drift_counts(self) -> dict[str, np.ndarray]:
        """The drift bin counts of every row of `df` ({"features": ..., "outputs": ...}, as
        BatchScorer.drift_counts gives them); {} without a profile.

        Partitions that an action has scored to their end count as they were recorded;
        the others (no action yet, or one that read only part of `df`, such as `show()`)
        are scored and counted now by a job of their own, which returns one small row per
        partition. The input must give the same rows in the same partitions each time it
        is computed, as Spark's own recomputation of a lost partition assumes; persist it
        first when it does not (a random split, say)."""
        if self._counts is not None:
            return self._counts
        if not self._reports.enabled:
            self._counts = {}
            return self._counts
        parts = self._source.rdd.getNumPartitions() if self._accumulator is not None else 0
        seen: dict[int, dict[str, np.ndarray]] = {}
        if self._accumulator is not None:
            seen = dict(self._accumulator.value)
            if any(not 0 <= p < parts for p in seen):  # pragma: no cover - a partitioning that changed
                seen = {}
        missing = [p for p in range(parts) if p not in seen]
        if missing or self._accumulator is None:
            seen.update(self._count(None if len(missing) == parts else missing))
        self._counts = add_counts(seen[p] for p in sorted(seen))
        return self._counts

    def drift_report(self) -> dict[str, Any] | None:
        """The drift of every row of `df` by the server's rule (BatchScorer.drift_report's
        JSON: one process scoring every row gives the same counts, hence the same report);
        None without a profile. Computes what `drift_counts()` says."""
        return self._reports.report(self.drift_counts())

    def _count(self, partitions: list[int] | None) -> dict[int, dict[str, np.ndarray]]:
        """Score `partitions` (None: all) for their drift counts alone."""
        from pyspark.sql import functions as F

        source = self._source
        if partitions is not None:
            source = source.filter(F.col(PARTITION).isin(partitions))
        rows = source.mapInArrow(
            _counting(self.spec, self._names), "partition int, features binary, outputs binary"
        ).collect()
        return {
            r["partition"]: counts_from_bytes({"features": r["features"], "outputs": r["outputs"]})
            for r in rows
        }


# -- on the workers ----------------------------------------------------------------------


def _scoring(
    spec: ScorerSpec, names: Sequence[str], accumulator: Any, casts: Mapping[str, Any]
) -> Callable[..., Any]:
    """mapInArrow's function: one input partition's batches in, scored batches out."""

    def score(batches: Iterator[Any]) -> Iterator[Any]:
        scorer = scorer_for(spec)
        before = scorer.drift_counts()
        partition = None
        for batch in batches:
            if not batch.num_rows:
                continue
            if partition is None:
                partition = batch.column(PARTITION)[0].as_py()
            yield _cast(scorer.score(_data(batch, names)), casts)
        # Reached only once every batch is scored: a partition read in part (a limit)
        # records nothing, and drift_counts() counts it itself.
        if accumulator is not None and partition is not None:
            accumulator.add({partition: counts_since(scorer, before)})

    return score


def _counting(spec: ScorerSpec, names: Sequence[str]) -> Callable[..., Any]:
    """mapInArrow's function for drift_counts(): one row per partition, its counts."""

    def count(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        scorer = scorer_for(spec)
        before = scorer.drift_counts()
        partition = None
        for batch in batches:
            if batch.num_rows:
                partition = batch.column(PARTITION)[0].as_py()
                scorer.score(_data(batch, names))
        if partition is not None:
            wire = counts_to_bytes(counts_since(scorer, before))
            row = {"partition": [partition], "features": [wire["features"]], "outputs": [wire.get("outputs")]}
            schema = [("partition", pa.int32()), ("features", pa.binary()), ("outputs", pa.binary())]
            yield pa.RecordBatch.from_pydict(row, schema=pa.schema(schema))

    return count


def _data(batch: Any, names: Sequence[str]) -> Any:
    """The batch without the partition column (the last), its columns under their own names."""
    import pyarrow as pa

    last = batch.num_columns - 1
    return pa.RecordBatch.from_arrays(batch.columns[:last], names=list(names))


def _cast(batch: Any, casts: Mapping[str, Any]) -> Any:
    if not casts:
        return batch
    import pyarrow as pa

    arrays = [
        col.cast(casts[name]) if name in casts else col
        for name, col in zip(batch.schema.names, batch.columns, strict=True)
    ]
    fields = [pa.field(f.name, casts[f.name]) if f.name in casts else f for f in batch.schema]
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


# -- schemas -------------------------------------------------------------------------------


def _output_schema(scorer: BatchScorer, df: Any) -> tuple[Any, dict[str, Any]]:
    """The scored DataFrame's Spark schema, and the outputs whose Arrow type has to be cast
    to one Spark takes (Spark has no unsigned integers and no float16)."""
    from pyspark.sql.types import StructField, StructType

    arrow = scorer.output_schema(names_schema(df.columns))
    passthrough = set(scorer.spec.passthrough)
    fields, casts = [], {}
    for f in arrow:
        if f.name in passthrough:
            fields.append(df.schema[f.name])  # as Spark has it: sent and returned as they are
            continue
        spark_type, arrow_type = _spark_type(f.type)
        fields.append(StructField(f.name, spark_type, nullable=True))
        if arrow_type != f.type:
            casts[f.name] = arrow_type
    return StructType(fields), casts


def _spark_type(arrow_type: Any) -> tuple[Any, Any]:
    """The Spark type of an output column's Arrow type, and the Arrow type Spark takes for it.

    Unsigned integers widen to the next signed type (uint64 to a decimal of 20 digits),
    float16 to float: every value is kept exactly."""
    import pyarrow as pa
    import pyarrow.types as pat
    from pyspark.sql import types as T

    table = [
        (pat.is_boolean, T.BooleanType(), pa.bool_()),
        (pat.is_int8, T.ByteType(), pa.int8()),
        (pat.is_int16, T.ShortType(), pa.int16()),
        (pat.is_int32, T.IntegerType(), pa.int32()),
        (pat.is_int64, T.LongType(), pa.int64()),
        (pat.is_uint8, T.ShortType(), pa.int16()),
        (pat.is_uint16, T.IntegerType(), pa.int32()),
        (pat.is_uint32, T.LongType(), pa.int64()),
        (pat.is_uint64, T.DecimalType(20, 0), pa.decimal128(20, 0)),
        (pat.is_float16, T.FloatType(), pa.float32()),
        (pat.is_float32, T.FloatType(), pa.float32()),
        (pat.is_float64, T.DoubleType(), pa.float64()),
        (pat.is_string, T.StringType(), pa.string()),
    ]
    for test, spark_type, target in table:
        if test(arrow_type):
            return spark_type, target
    raise ConfigError(f"an output of Arrow type {arrow_type} has no Spark type")  # pragma: no cover


def _quoted(name: str) -> str:
    """A column name as a Spark column reference (dots and brackets taken literally)."""
    return "`" + name.replace("`", "``") + "`"


def _spark_context(df: Any) -> Any:
    """The SparkContext, or None under Spark Connect (no accumulators: drift_counts()
    then counts every partition with its own job)."""
    try:
        return df.sparkSession.sparkContext
    except Exception:
        return None


#: Python executables a local master's workers were found to import mlrt with.
_checked_workers: set[str] = set()


def check_local_workers(context: Any) -> None:
    """On a local master the Python workers start on this machine with Spark's
    `pythonExec` (PYSPARK_PYTHON, else `python3` on PATH), which is not this Python
    unless it was set so: a script run with a virtual environment's Python without
    activating it gets the system's, without mlrt, and every task fails with a worker's
    traceback (`No module named 'runtime'`). Check that Python once and say what to do."""
    if context is None or not str(getattr(context, "master", "")).startswith("local"):
        return
    exe = getattr(context, "pythonExec", None)
    if not exe:
        return
    found = shutil.which(exe) or exe
    # Paths compared as written, not resolved: a venv's python is a link to the base
    # interpreter, which runs without the venv's packages when called by its own name.
    if os.path.abspath(found) == os.path.abspath(sys.executable) or found in _checked_workers:
        return
    try:
        proc = subprocess.run(
            [found, "-c", "import runtime.offline.workers"], capture_output=True, text=True, timeout=120
        )
        failed = proc.returncode != 0
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
    except (OSError, subprocess.TimeoutExpired) as exc:
        failed, why = True, str(exc)
    if failed:
        raise ConfigError(
            f"Spark's Python workers run {exe!r} ({found}), which cannot import mlrt ({why}); "
            f"set PYSPARK_PYTHON={sys.executable} before the SparkSession starts, or activate the "
            "environment mlrt is installed in (docs/offline-spark-dask.md)"
        )
    _checked_workers.add(found)


class _ByPartition:
    """An accumulator of {partition index: counts} that keeps one entry per index: a
    partition scored twice (a retried or speculative task, a second action) replaces its
    entry with the same counts instead of adding them again."""

    def zero(self, value: Any) -> dict[int, Any]:
        return {}

    def addInPlace(self, value1: dict[int, Any], value2: dict[int, Any]) -> dict[int, Any]:
        value1.update(value2)
        return value1
