"""In-process Python models: `package.module:object`.

The object may be
- an object with `predict` (and optionally `predict_proba`), scikit-learn style:
  called with the single input array; outputs are named `predict` and `predict_proba`;
- a callable: called with a dict of input arrays, or with the single array when the
  model has one input and the callable's first parameter is not annotated as a
  mapping; it returns a dict, a tuple (outputs in declared order) or one array;
- a class: instantiated with no arguments, then treated as above.

It may also be pickled in a file (`model.pkl`, `model.joblib`), as scikit-learn's docs save
models: loaded with joblib or pickle, then treated as above.

The signature comes from the object's `inputs` / `outputs` attributes (lists of
{"name", "datatype", "shape"}), else from the config; for scikit-learn style
objects the input defaults to `input` FP64 [-1, n_features_in_]. Undeclared
outputs are learned from one warm-up call on a zero row.

A scikit-learn estimator fitted on a pandas DataFrame (it has `feature_names_in_`) that
picks its columns by name (a ColumnTransformer), or fails on an array at its warm-up, is
called with a DataFrame of those columns, as it was trained; others get the array, which
scikit-learn takes faster. When some of its columns are text (an encoder learned string
categories for them), or categories a booster keeps itself (LightGBM, XGBoost: text or
numbers, fed back as categoricals with the training codes), one matrix cannot carry them,
and the default signature is one input per column, named as the DataFrame's, [-1, 1] each:
BYTES for text, FP64 for the rest, as skl2onnx exports the same pipeline.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .._imports import ImportTargetError, import_target, searched
from ..config import PICKLE_SUFFIXES, ModelConfig
from ..datatypes import numpy_dtype, to_bytes_array, to_text_array, v2_datatype
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


def load_pickled(path: str, name: str) -> Any:
    """The object pickled in `path` (joblib's format for .joblib, which also reads plain
    pickles), for model `name`. Unpickling runs the code the file names: serve only files
    you trust, as you would a module."""
    where = f"model '{name}'"
    if not os.path.isfile(path):
        raise ModelLoadError(f"{where}: no such file {path!r}")
    try:
        if path.endswith(".joblib"):
            try:
                import joblib
            except ImportError:
                raise ModelLoadError(f"{where}: {path!r} is a joblib file: install joblib") from None
            return joblib.load(path)
        import pickle

        with open(path, "rb") as f:
            return pickle.load(f)
    except ModelLoadError:
        raise
    except ModuleNotFoundError as exc:
        # A pickle names the classes it holds by module: the training code's own transformer,
        # say, which must be importable here too.
        raise ModelLoadError(
            f"{where}: cannot unpickle {path!r}: it needs module {exc.name!r}, which is not "
            "importable here; install it, or start mlrt where it is (the current folder is searched)"
        ) from None
    except AttributeError as exc:
        hint = ""
        if re.search(r"on <module '([\w.]+\.)?__main__'", str(exc)):
            # The training script pickled a class it defined itself: the pickle names it as
            # __main__.X, which only that script's run had.
            hint = (
                "; the model was pickled by a script that defines one of its classes itself "
                "(__main__): move that class into a module, import it from there in the script, "
                "pickle again, and serve where the module is importable"
            )
        raise ModelLoadError(f"{where}: cannot unpickle {path!r}: {exc}{hint}") from None
    except Exception as exc:  # a truncated file, another format, a class that changed
        raise ModelLoadError(f"{where}: cannot unpickle {path!r}: {type(exc).__name__}: {exc}") from None


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


def _steps(est: Any) -> list[Any]:
    """The estimator and, through Pipelines, ColumnTransformers and the like, what it holds."""
    found = [est]
    for _, step in getattr(est, "steps", []):
        found += _steps(step)
    # HistGradientBoosting's native categories (categorical_features="from_dtype") are kept
    # in an OrdinalEncoder of its own; private, hence read only if there.
    pre = getattr(est, "_preprocessor", None)
    if pre is not None and hasattr(pre, "transformers_"):
        found.append(pre)
    for _, trans, _ in getattr(est, "transformers_", []):
        if not isinstance(trans, str):  # 'drop' and 'passthrough' are strings
            found += _steps(trans)
    return found


def _quiet_feature_names() -> None:
    """Silence scikit-learn's "X does not have valid feature names" in this process.

    An estimator fitted on a DataFrame but given an array (a DataFrame costs it about 0.5 ms
    more per call) says so on every call, whatever the columns' order, not once: two lines in
    the server's log per request and about 30 us, telling an operator nothing. Warnings
    filters are the process's (scoping one per call is not thread-safe), and the class named
    in the message may be any step of a pipeline or the estimator inside a wrapper, so the
    filter matches the message for every class.
    """
    warnings.filterwarnings(
        "ignore", message=r"X does not have valid feature names, but \w+ was fitted", category=UserWarning
    )


def _text_columns(est: Any) -> dict[str, Any]:
    """The columns an estimator fitted on a DataFrame reads as text, each with one value it
    learned for it (for the warm-up row): those its fitted encoders (OneHotEncoder,
    OrdinalEncoder, a most-frequent SimpleImputer) learned string values for, whether inside
    a ColumnTransformer or as the first step of a Pipeline, taking every column."""
    met: list[tuple[list[str], Any]] = []  # (columns, the transformer that meets them first)
    first = est
    while hasattr(first, "steps"):
        first = first.steps[0][1]
    names_in = getattr(first, "feature_names_in_", None)
    if names_in is not None and getattr(first, "transformers_", None) is None:
        met.append(([str(c) for c in names_in], first))
    for ct in _steps(est):
        fitted = getattr(ct, "transformers_", None)
        names_in = getattr(ct, "feature_names_in_", None)
        if fitted is None or names_in is None:
            continue
        for _, trans, cols in fitted:
            if isinstance(trans, str):
                continue
            if isinstance(cols, str | int):
                cols = [cols]
            try:
                if isinstance(cols, np.ndarray) and cols.dtype == bool:  # a mask of the columns
                    cols = np.asarray(names_in)[cols].tolist()
                names = [str(names_in[c]) if isinstance(c, int | np.integer) else str(c) for c in cols]
            except (TypeError, IndexError):
                continue  # a slice: left numeric; declare `inputs` to say otherwise
            # What meets the column first: a Pipeline's first step, or the transformer itself.
            met.append((names, trans.steps[0][1] if hasattr(trans, "steps") else trans))
    text: dict[str, Any] = {}
    for names, first in met:
        cats = getattr(first, "categories_", None)
        stats = getattr(first, "statistics_", None)
        if cats is not None and len(cats) == len(names):
            for name, c in zip(names, cats, strict=True):
                c = np.asarray(c)
                if c.dtype.kind in "OUS" and len(c):
                    text[name] = c[0]
        elif stats is not None and np.asarray(stats).dtype.kind in "OUS":
            for name, v in zip(names, np.asarray(stats), strict=False):
                text[name] = v
    return text


def _native_categories(est: Any) -> dict[str, list[str]]:
    """The text columns of a gradient-boosting model that keeps its own categories, each with
    its categories in training order: LightGBM's (pandas `category` columns at fit) and
    XGBoost's (`enable_categorical`, 3.1 or later). At predict both want those columns as
    pandas categoricals whose codes are the training ones: for text, and for numbers too (a
    `category` column of months 5..9 has codes 0..4; given the numbers, XGBoost read 5..9
    as codes and scored other categories without a word)."""
    found: dict[str, list[str]] = {}
    for step in _steps(est):
        booster = getattr(step, "booster_", None)  # LightGBM's scikit-learn API
        cats = getattr(booster, "pandas_categorical", None)
        if cats:
            try:  # which features are categorical: one tree's dump says (the whole model's is big)
                infos = booster.dump_model(num_iteration=1)["feature_infos"]  # type: ignore[union-attr]
            except Exception:
                infos = {}
            names = [n for n, info in infos.items() if isinstance(info, dict) and info.get("values")]
            if len(names) == len(cats):
                found.update({n: list(c) for n, c in zip(names, cats, strict=True)})
        get_booster = getattr(step, "get_booster", None)  # XGBoost's
        if callable(get_booster):
            try:
                pairs = get_booster().get_categories(export_to_arrow=True).to_arrow()
            except Exception:  # before 3.1, or a model without categories
                pairs = []
            found.update({str(n): a.to_pylist() for n, a in pairs if a is not None})
    return {n: c for n, c in found.items() if c}


def _as_output(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind in "SUO":
        arr = to_bytes_array(arr)
    return arr


def _conform(spec: TensorSpec, arr: np.ndarray, dtype: Any, declared: bool) -> np.ndarray:
    """An output as its spec says: numbers converted to the declared datatype (as the
    encoders would), a column given as a flat array shaped [-1, 1] or the reverse; text
    where numbers are declared (or numbers where text is), or a declared shape it does not
    have, is the model's error, named here rather than failing in an encoder as a bare 500."""
    text = arr.dtype.kind in "OSU"
    if text != (spec.datatype == "BYTES"):
        got = "text" if text else f"{arr.dtype} numbers"
        raise ValueError(f"output {spec.name!r} is declared {spec.datatype} but the model returned {got}")
    if not text and arr.dtype != dtype:
        arr = arr.astype(dtype)
    shape = spec.shape
    if arr.ndim != len(shape):
        if shape[1:] == (1,) and arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        elif len(shape) == 1 and arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
    wrong = arr.ndim != len(shape) or any(d not in (-1, a) for d, a in zip(shape, arr.shape, strict=True))
    if declared and wrong:
        raise ValueError(
            f"output {spec.name!r} is declared with shape {list(shape)} but the model returned "
            f"{list(arr.shape)}"
        )
    return arr


