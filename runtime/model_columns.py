"""How a table's columns feed a model's inputs, and how its outputs become columns again.

`mlrt profile --model`, `mlrt predict` and the Spark and Dask scorers all map data to a
model here, and the drift monitor maps tensors back to the same names
(runtime/monitor/drift.py):

- every input is one column ([-1] or [-1, 1]) named like a data column: by name;
- otherwise the given columns, in their order, fill the inputs' columns in signature
  order (the usual case: one [-1, n_features] input).

Numeric columns are gathered into each input in the model's datatype, converted by the
one rule (runtime/convert.py): a float64 column feeds an FP32 input; a float column
never feeds an integer one.

Outputs are named after their columns: ``label`` for a one-column output,
``probabilities[0]``, ``probabilities[1]``... for a [-1, k] one (`column_names`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._native._columns import interleave
from .convert import convert
from .datatypes import numpy_dtype, v2_datatype
from .errors import ConfigError, InvalidInput
from .monitor.drift import column_names

__all__ = [
    "by_name", "feeding_pairs", "map_inputs", "output_columns", "profile_columns", "tensor_from_columns"
]


def by_name(specs: Sequence[Any], columns: Sequence[str]) -> bool:
    """Whether every input is one column named like one of `columns`."""
    one_column = all(len(s.shape) == 1 or (len(s.shape) == 2 and s.shape[1] == 1) for s in specs)
    names = set(columns)
    return one_column and all(s.name in names for s in specs)


def input_widths(specs: Sequence[Any]) -> list[int]:
    """How many data columns each input takes when columns fill inputs by position."""
    widths = []
    for s in specs:
        if len(s.shape) == 1 or (len(s.shape) == 2 and s.shape[1] >= 1):
            widths.append(1 if len(s.shape) == 1 else s.shape[1])
        else:
            raise ConfigError(
                f"input '{s.name}' has shape {list(s.shape)}; data columns map to [-1] or [-1, k] inputs only"
            )
    return widths


def map_inputs(
    specs: Sequence[Any], columns: Mapping[str, np.ndarray], hint: str = ""
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The model's input tensors built from `columns`, and the spec each column feeds.

    `hint` ends the message when the columns do not fit the inputs (how to choose them).
    """
    names = list(columns)
    pairs = feeding_pairs(specs, names)
    if pairs is None:
        want = ", ".join(f"'{s.name}' {list(s.shape)}" for s in specs)
        raise ConfigError(
            f"the model's inputs ({want}) take {sum(input_widths(specs))} columns but the data has "
            f"{len(names)}: {names[:8]}{' ...' if len(names) > 8 else ''}{hint}"
        )
    fed: dict[str, list[str]] = {s.name: [] for s in specs}
    for name, s in pairs:
        fed[s.name].append(name)
    feeds = {s.name: tensor_from_columns(fed[s.name], [columns[n] for n in fed[s.name]], s) for s in specs}
    return feeds, dict(pairs)


def known_columns(model: Any, available: Sequence[str]) -> list[str] | None:
    """The data columns a model names itself (a scikit-learn estimator fitted on a
    DataFrame knows its `feature_names_in_`), in its order; None when it names none. A
    column it names that the data lacks is an error: feeding another in its place by
    position would score the wrong values without a word."""
    names = getattr(model, "feature_names", None)
    if not names:
        return None
    have = set(available)
    missing = [n for n in names if n not in have]
    if missing:
        raise ConfigError(
            f"the model was fitted on columns {list(names)}; the data has no {missing} "
            f"(it has {list(available)[:12]})"
        )
    return list(names)


def feeding_pairs(specs: Sequence[Any], columns: Sequence[str]) -> list[tuple[str, Any]] | None:
    """(data column, the input it feeds) for `columns` feeding `specs`: by name when every
    input is one column named like one of them, else in order filling each input's columns;
    None when the count does not fill the inputs."""
    if by_name(specs, columns):
        return [(s.name, s) for s in specs]
    widths = input_widths(specs)
    if sum(widths) != len(columns):
        return None
    pairs: list[tuple[str, Any]] = []
    start = 0
    for s, w in zip(specs, widths, strict=True):
        pairs += [(name, s) for name in columns[start : start + w]]
        start += w
    return pairs


