"""`mlrt predict`: score files (Parquet, CSV, Arrow IPC) into a file, one record batch
at a time, so that memory is bounded by the batch size, not the data size.

The output is written into a temporary file beside its destination and renamed over
it only once every batch is in: an interrupted or failed run leaves the destination as
it was (absent, or the previous complete file), never a file that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Unpack

from ..data import dataset, expand_paths, format_of, read_batches
from ..errors import ConfigError, MlrtError
from .scoring import BatchScorer, ScorerSpec, ScoringOptions

__all__ = ["PredictSummary", "WRITE_FORMATS", "predict_files"]

#: The output formats, by name (a destination's suffix picks one when not given).
WRITE_FORMATS = ("parquet", "csv", "arrow")
DEFAULT_BATCH_ROWS = 65_536


@dataclass
class PredictSummary:
    """What a `predict_files` run did; `to_json()` is `mlrt predict --json`'s line."""

    output: str
    format: str
    rows: int
    batches: int
    seconds: float
    columns: list[str]
    drift: dict[str, Any] | None = None
    inputs: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def drift_tested(self) -> bool:
        """Whether the drift report judged the rows (at least `min_rows` of them)."""
        if self.drift is None:
            return False
        return self.drift["window"]["rows"] >= self.drift["thresholds"]["min_rows"]

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "format": self.format,
            "rows": self.rows,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "columns": self.columns,
            "drift_status": None if self.drift is None else self.drift["status"],
            # False when the run had fewer rows than min_rows: its status is then `ok` by the
            # server's sample-size guard, not because the rows were judged alike.
            "drift_tested": None if self.drift is None else self.drift_tested,
            # Each feature's PSI and status; the whole report is `drift` in Python.
            "drift": None
            if self.drift is None
            else {
                section: {f["name"]: {"psi": f["psi"], "status": f["status"]} for f in self.drift[section]}
                for section in ("features", "outputs")
            },
        }


def output_format(output: str | PathLike[str], fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in WRITE_FORMATS:
            raise ConfigError(
                f"the output format (--format, format=) must be one of {', '.join(WRITE_FORMATS)}, "
                f"got {fmt!r}"
            )
        return fmt
    try:
        kind = format_of(output)
    except ValueError:
        raise ConfigError(
            f"cannot tell the output format from {os.fspath(output)!r}: name it .parquet, .csv or "
            ".arrow, or give the format (--format, format=)"
        ) from None
    return {"ipc": "arrow", "tsv": "csv"}.get(kind, kind)


#: A CSV destination's compression, by its last suffix (as pyarrow reads them back).
_COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}


