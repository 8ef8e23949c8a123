"""One model scoring Arrow record batches: the unit of work of `mlrt predict`, and of
the Spark and Dask jobs (each worker holds one BatchScorer and feeds it its batches).

A batch's columns feed the model's inputs by the rule of runtime/model_columns.py, in
the model's datatypes by the one conversion rule (runtime/convert.py); its outputs come
back as named columns after the passthrough columns: a one-column output by its own name
(``label``), column i of a wider one as ``<output>_<class>`` when the model states its
classes (``probabilities_yes``), else ``<output>_<i>`` (names SQL takes without quoting;
the drift report keeps the profile's ``probabilities[1]``).
With a profile, every scored row is counted into the reference's bins exactly as the
server counts it (the same ModelMonitor, over one window that never ends): counts from
several scorers add up to what one scorer would have counted.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np

from ..config import ModelConfig, MonitorConfig, parse_model_spec
from ..convert import convert
from ..data import arrow_to_numpy, unknown_columns
from ..datatypes import V2_TO_NUMPY, v2_datatype
from ..errors import ConfigError, InvalidInput, ModelFailure
from ..model_columns import (
    by_name,
    feeding_pairs,
    input_widths,
    known_columns,
    map_inputs,
    output_columns,
    profile_columns,
)
from ..models import Model, check_inputs, load_model
from ..monitor.drift import ModelMonitor
from ..monitor.profile import Profile
from ..quality.labels import plain_classes

__all__ = ["BatchScorer", "ScorerSpec", "ScoringOptions"]


@dataclass(frozen=True)
class ScorerSpec:
    """Everything a worker needs to build the same BatchScorer: small and picklable, so
    a Spark or Dask job ships this, never a loaded model.

    model: anything `mlrt serve` takes (an ONNX file, `package.module:object`, a registry
    reference such as `churn@champion`). profile: a reference profile (JSON path); a
    registry version's own profile is used when none is given. columns: the data columns
    that feed the inputs, in order (default: by the rule in runtime/model_columns.py).
    outputs: the model outputs to write (default: all). passthrough: data columns copied
    to the output as they are. threads: onnxruntime's intra-op threads (default: the
    CPUs this process may use).
    """

    model: str
    profile: str | None = None
    columns: tuple[str, ...] | None = None
    outputs: tuple[str, ...] | None = None
    passthrough: tuple[str, ...] = ()
    threads: int | None = None
    registry: str | None = None

    def __post_init__(self) -> None:
        # Lists (from a command line, from a caller) become tuples: the spec stays
        # hashable, the key of each worker's cached scorer.
        for name in ("columns", "outputs"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "passthrough", tuple(self.passthrough))

    @classmethod
    def of(cls, model: str, options: Mapping[str, Any], *, threads: int | None = None) -> ScorerSpec:
        """The spec of `model` with a caller's ScoringOptions; `threads` is the entry
        point's own default when the caller names none."""
        known = sorted(ScoringOptions.__annotations__)
        unknown = sorted(set(options) - set(known))
        if unknown:
            close = {u: difflib.get_close_matches(u, known, n=1) for u in unknown}
            hints = "".join(f" ({u}: did you mean {c[0]}?)" for u, c in close.items() if c)
            raise TypeError(
                f"unexpected keyword argument(s) {', '.join(unknown)}{hints}; the scoring "
                f"options are {', '.join(known)}"
            )
        return cls(model, **{"threads": threads, **options})

    def build(self) -> BatchScorer:
        return BatchScorer(self)


class ScoringOptions(TypedDict, total=False):
    """The keywords of every batch-scoring entry point (`predict_files`, the Spark and
    Dask `predict`), declared once: their meaning is ScorerSpec's."""

    profile: str | None
    columns: Sequence[str] | None
    outputs: Sequence[str] | None
    passthrough: Sequence[str]
    threads: int | None
    registry: str | None


