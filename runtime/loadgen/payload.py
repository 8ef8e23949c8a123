"""Request bodies for the load generator: inputs from a model's V2 metadata (random) or
from a data file, encoded once, before the run, as V2 JSON, V2 binary or msgpack.

Random inputs follow the metadata: a -1 in the first dimension becomes the batch size,
any other -1 must be given with `shapes` ({"input": (1, 20)} style overrides, first
dimension included or not). Floats are standard normal, integers uniform in [0, 10),
BOOL fair coins, BYTES short ASCII words.

Data files: `.npy` (one input: rows along the first axis), `.npz` (one array per input
name), `.parquet` and `.csv` (through pyarrow): columns named like the model's inputs
are those inputs (a list column gives the inner dimensions); otherwise, for a model with
one input, all numeric columns side by side make its rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..datatypes import V2_TO_NUMPY
from ..errors import InvalidInput
from ..formats import msgpack_dumps, tensor_to_msgpack, v2_bytes_payload
from .connection import request_bytes

__all__ = [
    "ENCODINGS",
    "InputSpec",
    "build_requests",
    "encode_body",
    "file_batches",
    "input_specs",
    "random_batches",
]

ENCODINGS = ("json", "binary", "msgpack")
MAX_BODIES = 256  # distinct pre-encoded requests cycled through during a run


class PayloadError(ValueError):
    """The model's metadata or a data file cannot make requests (message says why)."""


@dataclass(frozen=True)
class InputSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]


def input_specs(metadata: Mapping[str, Any]) -> list[InputSpec]:
    """The inputs of a V2 model metadata document."""
    raw = metadata.get("inputs")
    if not isinstance(raw, list) or not raw:
        raise PayloadError(f"the model metadata lists no inputs: {json.dumps(metadata)[:200]}")
    specs = []
    for item in raw:
        try:
            specs.append(
                InputSpec(str(item["name"]), str(item["datatype"]), tuple(int(d) for d in item["shape"]))
            )
        except (KeyError, TypeError, ValueError):
            raise PayloadError(f"malformed input in the model metadata: {item!r}") from None
    return specs


def _concrete_shape(spec: InputSpec, batch_size: int, override: Sequence[int] | None) -> tuple[int, ...]:
    shape = list(spec.shape)
    if override is not None:
        o = list(override)
        if len(o) == len(shape) - 1:
            o = [batch_size, *o]
        if len(o) != len(shape):
            raise PayloadError(
                f"--shape for '{spec.name}' has {len(o)} dims; the model has {list(spec.shape)}"
            )
        shape = o
    if shape and shape[0] == -1:
        shape[0] = batch_size
    if any(d < 0 for d in shape):
        raise PayloadError(
            f"input '{spec.name}' has shape {list(spec.shape)} with a variable dimension past the "
            f"first; give it with --shape {spec.name}=D,D,..."
        )
    return tuple(shape)


