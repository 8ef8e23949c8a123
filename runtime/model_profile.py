"""A reference profile fitted for a model: its inputs as the model receives them (the
model's dtypes) and its outputs on the same rows.  `mlrt profile DATA --model MODEL`.

How data columns map to the model's inputs (the monitor maps them back the same way,
runtime/monitor/drift.py):
- every input is one column ([-1] or [-1, 1]) named like a data column: by name;
- otherwise the data's columns, in file order and without --exclude'd ones, fill the
  inputs' columns in signature order (the usual case: one [-1, n_features] input).
Outputs are named after their columns: ``label`` for a one-column output,
``probabilities[0]``, ``probabilities[1]``... for a [-1, k] one; integer, boolean and
text outputs (class labels) are categorical, floating ones numeric.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import Columns, to_columns
from .datatypes import numpy_dtype
from .errors import ConfigError
from .monitor.drift import column_names
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


def model_frame(
    model: Any, data: object, *, exclude: Iterable[str] = (), outputs: bool = True
) -> ModelFrame:
    """Map `data`'s columns to `model`'s inputs and, with `outputs`, run the model on them."""
    skip = set(exclude)
    every = to_columns(data)
    unknown = skip - set(every)
    if unknown:
        raise ConfigError(f"--exclude names no such column(s): {sorted(unknown)}")
    columns = {k: v for k, v in every.items() if k not in skip}
    if not columns:
        raise ConfigError("no columns left to profile")
    feeds, features = _map_inputs(model.inputs, columns)
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


def _map_inputs(specs: Sequence[Any], columns: Columns) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The model's input tensors built from the data, and the spec each profiled column feeds."""
    one_column = all(len(s.shape) == 1 or (len(s.shape) == 2 and s.shape[1] == 1) for s in specs)
    if one_column and all(s.name in columns for s in specs):
        feeds = {s.name: _tensor([columns[s.name]], s) for s in specs}
        return feeds, {s.name: s for s in specs}
    widths = []
    for s in specs:
        if len(s.shape) == 1 or (len(s.shape) == 2 and s.shape[1] >= 1):
            widths.append(1 if len(s.shape) == 1 else s.shape[1])
        else:
            raise ConfigError(
                f"input '{s.name}' has shape {list(s.shape)}; profiles map data columns to [-1] or "
                "[-1, k] inputs only"
            )
    names = list(columns)
    if sum(widths) != len(names):
        want = ", ".join(f"'{s.name}' {list(s.shape)}" for s in specs)
        raise ConfigError(
            f"the model's inputs ({want}) take {sum(widths)} columns but the data has {len(names)}: "
            f"{names[:8]}{' ...' if len(names) > 8 else ''}; leave out the target and id columns "
            "with --exclude, or name one-column inputs after data columns"
        )
    feeds: dict[str, np.ndarray] = {}
    features: dict[str, Any] = {}
    start = 0
    for s, w in zip(specs, widths, strict=True):
        part = names[start : start + w]
        start += w
        feeds[s.name] = _tensor([columns[n] for n in part], s)
        features.update({n: s for n in part})
    return feeds, features


def _tensor(cols: Sequence[np.ndarray], spec: Any) -> np.ndarray:
    if spec.datatype == "BYTES":
        arr = np.empty((len(cols[0]), len(cols)), dtype=object)
        for j, c in enumerate(cols):
            arr[:, j] = c
    else:
        for c in cols:
            if c.dtype.kind not in "fiub":
                raise ConfigError(
                    f"input '{spec.name}' is {spec.datatype} but a column feeding it holds text "
                    f"(e.g. {c[:1].tolist()}); --exclude it or mark the model input BYTES"
                )
        arr = np.column_stack(cols)
    return arr.reshape(-1) if len(spec.shape) == 1 else arr


def _outputs(model: Any, feeds: Mapping[str, np.ndarray]) -> tuple[Columns, dict[str, np.dtype], set[str]]:
    n = next(iter(feeds.values())).shape[0]
    parts: dict[str, list[np.ndarray]] = {s.name: [] for s in model.outputs}
    for start in range(0, n, BATCH_ROWS):
        batch = {k: v[start : start + BATCH_ROWS] for k, v in feeds.items()}
        result = model.predict(batch)
        for name in parts:
            parts[name].append(np.asarray(result[name]))
    columns: Columns = {}
    dtypes: dict[str, np.dtype] = {}
    cats: set[str] = set()
    for s in model.outputs:
        if len(s.shape) not in (1, 2):
            continue  # not a per-row output: nothing to profile
        arr = np.concatenate(parts[s.name]) if parts[s.name] else np.zeros(0)
        arr = arr.reshape(arr.shape[0], -1)
        for k, name in enumerate(column_names([(s.name, [-1, arr.shape[1]])])):
            columns[name] = arr[:, k]
            if arr.dtype.kind in "iubOSU":
                cats.add(name)
            else:
                dtypes[name] = arr.dtype
    return columns, dtypes, cats
