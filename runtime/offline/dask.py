"""Score a Dask DataFrame with any mlrt model: the batch scoring of `mlrt predict`, one task
per partition (docs/offline-spark-dask.md).

    from runtime.offline import dask as mlrt_dask

    scored = mlrt_dask.predict(ddf, "churn.onnx", profile="ref.json", passthrough=["customer_id"])
    report = scored.to_parquet("scored/")   # written and counted in one pass
    frame, report = scored.compute()        # or, for data that fits in memory

Each partition (pandas) goes to Arrow, is scored by a BatchScorer in record batches of
at most `batch_rows` rows, and comes back as pandas: the passthrough columns as they
were, then the outputs, on the partition's own index (so the divisions hold, and the
result joins back to the input). Each worker thread builds one BatchScorer for the job
(runtime/offline/workers.py) and keeps it for every partition it scores.

Drift: the task that scores a partition also returns that partition's bin counts, one
row of `counts`, and the client sums the rows. Dask keeps one result per task (a retried
task replaces its result; it never adds to it), so the sum is exactly what one process
scoring every row counts. Computed together with the scored rows, both come from the same
tasks: one pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Unpack

import numpy as np

from ..errors import ConfigError
from .scoring import ScorerSpec, ScoringOptions
from .workers import DriftReports, counts_since, names_schema, pinned, scorer_for

__all__ = ["DaskPrediction", "predict", "summed"]

#: Rows per record batch given to the model: a partition of millions of rows is scored
#: in pieces, so that the model's working memory follows this, not the partition size.
BATCH_ROWS = 65_536


def predict(
    ddf: Any,
    model: str,
    *,
    batch_rows: int = BATCH_ROWS,
    **options: Unpack[ScoringOptions],
) -> DaskPrediction:
    """Score the Dask DataFrame `ddf` with `model` (anything `mlrt serve` takes, at a path
    every worker can read): a DaskPrediction whose `df` holds the `passthrough` columns,
    then the model's outputs as columns (``label``, ``probabilities_<class>``...), row for row
    on `ddf`'s index.

    Nothing runs until something is computed; the model is loaded here once to check the
    columns (a missing column, or a count that does not fit the model's inputs, raises
    ConfigError now). The `options` are `mlrt predict`'s (runtime.offline.ScoringOptions);
    `threads` is onnxruntime's per worker thread, 1 by default because Dask already runs one
    task per core.
    """
    import dask
    import dask.dataframe as dd

    if not isinstance(ddf, dd.DataFrame):
        raise TypeError(f"predict() takes a dask.dataframe.DataFrame; got {type(ddf).__name__}")
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be at least 1, got {batch_rows}")
    names = list(ddf.columns)
    odd = [n for n in names if not isinstance(n, str)]
    if odd:
        raise ConfigError(f"column names must be strings to be matched to the model; got {odd[:5]}")
    spec = ScorerSpec.of(model, options, threads=1)
    scorer = spec.build()
    read = scorer.check(names_schema(names))
    inputs = scorer.input_columns(names)
    # The workers are told the input columns outright and see no passthrough column:
    # those are copied on the pandas side, never converted.
    work = dataclasses.replace(pinned(spec, scorer), columns=tuple(inputs), passthrough=())
    meta = _meta(scorer, ddf._meta, spec.passthrough)
    layout = {section: len(c) for section, c in scorer.drift_counts().items()}
    parts = ddf[read].to_delayed()
    score = dask.delayed(_score_partition, pure=True)
    pairs = [score(part, work, inputs, spec.passthrough, batch_rows, layout) for part in parts]
    # Both collections read the same tasks' results: computed together, each partition is
    # scored once.
    df = dd.from_delayed(
        [pair[0] for pair in pairs],
        meta=meta,
        divisions=ddf.divisions if ddf.known_divisions else None,
        verify_meta=False,  # _score_partition builds every partition as _meta builds the meta
    )
    counts = dd.from_delayed([pair[1] for pair in pairs], meta=_counts_frame(layout, None), verify_meta=False)
    return DaskPrediction(df, counts, DriftReports(scorer))


class DaskPrediction:
    """The scored rows (`df`) and their drift counts (`counts`), both lazy Dask DataFrames.

    `counts` has one row per partition and one int64 column per bin of the profile
    (``features[0]``, ..., ``outputs[0]``, ...; no column without a profile): the
    partition's counts, which `drift_report` sums. Computed together (`compute`,
    `to_parquet`, `dask.compute(scored.df.label.value_counts(), scored.counts)`, or with a
    writer that returns Delayed objects, `dask.compute(scored.df.to_csv(..., compute=False),
    scored.counts.to_delayed())`), both come from the same tasks and every partition is
    scored once; each computed on its own scores the partitions again, unless they are
    persisted together (`dask.persist(scored.df, scored.counts)`)."""

    def __init__(self, df: Any, counts: Any, reports: DriftReports) -> None:
        self.df = df
        self.counts = counts
        self._reports = reports

    def drift_report(self, counts: Any = None) -> dict[str, Any] | None:
        """The drift of every row by the server's rule (BatchScorer.drift_report's JSON), from
        `counts` as computed from `self.counts` (a pandas DataFrame, or the list of frames of
        `self.counts.to_delayed()`); computes them when not given. None without a profile."""
        if not self._reports.enabled:
            return None
        return self._reports.report(summed(self.counts.compute() if counts is None else counts))

    def compute(self, **kwargs: Any) -> tuple[Any, dict[str, Any] | None]:
        """The scored rows as one pandas DataFrame, and the drift report: one pass."""
        import dask

        frame, counts = dask.compute(self.df, self.counts, **kwargs)
        return frame, self.drift_report(counts)

    def to_parquet(self, path: str, **kwargs: Any) -> dict[str, Any] | None:
        """Write the scored rows with `dask.dataframe.to_parquet(path, **kwargs)` and return
        the drift report: one pass."""
        import dask

        write = self.df.to_parquet(path, compute=False, **kwargs)
        _, counts = dask.compute(write, self.counts)
        return self.drift_report(counts)


def summed(counts: Any) -> dict[str, np.ndarray]:
    """The drift counts of every partition of a computed `counts` frame (or of the list of
    frames `counts.to_delayed()` computes to), summed exactly (int64), as
    BatchScorer.drift_counts gives them: {"features": ..., "outputs": ...}."""
    if isinstance(counts, (list, tuple)):
        import pandas as pd

        counts = pd.concat(counts) if counts else pd.DataFrame()
    sections: dict[str, list[str]] = {}
    for name in counts.columns:
        sections.setdefault(name.partition("[")[0], []).append(name)
    return {
        section: counts[names].to_numpy(dtype=np.int64).sum(axis=0, dtype=np.int64)
        for section, names in sections.items()
    }


# -- on the workers ----------------------------------------------------------------------


def _score_partition(
    part: Any,
    spec: ScorerSpec,
    inputs: Sequence[str],
    passthrough: Sequence[str],
    batch_rows: int,
    layout: Mapping[str, int],
) -> tuple[Any, Any]:
    """One partition scored: its passthrough columns then outputs, on its index; and its
    drift counts as one row of `counts`."""
    import pandas as pd
    import pyarrow as pa

    scorer = scorer_for(spec)
    before = scorer.drift_counts()
    table = pa.Table.from_pandas(part[list(inputs)], preserve_index=False)
    scored = [scorer.score(batch) for batch in table.to_batches(max_chunksize=batch_rows) if batch.num_rows]
    schema = scorer.output_schema(table.schema)
    out = pa.Table.from_batches(scored, schema=schema).to_pandas()
    out.index = part.index
    frame = pd.concat([part[list(passthrough)], out], axis=1) if passthrough else out
    return frame, _counts_frame(layout, counts_since(scorer, before))


def _counts_frame(layout: Mapping[str, int], counts: Mapping[str, np.ndarray] | None) -> Any:
    """One partition's counts as a one-row frame (`counts` None: the empty meta)."""
    import pandas as pd

    names = [f"{section}[{i}]" for section, size in layout.items() for i in range(size)]
    if counts is None:
        data = np.zeros((0, len(names)), np.int64)
    elif names:
        data = np.concatenate([np.asarray(counts[s], dtype=np.int64) for s in layout])[None, :]
    else:
        data = np.zeros((1, 0), np.int64)
    return pd.DataFrame(data, columns=names)


def _meta(scorer: Any, meta: Any, passthrough: Sequence[str]) -> Any:
    """The scored DataFrame's empty frame: the passthrough columns' dtypes as they are in
    the input, the outputs' as an Arrow batch of them converts to pandas."""
    import pandas as pd

    empty = scorer.output_schema(names_schema(list(meta.columns))).empty_table()
    out = empty.drop_columns(list(passthrough)).to_pandas()
    out.index = meta.index
    return pd.concat([meta[list(passthrough)], out], axis=1) if passthrough else out
