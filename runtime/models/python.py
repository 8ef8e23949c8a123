"""In-process Python models: `package.module:object`.

The object may be
- an object with `predict` (and optionally `predict_proba`), scikit-learn style:
  called with the single input array; outputs are named `predict` and `predict_proba`;
- a callable: called with a dict of input arrays, or with the single array when the
  model has one input and the callable's first parameter is not annotated as a
  mapping; it returns a dict, a tuple (outputs in declared order) or one array;
- a class: instantiated with no arguments, then treated as above.

The signature comes from the object's `inputs` / `outputs` attributes (lists of
{"name", "datatype", "shape"}), else from the config; for scikit-learn style
objects the input defaults to `input` FP64 [-1, n_features_in_]. Undeclared
outputs are learned from one warm-up call on a zero row.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._imports import ImportTargetError, import_target, searched
from ..config import ModelConfig
from ..datatypes import to_bytes_array, v2_datatype
from ..errors import ModelLoadError
from .base import Tensors, TensorSpec, specs


def import_object(source: str) -> Any:
    try:
        return import_target(source)
    except ImportTargetError as exc:
        if exc.kind == "format":
            raise ModelLoadError(f"expected package.module:object, got {source!r}") from None
        if exc.kind == "module" and exc.missing:
            top = exc.module.partition(".")[0]
            where, cwd_searched = searched()
            holder = f"the folder that holds {top}.py (or {top}/)"
            fix = f"add {holder} to PYTHONPATH"
            if cwd_searched:
                fix = f"start mlrt in {holder}, add it to PYTHONPATH"
            raise ModelLoadError(
                f"cannot import module {exc.module!r} ({exc.cause}); searched {where}. "
                f"To fix: {fix}, or install the module's package"
            ) from None
        if exc.kind == "module":
            raise ModelLoadError(f"importing module {exc.module!r} failed: {exc.cause}") from None
        attr = source.partition(":")[2]
        where = getattr(sys.modules.get(exc.module), "__file__", None)
        raise ModelLoadError(
            f"module {exc.module!r} has no attribute {attr!r}{f' (imported from {where})' if where else ''}"
        ) from None


def _wants_mapping(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params:
        return False
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    ann = hints.get(params[0].name, params[0].annotation)
    origin = typing.get_origin(ann) or ann
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _as_output(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind in "SUO":
        arr = to_bytes_array(arr)
    return arr


class PythonModel:
    platform = "python"

    def __init__(self, config: ModelConfig, obj: Any = None) -> None:
        self.name = config.name
        self.version = config.version
        self.source = config.source
        if obj is None:
            obj = import_object(config.source)
        if inspect.isclass(obj):
            try:
                obj = obj()
            except Exception as exc:
                raise ModelLoadError(f"model '{config.name}': cannot instantiate {obj!r}: {exc}") from exc
        self._obj = obj
        self._sklearn = hasattr(obj, "predict") and callable(obj.predict)
        if not self._sklearn and not callable(obj):
            raise ModelLoadError(
                f"model '{config.name}': {config.source!r} is neither callable nor has predict()"
            )
        declared_in = config.inputs or getattr(obj, "inputs", None)
        if declared_in:
            self.inputs = specs(declared_in)
        elif self._sklearn and hasattr(obj, "n_features_in_"):
            self.inputs = (TensorSpec("input", "FP64", (-1, int(obj.n_features_in_))),)
        else:
            raise ModelLoadError(
                f"model '{config.name}': declare its inputs, either as an `inputs` attribute "
                "on the object or `inputs = [{name, datatype, shape}]` in the config"
            )
        self._call_with_array = self._sklearn or (len(self.inputs) == 1 and not _wants_mapping(obj))
        declared_out = config.outputs or getattr(obj, "outputs", None)
        if declared_out:
            self.outputs = specs(declared_out)
        else:
            self.outputs = self._learn_outputs()

    def _call(self, inputs: Tensors) -> Any:
        if self._sklearn:
            x = inputs[self.inputs[0].name]
            out: dict[str, Any] = {"predict": self._obj.predict(x)}
            if hasattr(self._obj, "predict_proba"):
                out["predict_proba"] = self._obj.predict_proba(x)
            return out
        if self._call_with_array:
            return self._obj(inputs[self.inputs[0].name])
        return self._obj(inputs)

    def _learn_outputs(self) -> tuple[TensorSpec, ...]:
        from ..datatypes import numpy_dtype

        row = {
            s.name: np.zeros(tuple(1 if d == -1 else d for d in s.shape), numpy_dtype(s.datatype))
            for s in self.inputs
        }
        try:
            raw = self._call(row)
        except Exception as exc:
            raise ModelLoadError(
                f"model '{self.name}': warm-up call on a zero row failed ({exc}); "
                "declare `outputs` to skip it"
            ) from exc
        if isinstance(raw, Mapping):
            items = [(str(k), _as_output(v)) for k, v in raw.items()]
        elif isinstance(raw, tuple):
            items = [(f"output_{i}", _as_output(v)) for i, v in enumerate(raw)]
        else:
            items = [("output", _as_output(raw))]
        return tuple(
            TensorSpec(name, v2_datatype(arr.dtype), (-1, *arr.shape[1:]) if arr.ndim else ())
            for name, arr in items
        )

    def predict(self, inputs: Tensors) -> Tensors:
        raw = self._call(inputs)
        if isinstance(raw, Mapping):
            return {str(k): _as_output(v) for k, v in raw.items()}
        if isinstance(raw, tuple):
            if len(raw) != len(self.outputs):
                raise ValueError(f"returned {len(raw)} values, but {len(self.outputs)} outputs are declared")
            return {spec.name: _as_output(v) for spec, v in zip(self.outputs, raw, strict=True)}
        return {self.outputs[0].name: _as_output(raw)}

    def close(self) -> None:
        self._obj = None
