"""The Model protocol every backend implements, and its tensor signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..convert import convert, refusal
from ..datatypes import V2_TO_NUMPY, is_missing
from ..errors import ConfigError, InvalidInput, ModelFailure

Tensors = dict[str, np.ndarray]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, V2 datatype and shape (-1 marks a variable dim)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.datatype not in V2_TO_NUMPY:
            raise ConfigError(f"tensor '{self.name}': unsupported datatype '{self.datatype}'")
        if any(d < -1 for d in self.shape):
            raise ConfigError(f"tensor '{self.name}': invalid shape {list(self.shape)}")
        # Kept beside the fields (the spec is frozen): what check_inputs compares per request.
        # _fixed: (index, size) of every dimension that is not -1. _batch_tail: the shape past
        # a variable first dim when every dim past it is fixed (the common (-1, n) input,
        # checked by one tuple comparison), else None.
        fixed = tuple((i, d) for i, d in enumerate(self.shape) if d != -1)
        tail = self.shape[1:] if self.shape and self.shape[0] == -1 and -1 not in self.shape[1:] else None
        object.__setattr__(self, "_fixed", fixed)
        object.__setattr__(self, "_batch_tail", tail)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        if not isinstance(d, Mapping):
            raise ConfigError(f"a tensor spec must be a table with name, datatype and shape, got {d!r}")
        try:
            return cls(str(d["name"]), str(d["datatype"]).upper(), tuple(int(x) for x in d["shape"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"a tensor spec needs name, datatype and shape, got {dict(d)!r}"
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def accepts_shape(self, shape: Sequence[int]) -> bool:
        if len(shape) != len(self.shape):
            return False
        for i, want in self._fixed:
            if shape[i] != want:
                return False
        return True


def specs(items: Sequence[TensorSpec | Mapping[str, Any]]) -> tuple[TensorSpec, ...]:
    return tuple(i if isinstance(i, TensorSpec) else TensorSpec.from_dict(i) for i in items)


@runtime_checkable
class Model(Protocol):
    """What the server and the embedding API need from a backend.

    `predict` is called on an executor thread with a complete batch; it must be
    safe to call from several threads at once when `instances > 1`.

    Optional attributes, read with getattr: `classes` (a classifier's labels in the column
    order of its scores, for feedback and gates), `feature_names` (the data columns of a one
    matrix input), `text_inputs` (BYTES inputs the backend decodes as UTF-8).
    """

    name: str
    version: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def predict(self, inputs: Tensors) -> Tensors: ...

    def close(self) -> None: ...


def signature(items: Sequence[TensorSpec]) -> str:
    """Tensors as the logs show them: `name:FP32[-1, 4], ...`."""
    return ", ".join(f"{t.name}:{t.datatype}{list(t.shape)}" for t in items)


def check_inputs(model: Model, inputs: Tensors, datatypes: Mapping[str, str]) -> Tensors:
    """Reject inputs that do not match the model's signature, naming what is wrong, and
    return the tensors to run the model on.

    `datatypes` holds the V2 datatype each input was sent as. An input sent in another
    datatype than the model's is converted to it when runtime.convert's rule allows, else
    refused. The result is `inputs` itself when nothing needed converting (the common
    case costs no copy), else a new dict: `inputs` is left as it was sent.
    """
    # The common case, a request that fits, in one pass; anything else gets the full check,
    # which says what is wrong.
    if len(inputs) == len(model.inputs) and not getattr(model, "text_inputs", None):
        batch = -1
        for spec in model.inputs:
            name = spec.name
            arr = inputs.get(name)
            if arr is None or datatypes.get(name, spec.datatype) != spec.datatype:
                break
            shape = arr.shape
            tail = spec._batch_tail
            if tail is not None:
                # (-1, fixed...): the dims past the first, compared at once.
                if shape[1:] != tail or not shape:
                    break
            elif not spec.accepts_shape(shape):
                break
            if spec.shape and spec.shape[0] == -1:
                if batch == -1:
                    batch = shape[0]
                elif shape[0] != batch:
                    break
        else:
            return inputs
    return _check_inputs_in_full(model, inputs, datatypes)


def _check_inputs_in_full(model: Model, inputs: Tensors, datatypes: Mapping[str, str]) -> Tensors:
    expected = {spec.name: spec for spec in model.inputs}
    for name in inputs:
        if name not in expected:
            raise InvalidInput(
                f"unexpected input '{name}' for model '{model.name}'; "
                f"expected {sorted(expected)}"
            )
    batch = None
    to_convert: list[tuple[TensorSpec, str]] = []
    missing_ok = getattr(model, "missing_text", False)
    for spec in model.inputs:
        if spec.name not in inputs:
            raise InvalidInput(f"missing input '{spec.name}' for model '{model.name}'")
        sent = datatypes.get(spec.name, spec.datatype)
        if sent != spec.datatype:
            if missing_ok and spec.datatype == "BYTES" and _no_value(inputs[spec.name], sent):
                # A text column with no value at all: pandas reads it as float64 NaN, having
                # no text to see. Every value is missing, which this model takes (None).
                to_convert.append((spec, "missing"))
                continue
            refused = refusal(spec.name, sent, spec.datatype)
            if refused is not None:
                raise InvalidInput(refused)
            to_convert.append((spec, sent))
        shape = inputs[spec.name].shape
        if not spec.accepts_shape(shape):
            raise InvalidInput(
                f"input '{spec.name}': shape {list(shape)} does not match the model's "
                f"{list(spec.shape)}"
            )
        if spec.shape and spec.shape[0] == -1:
            if batch is None:
                batch = shape[0]
            elif shape[0] != batch:
                raise InvalidInput(
                    f"input '{spec.name}': batch size {shape[0]} differs from other inputs' {batch}"
                )
    for name in getattr(model, "text_inputs", ()):
        # Backends that turn BYTES into str (onnxruntime's string tensors) need UTF-8; say so
        # per request rather than fail a whole batch in the model. A null (JSON null: a
        # missing value) goes only to a model that takes one (a DataFrame's missing text).
        for i, v in enumerate(inputs[name].reshape(-1).tolist()):
            if isinstance(v, bytes):
                try:
                    v.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidInput(
                        f"input '{name}': element {i} is not UTF-8 text, which this model's string "
                        "input needs"
                    ) from None
            elif not missing_ok and is_missing(v):
                raise InvalidInput(
                    f"input '{name}': element {i} is null, and this model's string input cannot take "
                    "a missing value"
                )
    if not to_convert:
        return inputs
    # Converted only once every input is known to fit, values checked on the way.
    converted = dict(inputs)
    for spec, sent in to_convert:
        if sent == "missing":
            converted[spec.name] = np.full(inputs[spec.name].shape, None, dtype=object)
        else:
            converted[spec.name] = convert(spec.name, inputs[spec.name], sent, spec.datatype)
    return converted


def batchable(model: Model) -> bool:
    """Whether every tensor's first dimension is the batch's: rows can be stacked, and each
    output has one row per input row."""
    return all(t.shape and t.shape[0] == -1 for t in (*model.inputs, *model.outputs))


def check_outputs(model: Model, outputs: Tensors, expected: frozenset[str], rows: int | None) -> Tensors:
    """A model's answer as its signature says: every output in `expected` present and, with
    `rows` (a batchable model's input rows), one row per input row; ModelFailure if not. The
    server's batcher and runtime.load hold a model to the same."""
    if not expected.issubset(outputs):
        missing = [o.name for o in model.outputs if o.name in expected and o.name not in outputs]
        raise ModelFailure(model.name, KeyError(f"no output(s) {missing}"))
    if rows is not None:
        for name, arr in outputs.items():
            if arr.ndim == 0 or arr.shape[0] != rows:
                raise ModelFailure(
                    model.name,
                    ValueError(
                        f"output '{name}' has shape {list(arr.shape)}; expected {rows} rows, "
                        "one per input row"
                    ),
                )
    return outputs


def _no_value(arr: np.ndarray, sent: str) -> bool:
    """Floats that are all NaN: a column with no value to tell its type by."""
    return sent in ("FP16", "FP32", "FP64") and bool(arr.size) and bool(np.isnan(arr).all())