class PythonModel:
    platform = "python"

    def __init__(self, config: ModelConfig, obj: Any = None) -> None:
        self.name = config.name
        self.version = config.version
        self.source = config.source
        if obj is None:
            if config.source.endswith(PICKLE_SUFFIXES):
                obj = load_pickled(config.source, config.name)
            else:
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
        # The DataFrame's columns, for an estimator fitted on one; None otherwise.
        self._frame: list[str] | None = None
        self._warm_text: dict[str, Any] = {}
        # Columns a gradient-boosting model reads as its own categories (pandas categoricals).
        self._categories: dict[str, list[str]] = {}
        if self._sklearn and getattr(obj, "feature_names_in_", None) is not None:
            self._frame = [str(c) for c in obj.feature_names_in_]
            self._warm_text = _text_columns(obj)
            native = _native_categories(obj)
            self._categories = {c: native[c] for c in self._frame if c in native}
            for name, cats in self._categories.items():
                if isinstance(cats[0], str):
                    self._warm_text.setdefault(name, cats[0])
        declared_in = config.inputs or getattr(obj, "inputs", None)
        if declared_in:
            self.inputs = specs(declared_in)
        elif self._frame is not None and (self._warm_text or self._categories):
            self.inputs = tuple(
                TensorSpec(c, "BYTES" if c in self._warm_text else "FP64", (-1, 1)) for c in self._frame
            )
        elif self._sklearn and hasattr(obj, "n_features_in_"):
            self.inputs = (TensorSpec("input", "FP64", (-1, int(obj.n_features_in_))),)
        else:
            raise ModelLoadError(
                f"model '{config.name}': declare its inputs, either as an `inputs` attribute "
                "on the object or `inputs = [{name, datatype, shape}]` in the config"
            )
        # The data columns a one-matrix input takes, in order, when the model knows them:
        # `mlrt predict` and `mlrt profile --model` pick them from a file by name.
        self.feature_names: tuple[str, ...] | None = None
        # Whether each call builds the DataFrame. scikit-learn checks a DataFrame's columns on
        # every call (about 0.4 ms more than an array, timed by hand on a 2-core VM),
        # so an estimator that works on an array gets one, as before: only one that picks
        # columns by name (a ColumnTransformer) or takes text needs the frame, or one whose
        # warm-up fails on an array (a FunctionTransformer reading df["col"], say).
        self._call_frame = False
        if self._frame is not None:
            self._frame_inputs = self._frame_signature()
            if not self._frame_inputs:
                self.feature_names = tuple(self._frame)
            self._call_frame = self._frame_inputs or any(hasattr(s, "transformers_") for s in _steps(obj))
            if not self._call_frame:
                _quiet_feature_names()
        if self._call_frame:
            try:
                import pandas  # noqa: F401
            except ImportError:
                raise ModelLoadError(
                    f"model '{config.name}' was fitted on a pandas DataFrame and is called with one: "
                    "install pandas (pip install pandas)"
                ) from None
        # BYTES inputs become str for the DataFrame (scikit-learn's categories are str):
        # check_inputs refuses bytes that are not UTF-8 per request.
        self.text_inputs = frozenset(
            s.name for s in self.inputs if s.datatype == "BYTES" and self._frame is not None
        )
        # A JSON null in a text column is a missing value, as pandas reads one from a file
        # (None), for the estimator's imputer or encoder to handle as it did in training.
        self.missing_text = self._frame is not None
        self._call_with_array = self._sklearn or (len(self.inputs) == 1 and not _wants_mapping(obj))
        # A classifier's labels in the column order of predict_proba (runtime/quality/labels.py).
        # (A multi-output classifier has a list of them, one per target: no one order.)
        classes = getattr(obj, "classes_", None) if hasattr(obj, "predict_proba") else None
        one_list = isinstance(classes, np.ndarray) and classes.ndim == 1
        self.classes = tuple(classes.tolist()) if one_list else None
        declared_out = config.outputs or getattr(obj, "outputs", None)
        self._declared_out = bool(declared_out)
        if declared_out:
            self.outputs = specs(declared_out)
        else:
            self.outputs = self._learn_outputs()
        self._out_dtypes = {s.name: numpy_dtype(s.datatype) for s in self.outputs}

    def _frame_signature(self) -> bool:
        """True when the inputs are the DataFrame's columns one by one, False when they are
        one matrix of all of them in order; a signature that is neither cannot be called."""
        assert self._frame is not None
        names = [s.name for s in self.inputs]
        if sorted(names) == sorted(self._frame):
            for s in self.inputs:
                if s.shape not in ((-1,), (-1, 1)):
                    raise ModelLoadError(
                        f"model '{self.name}': input '{s.name}' is a column of the DataFrame the "
                        f"estimator was fitted on; its shape must be [-1] or [-1, 1], not {list(s.shape)}"
                    )
            return True
        if len(self.inputs) == 1 and self.inputs[0].shape[1:] == (len(self._frame),):
            return False
        raise ModelLoadError(
            f"model '{self.name}' was fitted on a DataFrame of columns {self._frame}: declare one "
            f"input per column, named as they are, or one input [-1, {len(self._frame)}] of all of "
            f"them in order; got {names}"
        )

    def _dataframe(self, inputs: Tensors) -> Any:
        """The request as the DataFrame the estimator was fitted on: its columns, in order."""
        import pandas as pd

        assert self._frame is not None
        if not self._frame_inputs:
            return pd.DataFrame(inputs[self.inputs[0].name], columns=self._frame)
        cols = {}
        for name in self._frame:
            col = inputs[name].reshape(-1)
            if col.dtype == object:
                # A missing value as NaN, as pandas reads one and scikit-learn's imputers look for
                # by default. None would do only beside some text (pandas then infers a string
                # column, None becoming NaN); a column of nothing but None stays None, which an
                # imputer leaves alone and an encoder takes for an unknown category.
                col = to_text_array(col, missing=np.nan)
            cats = self._categories.get(name)
            if cats is not None:
                # The training categories in their order, so codes match; an unseen one is
                # missing (code -1). Numbers match by value: 5.0 sent is category 5.
                index = pd.Index(cats)
                col = pd.Categorical.from_codes(index.get_indexer(col), categories=index)
            cols[name] = col
        return pd.DataFrame(cols, columns=self._frame)

    def _call(self, inputs: Tensors) -> Any:
        if self._sklearn:
            x = self._dataframe(inputs) if self._call_frame else inputs[self.inputs[0].name]
            out: dict[str, Any] = {"predict": self._obj.predict(x)}
            if hasattr(self._obj, "predict_proba"):
                proba = self._obj.predict_proba(x)
                if isinstance(proba, list):  # one array per target: a multi-output classifier
                    out.update({f"predict_proba_{i}": p for i, p in enumerate(proba)})
                else:
                    out["predict_proba"] = proba
            return out
        if self._call_with_array:
            return self._obj(inputs[self.inputs[0].name])
        return self._obj(inputs)

    def _learn_outputs(self) -> tuple[TensorSpec, ...]:
        row = {
            s.name: np.zeros(tuple(1 if d == -1 else d for d in s.shape), numpy_dtype(s.datatype))
            for s in self.inputs
        }
        for name, value in self._warm_text.items():
            # A value the encoder knows: one that refuses unknown categories would fail on "".
            if name in row and row[name].dtype == object:
                row[name][...] = value.encode("utf-8") if isinstance(value, str) else value
        try:
            try:
                raw = self._call(row)
            except Exception:
                if self._frame is None or self._call_frame:
                    raise
                self._call_frame = True  # fitted on a DataFrame, and needs one
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

    def _no_rows(self, inputs: Tensors) -> Tensors | None:
        """Empty outputs for a request of zero rows to an estimator, which scikit-learn refuses
        ("Found array with 0 sample(s)") where onnxruntime answers it: V2 allows the shape."""
        if inputs[self.inputs[0].name].shape[:1] != (0,):
            return None
        if any(-1 in s.shape[1:] for s in self.outputs):
            return None  # an output's width is unknown: let the estimator say what it does
        return {s.name: np.empty((0, *s.shape[1:]), numpy_dtype(s.datatype)) for s in self.outputs}

    def predict(self, inputs: Tensors) -> Tensors:
        if self._sklearn and (empty := self._no_rows(inputs)) is not None:
            return empty
        raw = self._call(inputs)
        if isinstance(raw, Mapping):
            out = {str(k): _as_output(v) for k, v in raw.items()}
        elif isinstance(raw, tuple):
            if len(raw) != len(self.outputs):
                raise ValueError(f"returned {len(raw)} values, but {len(self.outputs)} outputs are declared")
            out = {spec.name: _as_output(v) for spec, v in zip(self.outputs, raw, strict=True)}
        else:
            out = {self.outputs[0].name: _as_output(raw)}
        for spec in self.outputs:  # a few checks per call: a Python model's call costs far more
            arr = out.get(spec.name)
            if arr is not None:
                out[spec.name] = _conform(spec, arr, self._out_dtypes[spec.name], self._declared_out)
        return out

    def close(self) -> None:
        self._obj = None