def profile_columns(features: Sequence[str], width: int, available: Sequence[str]) -> list[str] | None:
    """A reference profile's features, in its order, as the columns that feed a model whose
    inputs take `width` columns: the columns `mlrt profile --model` fitted them from, so data
    with its columns in another order, or with ids beside them, feeds the model as it did
    then. None when the profile does not fill the inputs, or names none of the data's
    columns (a profile of the model's tensors, `X[0]`...). A profile that names some of the
    data's columns but not all is an error: the data is the profile's kind short of a
    feature, and feeding every column by position would put another in its place silently."""
    names = list(features)
    if len(names) != width:
        return None
    have = set(available)
    missing = [n for n in names if n not in have]
    if not missing:
        return names
    if len(missing) == len(names):
        return None
    raise ConfigError(
        f"the profile's features {names[:12]}{' ...' if len(names) > 12 else ''} feed the model "
        f"in its order; the data has no {missing[:8]} (it has {list(available)[:12]}): give the "
        "missing column(s), or name the columns feeding the model in order (--columns, columns=)"
    )


def tensor_from_columns(names: Sequence[str], cols: Sequence[np.ndarray], spec: Any) -> np.ndarray:
    """One input tensor from its data columns, in the columns' own dtype (check_inputs
    converts it to the model's datatype by the one rule, runtime/convert.py)."""
    if spec.datatype == "BYTES":
        arr = np.empty((len(cols[0]), len(cols)), dtype=object)
        for j, c in enumerate(cols):
            arr[:, j] = c
    else:
        # Each column in the model's datatype by the one rule (a float64 CSV column into
        # an FP32 input; already so, as Parquet's float32 usually is, it is not copied),
        # then all of them into the rows of one matrix by the native copy, which walks the
        # rows in cache-sized blocks: a strided copy column by column took a small
        # model's whole run time (native/_columns.pyx).
        dtype = numpy_dtype(spec.datatype)
        arr = np.empty((len(cols[0]), len(cols)), dtype=dtype)
        ready = []
        for name, c in zip(names, cols, strict=True):
            if c.dtype.kind == "O" and _all_missing(c):
                # A column with no value at all (pyarrow reads an empty CSV column as the
                # null type): every value is missing, NaN to a numeric input.
                c = np.full(len(c), np.nan)
            if c.dtype.kind not in "fiub":
                raise ConfigError(
                    f"column '{name}' holds text ({_text_values(c)}) but feeds input "
                    f"'{spec.name}', which is {spec.datatype}"
                )
            if c.dtype.kind == "f" and dtype.kind in "iub" and (holes := int(np.isnan(c).sum())):
                # An integer column with nulls is read as float with NaN: say so, not "a float".
                raise InvalidInput(
                    f"column '{name}' has {holes} missing value(s), which input '{spec.name}' "
                    f"({spec.datatype}) cannot hold: fill them first, or feed a float input"
                )
            try:
                c = convert(name, c, v2_datatype(c.dtype), spec.datatype)
            except InvalidInput as exc:
                raise InvalidInput(f"column '{name}' cannot feed input '{spec.name}': {exc}") from None
            ready.append(np.ascontiguousarray(c, dtype=dtype))
        interleave(ready, arr)
    return arr.reshape(-1) if len(spec.shape) == 1 else arr


def _all_missing(c: np.ndarray) -> bool:
    return all(v is None for v in c.tolist())


def _text_values(c: np.ndarray, show: int = 3) -> str:
    """What makes a column text, for its error: the values that are not numbers, not the
    column's first value (which may well be one)."""
    bad = []
    count = 0
    for v in c.tolist():
        try:
            float(v)
        except (TypeError, ValueError):
            count += 1
            if len(bad) < show:
                bad.append(v)
    if not count:  # every value reads as a number: the file's type says text
        return f"numbers stored as text, e.g. {c[:1].tolist()}"
    return f"{count} of {len(c)} values are not numbers, e.g. {bad}"


def output_columns(specs: Sequence[Any], results: Mapping[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(column name, 1-D values) for every column of the [-1] / [-1, k] outputs in
    `specs`, in signature order; outputs of other shapes are left out."""
    out: list[tuple[str, np.ndarray]] = []
    for s in specs:
        if len(s.shape) not in (1, 2):
            continue  # not one row per input row
        arr = np.asarray(results[s.name])
        arr = arr.reshape(arr.shape[0], -1)
        for k, name in enumerate(column_names([(s.name, [-1, arr.shape[1]])])):
            out.append((name, arr[:, k]))
    return out
