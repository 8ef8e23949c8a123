"""The one reader of tabular data: Parquet, CSV/TSV and Arrow IPC files (or a folder of
them) through pyarrow.dataset, and the data users hand us in Python (numpy, mappings,
pyarrow tables) as named columns.  `mlrt profile`, `mlrt drift`, `mlrt predict`, the
load generator's payloads and the monitor all read here.

pyarrow is imported only when a file or an Arrow object is involved.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

Columns = dict[str, np.ndarray]

#: File suffix -> pyarrow.dataset format name.
FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".arrow": "ipc",
    ".feather": "ipc",
    ".ipc": "ipc",
}


def format_of(path: str | PathLike[str]) -> str:
    """The format a file's suffix names (``.csv.gz`` is CSV); ValueError when none does."""
    p = Path(path)
    for suffix in reversed([s.lower() for s in p.suffixes]):
        if suffix in FORMATS:
            return FORMATS[suffix]
    raise ValueError(f"cannot tell the format of {p}: use .parquet, .csv, .tsv or .arrow")


def _file_format(kind: str, column_types: Mapping[str, Any] | None = None) -> Any:
    import pyarrow.csv as pacsv
    import pyarrow.dataset as pads

    if kind in ("csv", "tsv"):
        # An empty CSV field is a missing value, not the level "".
        return pads.CsvFileFormat(
            parse_options=pacsv.ParseOptions(delimiter="\t" if kind == "tsv" else ","),
            convert_options=pacsv.ConvertOptions(
                strings_can_be_null=True, column_types=dict(column_types or {})
            ),
        )
    return kind


def dataset(
    path: str | PathLike[str] | Sequence[str | PathLike[str]],
    column_types: Mapping[str, Any] | None = None,
) -> Any:
    """A pyarrow Dataset over a file, over the data files of one format in a folder, or
    over several such files and folders (all of one format).

    `column_types` (Arrow types by column name) fix how CSV columns are parsed: otherwise
    a column's type is guessed from the first block (about 1 MB) of the first file, and a
    file whose first block leaves a column empty, or whose next file holds 29.0 where the
    first held only whole numbers, fails to parse further on."""
    if not isinstance(path, (str, PathLike)):
        paths = [Path(p) for p in path]
        if len(paths) != 1:
            return _dataset_of_many(paths, column_types)
        path = paths[0]
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no such data file: {p}")
    if p.is_dir():
        kinds = {format_of(f) for f in p.rglob("*") if f.is_file() and _has_format(f)}
        if len(kinds) != 1:
            found = ", ".join(sorted(kinds)) or "none"
            raise ValueError(f"{p}: a folder of data files needs one format, found {found}")
        kind = kinds.pop()
    else:
        kind = format_of(p)
    return _open(str(p), kind, column_types)


def _open(source: str | list[str], kind: str, column_types: Mapping[str, Any] | None = None) -> Any:
    import pyarrow as pa
    import pyarrow.dataset as pads

    try:
        ds = pads.dataset(source, format=_file_format(kind, column_types))
        index = _pandas_index(ds.schema)
        if index:
            kept = pa.schema([f for f in ds.schema if f.name not in index])
            ds = pads.dataset(source, format=_file_format(kind, column_types), schema=kept)
        return ds
    except pa.ArrowInvalid as exc:
        hint = (
            " (Arrow IPC is read as a file, e.g. pyarrow.feather.write_feather or "
            "pyarrow.ipc.new_file; streams are not)"
            if kind == "ipc"
            else ""
        )
        raise ValueError(f"cannot read the data: {exc}{hint}") from None


def _pandas_index(schema: Any) -> set[str]:
    """The columns in which pandas kept a DataFrame's unnamed index (`__index_level_0__`:
    what `to_parquet` writes for any index but a plain range, e.g. after a train/test
    split). They are row labels, not data: read as a column, the index became a feature
    of profiles and a column fed to models. A named index (`set_index("id")`) is a column
    like any other and stays."""
    try:
        meta = schema.pandas_metadata
    except Exception:  # metadata that is not pandas' JSON: no index to drop
        return set()
    names = meta.get("index_columns", []) if isinstance(meta, dict) else []
    return {n for n in names if isinstance(n, str) and n.startswith("__index_level_") and n in schema.names}


def _dataset_of_many(paths: Sequence[Path], column_types: Mapping[str, Any] | None = None) -> Any:
    files: list[str] = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"no such data file: {p}")
        if p.is_dir():
            files.extend(str(f) for f in sorted(p.rglob("*")) if f.is_file() and _has_format(f))
        else:
            files.append(str(p))
    kinds = {format_of(f) for f in files}
    if len(kinds) != 1:
        found = ", ".join(sorted(kinds)) or "none"
        raise ValueError(f"the data files need one format, found {found}")
    return _open(files, kinds.pop(), column_types)


