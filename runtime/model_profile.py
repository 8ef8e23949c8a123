"""A reference profile fitted for a model: its inputs as the model receives them (the
model's dtypes) and its outputs on the same rows.  `mlrt profile DATA --model MODEL`.

Data columns map to the model's inputs, and outputs to named columns, by the rule of
runtime/model_columns.py (the monitor maps them back the same way): here the data's
columns, in file order and without --exclude'd ones. Integer, boolean and text outputs
(class labels) are categorical, floating ones numeric.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import Columns, to_columns, unknown_columns
from .datatypes import numpy_dtype
from .errors import ConfigError
from .model_columns import known_columns, map_inputs, output_columns
from .monitor.profile import Profile

#: Rows per model call while the outputs are computed.
BATCH_ROWS = 8192


def fit_for_model(
    model: Any,
    data: object,
    *,
    bins: int = 10,
    categorical: Iterable[str] = (),
    exclude: Iterable[str] = (),
    outputs: bool = True,
) -> Profile:
    """Profile `data` as `model` (a `runtime.load` handle) receives it, with its outputs.

    Raises ConfigError when the data's columns cannot feed the model's inputs.
    """
    frame = model_frame(model, data, exclude=exclude, outputs=outputs)
    return Profile.fit(
        frame.inputs,
        bins=bins,
        categorical=sorted(frame.categorical | set(categorical)),
        outputs=frame.outputs if outputs else None,
        dtypes=frame.dtypes,
        output_dtypes=frame.output_dtypes or None,
    )


@dataclass
class ModelFrame:
    """A data set as a model sees it: the columns that feed its inputs, its outputs on
    them (named like the monitor names them), and the dtype of each."""

    inputs: Columns
    outputs: Columns
    dtypes: dict[str, np.dtype]
    output_dtypes: dict[str, np.dtype]
    categorical: set[str]


def model_frame(model: Any, data: object, *, exclude: Iterable[str] = (), outputs: bool = True) -> ModelFrame:
    """Map `data`'s columns to `model`'s inputs and, with `outputs`, run the model on them."""
    skip = set(exclude)
    every = to_columns(data)
    unknown = skip - set(every)
    if unknown:
        listed = unknown_columns(sorted(unknown), list(every))
        raise ConfigError(f"--exclude names no such column(s): {listed}")
    columns = {k: v for k, v in every.items() if k not in skip}
    if not columns:
        raise ConfigError("no columns left to profile")
    hint = (
        "; leave out the target and id columns with --exclude, or name one-column inputs after data columns"
    )
    named = known_columns(model, list(columns))
    if named is not None:
        columns = {name: columns[name] for name in named}
    feeds, features = map_inputs(model.inputs, columns, hint)
    dtypes = {}
    cats = set()
    for name, spec in features.items():
        if spec.datatype == "BYTES":
            cats.add(name)
        else:
            dtypes[name] = numpy_dtype(spec.datatype)
    out_cols: Columns = {}
    out_dtypes: dict[str, np.dtype] = {}
    if outputs:
        out_cols, out_dtypes, out_cats = _outputs(model, feeds)
        cats |= out_cats
    return ModelFrame({name: columns[name] for name in features}, out_cols, dtypes, out_dtypes, cats)


def _outputs(model: Any, feeds: Mapping[str, np.ndarray]) -> tuple[Columns, dict[str, np.dtype], set[str]]:
    n = next(iter(feeds.values())).shape[0]
    parts: dict[str, list[np.ndarray]] = {s.name: [] for s in model.outputs}
    for start in range(0, n, BATCH_ROWS):
        batch = {k: v[start : start + BATCH_ROWS] for k, v in feeds.items()}
        result = model.predict(batch)
        for name in parts:
            parts[name].append(np.asarray(result[name]))
    results = {name: np.concatenate(p) if p else np.zeros(0) for name, p in parts.items()}
    columns: Columns = {}
    dtypes: dict[str, np.dtype] = {}
    cats: set[str] = set()
    for name, col in output_columns(model.outputs, results):
        columns[name] = col
        if col.dtype.kind in "iubOSU":
            cats.add(name)
        else:
            dtypes[name] = col.dtype
    return columns, dtypes, cats