def _random(spec: InputSpec, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    dt = spec.datatype
    if dt == "BYTES":
        words = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon"]
        flat = np.empty(math.prod(shape), dtype=object)
        flat[:] = [words[i] for i in rng.integers(0, len(words), flat.size)]
        return flat.reshape(shape)
    if dt not in V2_TO_NUMPY:
        raise PayloadError(f"input '{spec.name}': datatype {dt} is not supported by mlrt bench")
    dtype = V2_TO_NUMPY[dt]
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(0, 10, shape).astype(dtype)


def random_batches(
    specs: Sequence[InputSpec],
    batch_size: int,
    n: int,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    shapes = shapes or {}
    unknown = set(shapes) - {s.name for s in specs}
    if unknown:
        raise PayloadError(
            f"--shape names unknown inputs {sorted(unknown)}; the model has {[s.name for s in specs]}"
        )
    concrete = {s.name: _concrete_shape(s, batch_size, shapes.get(s.name)) for s in specs}
    return [{s.name: _random(s, concrete[s.name], rng) for s in specs} for _ in range(n)]


# -- data files ------------------------------------------------------------------------------


def _read_columns(path: Path, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """All rows of a data file, as one array per model input."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if len(specs) != 1:
            raise PayloadError(
                f"{path.name}: a .npy file feeds one input; the model has {len(specs)} (use .npz)"
            )
        return {specs[0].name: np.load(path, allow_pickle=False)}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            missing = [s.name for s in specs if s.name not in z.files]
            if missing:
                raise PayloadError(f"{path.name} has no arrays for inputs {missing} (it has {z.files})")
            return {s.name: z[s.name] for s in specs}
    # Tabular files go through the one reader every command uses (runtime/data.py).
    from ..data import format_of, read_table
    from ..formats import column_to_tensor

    try:
        format_of(path)
    except ValueError:
        raise PayloadError(
            f"unsupported data file {path.name}: use .npy, .npz, .parquet, .csv or .arrow"
        ) from None
    table = read_table(path)
    names = set(table.column_names)
    if all(s.name in names for s in specs):
        # A null number would go as NaN (a request may carry one): a load test of rows the
        # user never meant to send, so it is refused here, by column, as before.
        for s in specs:
            nulls = table.column(s.name).null_count
            if nulls and s.datatype != "BYTES":
                raise PayloadError(
                    f"{path.name}: column '{s.name}': {nulls} null values; drop or fill those rows "
                    "for a load test"
                )
        try:
            return {
                s.name: column_to_tensor(f"column '{s.name}'", table.column(s.name).combine_chunks())[0]
                for s in specs
            }
        except InvalidInput as exc:
            raise PayloadError(f"{path.name}: {exc}; drop or fill those rows for a load test") from None
    if len(specs) != 1:
        missing = [s.name for s in specs if s.name not in names]
        raise PayloadError(f"{path.name} has no columns for inputs {missing}")
    cols = [np.asarray(table.column(c).to_numpy()) for c in table.column_names]
    cols = [c for c in cols if c.dtype.kind in "biuf"]
    if not cols:
        raise PayloadError(f"{path.name} has no numeric columns")
    return {specs[0].name: np.stack(cols, axis=1)}


def file_batches(
    path: str | Path, specs: Sequence[InputSpec], batch_size: int, max_batches: int = MAX_BODIES
) -> list[dict[str, np.ndarray]]:
    """Consecutive `batch_size`-row slices of a data file, cast to the model's datatypes."""
    path = Path(path)
    if not path.exists():
        raise PayloadError(f"data file {path} does not exist")
    columns = _read_columns(path, specs)
    rows = {len(a) for a in columns.values()}
    if len(rows) != 1:
        raise PayloadError(f"{path.name}: inputs have different row counts {sorted(rows)}")
    (n_rows,) = rows
    if n_rows < batch_size:
        raise PayloadError(f"{path.name} has {n_rows} rows, fewer than the batch size {batch_size}")
    out = []
    for start in range(0, n_rows - batch_size + 1, batch_size):
        batch = {}
        for s in specs:
            a = columns[s.name][start : start + batch_size]
            if a.ndim == len(s.shape) - 1 and s.shape[-1] == 1:
                a = a.reshape(*a.shape, 1)  # a file's column for a [-1, 1] input
            if s.datatype != "BYTES":
                a = a.astype(V2_TO_NUMPY[s.datatype], copy=False)
            inner = s.shape[1:]
            if len(inner) == a.ndim - 1 and any(d not in (-1, a.shape[i + 1]) for i, d in enumerate(inner)):
                raise PayloadError(
                    f"{path.name}: input '{s.name}' rows have shape {list(a.shape[1:])}; "
                    f"the model wants {list(inner)}"
                )
            batch[s.name] = a
        out.append(batch)
        if len(out) >= max_batches:
            break
    return out


# -- encoding --------------------------------------------------------------------------------


def _json_data(arr: np.ndarray, datatype: str) -> list[Any]:
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)]
    return arr.reshape(-1).tolist()


def encode_body(
    inputs: Mapping[str, np.ndarray], datatypes: Mapping[str, str], encoding: str
) -> tuple[bytes, dict[str, str]]:
    """(body, extra headers) of one infer request."""
    if encoding == "json":
        doc = {
            "inputs": [
                {
                    "name": n,
                    "shape": list(a.shape),
                    "datatype": datatypes[n],
                    "data": _json_data(a, datatypes[n]),
                }
                for n, a in inputs.items()
            ]
        }
        return json.dumps(doc, separators=(",", ":")).encode(), {"Content-Type": "application/json"}
    if encoding == "binary":
        # What tritonclient sends by default: binary inputs, all outputs asked for in binary.
        parts, items = [], []
        for n, a in inputs.items():
            dt = datatypes[n]
            raw = v2_bytes_payload(a) if dt == "BYTES" else np.ascontiguousarray(a, V2_TO_NUMPY[dt]).tobytes()
            parts.append(raw)
            items.append(
                {
                    "name": n,
                    "shape": list(a.shape),
                    "datatype": dt,
                    "parameters": {"binary_data_size": len(raw)},
                }
            )
        header = json.dumps(
            {"inputs": items, "parameters": {"binary_data_output": True}}, separators=(",", ":")
        ).encode()
        return header + b"".join(parts), {"Inference-Header-Content-Length": str(len(header))}
    if encoding == "msgpack":
        doc = {"inputs": {n: tensor_to_msgpack(a, datatypes[n]) for n, a in inputs.items()}}
        return msgpack_dumps(doc), {"Content-Type": "application/msgpack"}
    raise PayloadError(f"unknown encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")


def build_requests(
    batches: Sequence[Mapping[str, np.ndarray]],
    specs: Sequence[InputSpec],
    encoding: str,
    path: str,
    host: str,
) -> list[bytes]:
    """Complete HTTP requests (line, headers, body) for each batch."""
    datatypes = {s.name: s.datatype for s in specs}
    out = []
    for b in batches:
        body, headers = encode_body(b, datatypes, encoding)
        out.append(request_bytes("POST", path, host, body, headers))
    return out