def expand_paths(items: Sequence[str | PathLike[str]]) -> list[str]:
    """Files, folders and glob patterns (``data/*.parquet``, ``**``), in order, each
    named once; FileNotFoundError names what matched nothing."""
    import glob

    out: list[str] = []
    for item in items:
        text = os.fspath(item)
        if any(ch in text for ch in "*?["):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no file matches {text}")
            out.extend(matches)
        elif not os.path.exists(text):
            raise FileNotFoundError(f"no such data file or folder: {text}")
        else:
            out.append(text)
    return list(dict.fromkeys(out))


def _has_format(path: Path) -> bool:
    try:
        format_of(path)
    except ValueError:
        return False
    return True


def read_batches(ds: Any, columns: Sequence[str], batch_rows: int) -> Iterator[Any]:
    """A dataset's rows as record batches of at most `batch_rows` rows, only `columns`,
    in the dataset's schema, file by file in the dataset's order, each file in order.

    Pulled, not pushed: a file's next batch is decoded when asked for, so however slowly
    the caller consumes them, memory holds about one batch per file being read. (A
    dataset scanner reads ahead of a slow consumer without bound: peak memory grew with
    the file, bench/predict.py --rss.)"""
    import pyarrow as pa

    schema = pa.schema([ds.schema.field(name) for name in columns])
    kind = ds.format.default_extname
    for path in ds.files:
        try:
            for batch in _file_batches(path, kind, ds.format, schema, batch_rows):
                if not batch.num_rows:
                    continue
                if batch.schema != schema:
                    _check_castable(path, batch.schema, schema)
                    batch = pa.Table.from_batches([batch]).cast(schema).combine_chunks().to_batches()[0]
                for start in range(0, batch.num_rows, batch_rows):
                    yield batch.slice(start, batch_rows)
        except (pa.ArrowException, OSError) as exc:
            # A corrupt file, a CSV value that does not parse as its column's type, a file
            # whose columns differ from the others': say which file.
            raise ValueError(f"cannot read {path}: {exc}") from None


def _check_castable(path: str, have: Any, want: Any) -> None:
    """Refuse a file whose column holds text where the dataset's (its first file's) holds
    numbers: Arrow's cast would parse "61.8" into 61.8 silently, so whether text feeds a
    numeric input would depend on which file came first."""
    import pyarrow.types as pat

    def text(t: Any) -> bool:
        return bool(pat.is_string(t) or pat.is_large_string(t) or pat.is_binary(t) or pat.is_large_binary(t))

    def number(t: Any) -> bool:
        return bool(pat.is_integer(t) or pat.is_floating(t) or pat.is_decimal(t) or pat.is_boolean(t))

    for f in have:
        target = want.field(f.name).type
        if text(f.type) and number(target):
            raise ValueError(
                f"cannot read {path}: column '{f.name}' holds text ({f.type}) in this file and "
                f"numbers ({target}) in the data's first file; convert it where the files are written"
            )


def _file_batches(path: str, kind: str, file_format: Any, schema: Any, batch_rows: int) -> Iterator[Any]:
    columns = list(schema.names)
    if kind == "parquet":
        import pyarrow.parquet as pq

        f = pq.ParquetFile(path, pre_buffer=False)
        try:
            yield from f.iter_batches(batch_size=batch_rows, columns=columns)
        finally:
            f.reader.close()  # not left to the garbage collector: a long job opens many
    elif kind == "csv":
        import pyarrow.csv as pacsv

        convert = pacsv.ConvertOptions(
            strings_can_be_null=True,  # as in _file_format: an empty field is missing
            include_columns=columns,
            column_types={f.name: f.type for f in schema},
        )
        reader = pacsv.open_csv(path, parse_options=file_format.parse_options, convert_options=convert)
        yield from reader
    else:  # an Arrow IPC file (Feather v2)
        import pyarrow as pa

        with pa.ipc.open_file(path) as f:
            for i in range(f.num_record_batches):
                yield f.get_batch(i).select(columns)


def unknown_columns(names: Sequence[str], available: Sequence[str]) -> str:
    """`names` (columns the data lacks) for an error message, with a hint when one of them
    is a comma-separated list of columns the data has: the commands take column names
    separated by spaces (`--passthrough id ts`, not `id,ts`)."""
    have = set(available)
    listed = [n for n in names if "," in n and all(p.strip() in have for p in n.split(","))]
    if not listed:
        return str(list(names))
    spaced = " ".join(p.strip() for p in listed[0].split(","))
    return f"{list(names)} (column names are separated by spaces: {spaced}, not {listed[0]})"


# pyarrow's message when a CSV value does not parse as the type guessed for its column.
_CSV_GUESS_FAILED = re.compile(
    r"In CSV column #(\d+): .*?CSV conversion error to ([^:]+): invalid value '(.*)'", re.S
)