def _threads(threads: int | None) -> int:
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        return threads
    # Every CPU: reading and writing beside the model take less than they give back, even
    # for a small model (bench/predict.py: the MLP ran 3.5M rows/s on one of two CPUs, 4-4.8M
    # on both).
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _load(spec: ScorerSpec) -> tuple[Model, str | None]:
    """The model, and the profile to judge drift by (the spec's, else its registry version's)."""
    config = parse_model_spec(spec.model)
    profile = spec.profile
    if config.registry_ref is not None:
        from ..loading import resolve_registry_model

        config = resolve_registry_model(config, spec.registry)
        profile = profile or config.profile
    try:
        config = ModelConfig(
            name=config.name,
            source=config.source,
            version=config.version,
            intra_op_threads=_threads(spec.threads),
        )
    except TypeError as exc:  # pragma: no cover - fields are ours
        raise ConfigError(str(exc)) from None
    return load_model(config), profile


class BatchScorer:
    """Scores Arrow record batches with one loaded model (see the module's docstring)."""

    def __init__(self, spec: ScorerSpec) -> None:
        self.spec = spec
        self.model, profile_path = _load(spec)
        self.outputs = self._output_specs(spec.outputs)
        self._columns = _output_column_names(self.outputs, getattr(self.model, "classes", None))
        self.profile = Profile.load(profile_path) if profile_path else None
        self.monitor: ModelMonitor | None = None
        if self.profile is not None:
            self.monitor = self._monitor(self.profile)
        self.rows = 0

    # -- what is read and written ----------------------------------------------------------

    def _output_specs(self, names: Sequence[str] | None) -> list[Any]:
        specs = {s.name: s for s in self.model.outputs}
        if names is None:
            return [s for s in self.model.outputs if len(s.shape) in (1, 2)]
        unknown = [n for n in names if n not in specs]
        if unknown:
            raise ConfigError(f"the model has no output(s) {unknown}; it has {list(specs)}")
        odd = [n for n in names if len(specs[n].shape) not in (1, 2)]
        if odd:
            raise ConfigError(
                f"output(s) {odd} are not one row per input row ([-1] or [-1, k]): they have no columns"
            )
        return [specs[n] for n in names]

    def input_columns(self, available: Sequence[str]) -> list[str]:
        """The data columns that feed the model, in order, given the data's columns.

        The spec's `columns` when given; else by name when every input is one column
        named like a data column; else the columns the model names itself (an estimator
        fitted on a DataFrame); else the profile's features when the data has them all;
        else every data column but the passthrough ones, in the data's order.
        """
        have = set(available)
        if self.spec.columns is not None:
            missing = [c for c in self.spec.columns if c not in have]
            if missing:
                raise ConfigError(
                    f"the data has no column(s) {unknown_columns(missing, available)}; "
                    f"it has {list(available)[:12]}"
                )
            return list(self.spec.columns)
        specs = self.model.inputs
        if by_name(specs, available):
            return [s.name for s in specs]
        missing = [s.name for s in specs if s.name not in have]
        one_column = all(len(s.shape) == 1 or tuple(s.shape[1:]) == (1,) for s in specs)
        if one_column and len(missing) < len(specs):
            # One column per input, some named like the data's: the data lacks the others.
            raise ConfigError(
                f"the model takes one column per input, by name; the data has no {missing[:8]} "
                f"(it has {list(available)[:12]})"
            )
        named = known_columns(self.model, available)
        if named is not None:
            return named
        if self.profile is not None:
            features = [f.name for f in self.profile.features]
            names = profile_columns(features, sum(input_widths(specs)), available)
            if names is not None:
                return names
        skip = set(self.spec.passthrough)
        return [c for c in available if c not in skip]

    def column_types(self, schema: Any) -> dict[str, Any]:
        """Arrow types for reading from CSV the columns that feed the model, where the type
        CSV guessed from the first rows of the first file is narrower than the input takes:
        a float input's column guessed empty (null) or whole numbers is read as float64, a
        text input's column as text (zip codes keep their zeros). So a column empty in its
        first rows, or whole numbers in one file and 29.0 in the next, parses. A column
        guessed as text stays so, for the error that names it."""
        import pyarrow as pa
        import pyarrow.types as pat

        pairs = feeding_pairs(self.model.inputs, self.input_columns(schema.names)) or []
        out: dict[str, Any] = {}
        for name, s in pairs:
            guessed = schema.field(name).type
            if s.datatype in ("FP16", "FP32", "FP64") and (pat.is_null(guessed) or pat.is_integer(guessed)):
                out[name] = pa.float64()
            elif s.datatype == "BYTES":
                out[name] = pa.string()
        return out

    def positional(self, available: Sequence[str]) -> bool:
        """Whether the columns feed the model by their place, not their names (rules 4 and
        5 of input_columns: the profile's order, or the data's): then two models fed the same
        data in different orders see different features in the same slots."""
        if self.spec.columns is not None or by_name(self.model.inputs, available):
            return False
        return getattr(self.model, "feature_names", None) is None

    def output_names(self) -> list[str]:
        """The names of the columns the model's outputs become, in order."""
        return [name for s in self.outputs for name in self._columns[s.name]]

    def output_schema(self, input_schema: Any) -> Any:
        """The Arrow schema of the scored batches: passthrough columns, then outputs."""
        import pyarrow as pa

        fields = [input_schema.field(name) for name in self.spec.passthrough]
        for s in self.outputs:
            dtype = _arrow_type(s.datatype)
            fields.extend(pa.field(name, dtype) for name in self._columns[s.name])
        names = [f.name for f in fields]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            raise ConfigError(
                f"column name(s) {clash} would be written twice (a passthrough column or another "
                "output has the name of an output column): choose the outputs (--outputs, outputs=)"
            )
        return pa.schema(fields)

    def check(self, schema: Any) -> list[str]:
        """Check the data's schema before anything runs; returns the columns to read."""
        available = list(schema.names)
        missing = [c for c in self.spec.passthrough if c not in available]
        if missing:
            raise ConfigError(
                "the passthrough columns (--passthrough, passthrough=) name no such column(s) "
                f"{unknown_columns(missing, available)}; "
                f"the data has {available[:12]}"
            )
        self.output_schema(schema)
        columns = self.input_columns(available)
        specs = self.model.inputs
        if not by_name(specs, columns) and len(columns) != sum(input_widths(specs)):
            want = ", ".join(f"'{s.name}' {list(s.shape)}" for s in specs)
            raise ConfigError(
                f"the model's inputs ({want}) take {sum(input_widths(specs))} columns but "
                f"{len(columns)} would feed them: {columns[:8]}{' ...' if len(columns) > 8 else ''}; "
                "name them (--columns, columns=), leave ids out (--passthrough, passthrough=), "
                "or give a profile"
            )
        return [*dict.fromkeys([*columns, *self.spec.passthrough])]

    # -- scoring ---------------------------------------------------------------------------

    def score(self, batch: Any) -> Any:
        """One record batch in, one out: the passthrough columns and the outputs.

        The three steps below, in turn; `mlrt predict` runs them on three threads so
        that reading, the model and writing overlap (runtime/offline/files.py)."""
        feeds = self.feeds(batch)
        return self.finish(batch, feeds, self.run(feeds))

    def feeds(self, batch: Any) -> dict[str, np.ndarray]:
        """The model's input tensors from a record batch, in the model's datatypes."""
        names = self.input_columns(batch.schema.names)
        columns = {name: arrow_to_numpy(batch.column(name)) for name in names}
        feeds, fed = map_inputs(self.model.inputs, columns)
        try:
            return check_inputs(self.model, feeds, {k: v2_datatype(v.dtype) for k, v in feeds.items()})
        except InvalidInput as exc:
            # The columns of the input the message names, not every column read.
            named = re.match(r"input '([^']*)'", str(exc))
            culprits = [c for c, spec in fed.items() if named and spec.name == named.group(1)] or names
            raise InvalidInput(f"{exc} (fed from column(s) {culprits[:8]})") from None

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The model's outputs for its input tensors (ModelFailure if the model raises)."""
        try:
            return self.model.predict(dict(feeds))
        except Exception as exc:
            raise ModelFailure(self.model.name, exc) from exc

    def finish(self, batch: Any, feeds: Mapping[str, np.ndarray], results: Mapping[str, np.ndarray]) -> Any:
        """Count the rows for drift (with a profile) and build the output record batch."""
        import pyarrow as pa

        if self.monitor is not None:
            self.monitor.observe(feeds, results)
        self.rows += batch.num_rows
        arrays = [batch.column(name) for name in self.spec.passthrough]
        fields = [batch.schema.field(name) for name in self.spec.passthrough]
        for s in self.outputs:
            dtype = _arrow_type(s.datatype)
            names = self._columns[s.name]
            columns = output_columns([s], results)
            if len(columns) != len(names):
                raise ModelFailure(
                    self.model.name,
                    ValueError(f"output '{s.name}' has {len(columns)} columns, its signature {len(names)}"),
                )
            for name, (_, col) in zip(names, columns, strict=True):
                arrays.append(_arrow_array(col, s.datatype, name, self.model.name))
                fields.append(pa.field(name, dtype))
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))

    # -- drift -----------------------------------------------------------------------------

    def _monitor(self, profile: Profile) -> ModelMonitor:
        # One window that never ends: every row scored counts, however long the job runs.
        config = MonitorConfig(window_s=math.inf, slices=1)
        return ModelMonitor(
            profile,
            model=self.model.name,
            version=self.model.version,
            inputs=[(s.name, s.shape) for s in self.model.inputs],
            outputs=[(s.name, s.shape) for s in self.model.outputs],
            config=config,
        )

    def drift_counts(self) -> dict[str, np.ndarray]:
        """The bin counts so far per profile section ("features", "outputs"): what a job
        sums across workers (`add_drift_counts`)."""
        if self.monitor is None:
            return {}
        out = {"features": self.monitor.inputs.total_counts.copy()}
        if self.monitor.outputs is not None:
            out["outputs"] = self.monitor.outputs.total_counts.copy()
        return out

    def add_drift_counts(self, counts: Mapping[str, np.ndarray]) -> None:
        """Add another scorer's `drift_counts` (same model and profile) to this one's."""
        if self.monitor is None:
            raise ConfigError("no profile: there are no drift counts to add to")
        self.monitor.inputs.merge(np.asarray(counts["features"], dtype=np.int64))
        if "outputs" in counts and self.monitor.outputs is not None:
            self.monitor.outputs.merge(np.asarray(counts["outputs"], dtype=np.int64))

    def drift_report(self) -> dict[str, Any] | None:
        """The drift of every row counted, by the server's rule (`GET .../drift`'s JSON)."""
        if self.monitor is None:
            return None
        report = self.monitor.to_json()
        report["window"] = {"rows": self.monitor.window_rows}  # one window: every row scored
        return report