class _Writer:
    """Record batches into a temporary file, renamed over `output` on commit()."""

    def __init__(self, output: Path, fmt: str, schema: Any) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.output = output
        self._stream: Any = None  # a compressed CSV's stream, closed after its writer
        try:
            self._writer = self._open(fmt, schema)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def _open(self, fmt: str, schema: Any) -> Any:
        compression = _COMPRESSION.get(self.output.suffix.lower())
        if compression is not None and fmt != "csv":
            raise ConfigError(
                f"{self.output.name}: a {fmt} file compresses inside (name it without "
                f"{self.output.suffix}); only CSV output takes a compression suffix"
            )
        if fmt == "parquet":
            import pyarrow.parquet as pq
            import pyarrow.types as pat

            # Dictionary pages pay off for text and flags (labels, categories), not for
            # numbers: for float scores or unique ids they cost more time than a small
            # model takes, and make the file larger.
            dictionary = [
                f.name for f in schema
                if pat.is_string(f.type) or pat.is_large_string(f.type) or pat.is_boolean(f.type)
                or pat.is_binary(f.type) or pat.is_dictionary(f.type)
            ]  # fmt: skip
            return pq.ParquetWriter(str(self.tmp), schema, use_dictionary=dictionary)
        if fmt == "csv":
            import pyarrow as pa
            import pyarrow.csv as pacsv

            tab = ".tsv" in [x.lower() for x in self.output.suffixes]
            options = pacsv.WriteOptions(delimiter="\t" if tab else ",")
            if compression is None:
                return pacsv.CSVWriter(str(self.tmp), schema, write_options=options)
            # scored.csv.gz is read back as gzip (by mlrt, pandas, Spark): write it so.
            self._stream = pa.CompressedOutputStream(str(self.tmp), compression)
            return pacsv.CSVWriter(self._stream, schema, write_options=options)
        import pyarrow.ipc as ipc

        return ipc.new_file(str(self.tmp), schema)

    def write(self, batch: Any) -> None:
        self._writer.write_batch(batch)  # Parquet: one row group per batch

    def commit(self) -> None:
        self._writer.close()
        if self._stream is not None:
            self._stream.close()
        os.chmod(self.tmp, 0o644 & ~_umask())  # mkstemp makes it private
        os.replace(self.tmp, self.output)

    def abandon(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
        self.tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


Progress = Callable[[int, int | None, float], None]


def predict_files(
    model: str,
    data: str | PathLike[str] | Sequence[str | PathLike[str]],
    output: str | PathLike[str],
    *,
    format: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: Progress | None = None,
    require_profile: bool = False,
    **options: Unpack[ScoringOptions],
) -> PredictSummary:
    """Score `data` (files, folders or globs of Parquet, CSV or Arrow IPC) with `model`
    (anything `mlrt serve` takes) into `output`, `batch_rows` rows at a time. The
    `options` (profile, columns, outputs, passthrough, threads, registry) are ScorerSpec's;
    `threads` defaults to every CPU this process may use.

    The output holds the `passthrough` columns, then the model's outputs as columns
    (``label``, ``probabilities_<class>``...). With a profile (given, or the registry
    version's own), every row is counted for drift and the summary carries the report
    the server would give for these rows. `progress(rows, total_rows or None, seconds)`
    is called after every batch. `require_profile`: refuse to score (ConfigError) when no
    profile judges drift (`mlrt predict --fail-on-drift`). Raises MlrtError subclasses, FileNotFoundError or
    ValueError with a message naming the file or column; the destination is then left
    as it was.
    """
    if batch_rows < 1:
        raise ConfigError(f"batch_rows must be at least 1, got {batch_rows}")
    paths = expand_paths([data] if isinstance(data, (str, PathLike)) else data)
    out = Path(output)
    if not out.parent.is_dir():
        raise ConfigError(f"cannot write {out}: directory {out.parent} does not exist")
    fmt = output_format(out, format)
    if any(os.path.abspath(p) == os.path.abspath(out) for p in paths):
        raise ConfigError(f"{out} is also an input: write the predictions elsewhere")
    ds = dataset(paths)
    scorer = BatchScorer(ScorerSpec.of(model, options))
    if require_profile and scorer.profile is None:
        raise ConfigError(
            "no reference profile to judge drift by: give one (--profile REF.json, profile=), or "
            "register one with the model version (mlrt registry register ... --profile REF.json)"
        )
    read = scorer.check(ds.schema)
    if ds.format.default_extname == "csv":
        # Parsed as the model takes each column, not as the first rows suggest.
        ds = dataset(paths, column_types=scorer.column_types(ds.schema))
    schema = scorer.output_schema(ds.schema)
    total = _count_rows(ds)
    started = time.perf_counter()
    writer = _Writer(out, fmt, schema)
    done = {"rows": 0, "batches": 0}

    def write(batch: Any, feeds: Any, results: Any) -> None:
        writer.write(scorer.finish(batch, feeds, results))
        done["rows"] += batch.num_rows
        done["batches"] += 1
        if progress is not None:
            progress(done["rows"], total, time.perf_counter() - started)

    def fed() -> Iterator[tuple[Any, Any, int]]:
        start = 0
        for batch in _batches(ds, read, batch_rows):
            with _rows_said(start, batch.num_rows):
                yield batch, scorer.feeds(batch), start
            start += batch.num_rows

    def run(item: tuple[Any, Any, int]) -> tuple[Any, Any, Any]:
        batch, feeds, start = item
        with _rows_said(start, batch.num_rows):
            return batch, feeds, scorer.run(feeds)

    try:
        _pipeline(fed(), run, write)
        drift = scorer.drift_report()  # None without a profile; 0 rows: untested, not absent
        writer.commit()
    except BaseException:
        writer.abandon()
        raise
    return PredictSummary(
        output=str(out),
        format=fmt,
        rows=done["rows"],
        batches=done["batches"],
        seconds=time.perf_counter() - started,
        columns=list(schema.names),
        drift=drift,
        inputs=paths,
    )


_END = object()
#: Batches waiting between two stages: with the reader's own read-ahead, at most a
#: handful of batches are in memory whatever the data's size.
_QUEUED = 2


def _pipeline(source: Iterator[Any], middle: Callable[[Any], Any], sink: Callable[..., None]) -> None:
    """Run `source` (reading and gathering) and `sink` (counting and writing) on threads
    of their own beside `middle` (the model) on this one, joined by bounded queues.

    Arrow's readers and writers, numpy's copies, the drift kernels and onnxruntime all
    release the GIL, so the three overlap. The first error in any stage stops all three
    and is raised here, as is KeyboardInterrupt."""
    inbox: queue.Queue[Any] = queue.Queue(_QUEUED)
    outbox: queue.Queue[Any] = queue.Queue(_QUEUED)
    failed: list[BaseException] = []
    stop = threading.Event()

    def put(q: queue.Queue[Any], item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(q: queue.Queue[Any]) -> Any:
        while not stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return _END

    def produce() -> None:
        try:
            for item in source:
                if not put(inbox, item):
                    return
        except BaseException as exc:
            failed.append(exc)
            stop.set()
        finally:
            put(inbox, _END)

    def consume() -> None:
        try:
            while (item := get(outbox)) is not _END:
                sink(*item)
        except BaseException as exc:
            failed.append(exc)
            stop.set()

    reader = threading.Thread(target=produce, name="mlrt-predict-read", daemon=True)
    writer = threading.Thread(target=consume, name="mlrt-predict-write", daemon=True)
    reader.start()
    writer.start()
    try:
        while (item := get(inbox)) is not _END:
            if not put(outbox, middle(item)):
                break
        put(outbox, _END)
        writer.join()
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        reader.join()
        writer.join()
    if failed:
        raise failed[0]


@contextlib.contextmanager
def _rows_said(start: int, rows: int) -> Iterator[None]:
    """A batch's bad input or failing model says which rows of the data it was on (the
    data's rows in reading order, counted from 0): the place to look in a long job."""
    try:
        yield
    except MlrtError as exc:
        exc.args = (f"{exc} (rows {start:,} to {start + rows - 1:,} of the data)",)
        raise


def _batches(ds: Any, columns: list[str], batch_rows: int) -> Iterator[Any]:
    """The data's non-empty record batches of at most `batch_rows` rows, only the columns
    used, pulled one at a time (runtime/data.py)."""
    for batch in read_batches(ds, columns, batch_rows):
        if batch.num_rows:
            yield batch


def _count_rows(ds: Any) -> int | None:
    """The data's row count when the files' metadata says it (Parquet, Arrow); None for
    CSV, which would have to be read twice."""
    if ds.format.default_extname == "csv":
        return None
    try:
        return int(ds.count_rows())
    except Exception:  # pragma: no cover - an unreadable footer fails again, with a message
        return None