def read_table(path: str | PathLike[str] | Sequence[str | PathLike[str]]) -> Any:
    """The whole of a Parquet, CSV or Arrow IPC file (or folder, or several) as one
    pyarrow Table.

    With no model to say how a CSV column is read, Arrow guesses its type from the first
    block (about 1 MB): a column empty there (null) or of whole numbers there (int64) that
    holds 0.54 further on failed the whole read. Such a column is read again as numbers
    (float64), or as text when the value is not a number: the file is read once more per
    column guessed wrong, which only happens where the guess was wrong."""
    import pyarrow as pa

    types: dict[str, Any] = {}
    while True:
        ds = dataset(path, types or None)
        try:
            return ds.to_table()
        except pa.ArrowInvalid as exc:
            found = _CSV_GUESS_FAILED.search(str(exc))
            names = ds.schema.names
            if found is None or int(found.group(1)) >= len(names):
                raise
            name = names[int(found.group(1))]
            if types.get(name) == pa.string():
                raise  # nothing wider to read it as
            number = types.get(name) != pa.float64() and _is_number(found.group(3))
            types[name] = pa.float64() if number else pa.string()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def to_columns(data: object, names: Sequence[str] | None = None) -> Columns:
    """Named 1-D columns from a 2-D array, a mapping, a pyarrow Table/RecordBatch or a path."""
    if isinstance(data, (str, PathLike)):
        data = read_table(data)
    if isinstance(data, Mapping):
        cols = {str(k): _column_array(v) for k, v in data.items()}
    elif hasattr(data, "columns") and hasattr(data, "dtypes") and hasattr(data, "iloc"):
        # A pandas DataFrame: by its column names (or `names`), each column as its own
        # array (read as one 2-D array, it had only the names f0, f1, ...).
        frame: Any = data
        keys = list(frame.columns) if names is None else list(names)
        if len(keys) != frame.shape[1]:
            raise ValueError(f"{len(keys)} names for {frame.shape[1]} columns")
        cols = {str(k): _series_array(frame.iloc[:, i]) for i, k in enumerate(keys)}
    elif hasattr(data, "column_names") and hasattr(data, "column"):
        cols = {
            str(name): arrow_to_numpy(data.column(i))  # type: ignore[attr-defined]
            for i, name in enumerate(data.column_names)  # type: ignore[attr-defined]
        }
    else:
        arr = np.asarray(data)
        if arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2:
            raise ValueError(f"expected a 2-D array (rows x features), got {arr.ndim}-D")
        if names is None:
            names = [f"f{i}" for i in range(arr.shape[1])]
        if len(names) != arr.shape[1]:
            raise ValueError(f"{len(names)} names for {arr.shape[1]} columns")
        # One transposing copy makes every column contiguous: per-column work
        # (partition, hashing) then never re-reads a C-order matrix per column.
        cols_t = np.ascontiguousarray(arr.T)
        return {str(n): cols_t[i] for i, n in enumerate(names)}
    lengths = {v.shape[0] for v in cols.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns differ in length: {sorted(lengths)}")
    return cols


def _series_array(series: Any) -> np.ndarray:
    """A pandas column as numpy: numbers of pandas' nullable or Arrow dtypes as numbers
    (float64 with NaN where one is missing), their text and categories as objects (None
    where missing, not pd.NA, which reads as the level "<NA>"), numpy columns as they are."""
    dtype = series.dtype
    if not isinstance(dtype, np.dtype) and getattr(dtype, "kind", "O") in "iuf":
        if series.isna().any():
            return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan))
        return np.asarray(series.to_numpy(dtype=dtype.numpy_dtype))
    if not isinstance(dtype, np.dtype):  # string, category, Arrow text: None where missing
        return np.asarray(series.to_numpy(dtype=object, na_value=None))
    return _column_array(series)


def _column_array(values: object) -> np.ndarray:
    if hasattr(values, "to_numpy") and hasattr(values, "null_count"):
        return arrow_to_numpy(values)
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"each column must be 1-D, got shape {arr.shape}")
    return arr


def arrow_to_numpy(column: object) -> np.ndarray:
    """An Arrow column as numpy: numbers stay numbers (nulls become NaN; decimals float64),
    booleans int8, everything else an object array of Python values (None for nulls)."""
    import pyarrow as pa
    import pyarrow.types as pat

    col = column
    if isinstance(col, pa.ChunkedArray) and pat.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    elif isinstance(col, pa.Array) and pat.is_dictionary(col.type):
        col = col.dictionary_decode()
    typ = col.type  # type: ignore[attr-defined]
    if pat.is_decimal(typ):
        # Decimal columns (Parquet and Spark DecimalType, a database's NUMERIC) are numbers:
        # as float64, as pandas reads them for arithmetic, not Python Decimal objects ("text").
        col = col.cast(pa.float64())
        typ = col.type  # type: ignore[attr-defined]
    if pat.is_integer(typ) or pat.is_floating(typ) or pat.is_boolean(typ):
        if col.null_count:  # type: ignore[attr-defined]
            # Arrow nulls in a numeric column become NaN, the missing bucket.
            col = col.cast(pa.float64())
        elif pat.is_boolean(typ):
            col = col.cast(pa.int8())
        return np.asarray(col.to_numpy(zero_copy_only=False))  # type: ignore[attr-defined]
    if pat.is_binary(typ) or pat.is_large_binary(typ):
        col = col.cast(pa.string())
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=object)  # type: ignore[attr-defined]


def is_numeric(column: np.ndarray) -> bool:
    return column.dtype.kind in "fiub"