def _output_column_names(outputs: Sequence[Any], classes: Any) -> dict[str, list[str]]:
    """The file's column names for each [-1] / [-1, k] output. Column i of a wider output is
    `<output>_<class>` when the model states its classes and the output has one column per
    class (a classifier's scores: `probabilities_yes` says which class without a look at
    the model), else `<output>_<i>`. Underscores, not the profile's `name[i]`: SQL reads a
    bracket as an index, so such a column would need quoting in every query."""
    labels = plain_classes(classes)
    texts = [str(c) for c in labels] if labels is not None else None
    if texts is not None and len(set(texts)) != len(texts):
        texts = None  # 1 and "1": no one name per column
    out: dict[str, list[str]] = {}
    for s in outputs:
        width = 1 if len(s.shape) == 1 else s.shape[1]
        if width < 0 and texts is not None and s.datatype != "BYTES":
            width = len(texts)  # scores of a classifier whose width was left free
        if width == 1:
            out[s.name] = [s.name]
        elif texts is not None and width == len(texts):
            out[s.name] = [f"{s.name}_{t}" for t in texts]
        elif width > 1:
            out[s.name] = [f"{s.name}_{i}" for i in range(width)]
        else:
            raise ConfigError(
                f"output '{s.name}' has shape {list(s.shape)}: its number of columns is not "
                "declared, so the output file's columns cannot be named before the model runs; "
                "leave it out (--outputs, outputs=)"
            )
    return out


def _arrow_type(datatype: str) -> Any:
    import pyarrow as pa

    if datatype == "BYTES":
        return pa.string()
    return pa.from_numpy_dtype(V2_TO_NUMPY[datatype])


def _arrow_array(col: np.ndarray, datatype: str, name: str, model: str) -> Any:
    """An output column as Arrow, in the type its declared datatype gives (a Python
    model may hand back float64 for an FP32 output: converted by the one rule)."""
    import pyarrow as pa

    if datatype == "BYTES":
        values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in col.tolist()]
        return pa.array(values, type=pa.string())
    want = V2_TO_NUMPY[datatype]
    if col.dtype != want:
        try:
            col = convert(name, col, v2_datatype(col.dtype), datatype)
        except InvalidInput as exc:
            raise ModelFailure(model, ValueError(f"output column {name}: {exc}")) from None
    return pa.array(np.ascontiguousarray(col))
