"""The in-process API: a model, its drift monitor and hooks, without a server.

    import runtime
    m = runtime.load("model.onnx", profile="ref.json")
    y = m.predict(x)                  # in the calling thread; thread-safe
    m.drift()                         # what GET .../drift returns
    m.metrics(registry)               # register the drift metrics into your app's registry

No event loop, no web framework: importing this module loads neither Starlette
nor uvicorn, so it suits small edge hosts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .config import ModelConfig, MonitorConfig, parse_model_spec
from .datatypes import V2_TO_NUMPY, v2_datatype
from .errors import ConfigError, InvalidInput, ModelFailure
from .model_columns import profile_columns
from .models import Model, Tensors, batchable, check_inputs, check_outputs, load_model


class LocalModel:
    """A loaded model with optional drift monitoring, called in-process."""

    def __init__(
        self,
        model: Model,
        *,
        monitor: Any = None,
        dispatcher: Any = None,
        monitor_config: MonitorConfig | None = None,
    ) -> None:
        self.model = model
        self.monitor = monitor
        self._dispatcher = dispatcher
        self._config = monitor_config or MonitorConfig()
        self._outputs = frozenset(o.name for o in model.outputs)
        self._batchable = batchable(model)
        self._specs = {s.name: s for s in model.inputs}
        self._datatypes = {s.name: s.datatype for s in model.inputs}
        self._dtypes = {s.name: V2_TO_NUMPY[s.datatype] for s in model.inputs}
        self._next_tick = time.monotonic() + self._config.tick_s
        self._status = "ok"
        self._tick_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def inputs(self) -> tuple[Any, ...]:
        return self.model.inputs

    @property
    def outputs(self) -> tuple[Any, ...]:
        return self.model.outputs

    @property
    def classes(self) -> tuple[Any, ...] | None:
        """A classifier's labels in the column order of its scores, when the model knows them
        (scikit-learn's `classes_`, an ONNX classifier's class labels); else None."""
        return getattr(self.model, "classes", None)

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """The data columns the model's one matrix input takes, in order, when the model
        knows them (a scikit-learn estimator fitted on a DataFrame); else None."""
        return getattr(self.model, "feature_names", None)

    def _as_inputs(self, x: np.ndarray | Mapping[str, Any]) -> tuple[Tensors, Mapping[str, str]]:
        """The caller's arrays, and the V2 datatype each one's dtype stands for: check_inputs
        converts them to the model's as it would a request's (runtime/convert.py)."""
        if isinstance(x, Mapping):
            raw = dict(x)
        elif hasattr(x, "columns") and hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):
            # A pandas (or polars) DataFrame.
            raw = self._from_frame(x)
        elif len(self.model.inputs) == 1:
            raw = {self.model.inputs[0].name: x}
        else:
            names = [s.name for s in self.model.inputs]
            raise InvalidInput(f"model '{self.name}' has inputs {names}: pass a dict of arrays")
        out: Tensors = {}
        sent: dict[str, str] | None = None  # only when some array is not in the model's dtype
        for name, value in raw.items():
            if value is None:
                raise InvalidInput(f"input '{name}': no value (None); pass an array of rows")
            try:
                arr = np.asarray(value)
            except ValueError as exc:  # ragged nested lists
                raise InvalidInput(f"input '{name}': not an array: {exc}") from None
            spec = self._specs.get(name)
            if spec is None or arr.dtype is not self._dtypes[name]:
                datatype = _V2_OF_NATIVE.get(arr.dtype)
                if datatype is None:
                    arr, datatype = _unusual_dtype(name, arr)
                if sent is None:
                    sent = dict(self._datatypes)
                sent[name] = datatype
            if spec is not None and spec.shape == (-1, 1) and arr.ndim == 1:
                arr = arr.reshape(-1, 1)  # a column input given as the column's values
            elif spec is not None and len(spec.shape) == arr.ndim + 1 and spec.shape[0] == -1:
                arr = arr[np.newaxis]  # one row given without its batch dimension
            out[name] = arr
        return out, self._datatypes if sent is None else sent

    def _from_frame(self, frame: Any) -> dict[str, Any]:
        """A DataFrame's columns as the model's inputs: one input per column by name, or
        the columns the model names itself (or all of them) as its one matrix input."""
        specs = self.model.inputs
        columns = [str(c) for c in frame.columns]
        if all(s.name in columns for s in specs) and all(s.shape in ((-1,), (-1, 1)) for s in specs):
            return {s.name: frame[s.name].to_numpy() for s in specs}
        if len(specs) == 1:
            names = self.feature_names or self._profiled(specs[0], columns)
            if names is None:
                return {specs[0].name: self._matrix(specs[0], frame)}
            missing = [n for n in names if n not in columns]
            if missing:
                raise InvalidInput(f"model '{self.name}' was fitted on columns {list(names)}; no {missing}")
            return {specs[0].name: self._matrix(specs[0], frame[list(names)])}
        wanted = [s.name for s in specs]
        raise InvalidInput(
            f"model '{self.name}' takes inputs {wanted}; the DataFrame has columns {columns[:12]}"
        )

    def _matrix(self, spec: Any, frame: Any) -> np.ndarray:
        """The frame's columns as one matrix. pandas gives an object matrix for its nullable
        and Arrow-backed dtypes (Float64, Int64: what `convert_dtypes` and `dtype_backend`
        make), which would read as text: built from the columns one by one instead, missing
        numbers as NaN. A column of text for a numeric input is named, with a value."""
        arr = frame.to_numpy()
        if arr.dtype != object:
            return arr
        cols = [frame[c].to_numpy() for c in frame.columns]
        if cols and all(c.dtype.kind in "fiub" for c in cols):
            return np.column_stack(cols)
        if spec.datatype != "BYTES":
            for name, c in zip(frame.columns, cols, strict=True):
                if c.dtype.kind not in "fiub":
                    example = next((v for v in c.tolist() if isinstance(v, (str, bytes))), c[:1].tolist())
                    raise InvalidInput(
                        f"model '{self.name}': input '{spec.name}' takes {spec.datatype}; column "
                        f"'{name}' is {frame[name].dtype}, e.g. {example!r}"
                    )
        return arr

    def _profiled(self, spec: Any, columns: Sequence[str]) -> list[str] | None:
        """The profile's features when they feed the input (`mlrt predict`'s rule 4, one
        rule: runtime/model_columns.py's profile_columns)."""
        if self.monitor is None or len(spec.shape) != 2 or spec.shape[1] < 1:
            return None
        features = [f.name for f in self.monitor.profile.features]
        try:
            return profile_columns(features, spec.shape[1], columns)
        except ConfigError as exc:
            raise InvalidInput(f"model '{self.name}': {exc}") from None

    def predict(self, x: np.ndarray | Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Run the model on one input array (single-input models), a dict of arrays, or a
        pandas DataFrame whose columns feed the inputs by name."""
        inputs, datatypes = self._as_inputs(x)
        inputs = check_inputs(self.model, inputs, datatypes)
        try:
            outputs = self.model.predict(inputs)
        except Exception as exc:
            raise ModelFailure(self.name, exc) from exc
        rows = next(iter(inputs.values())).shape[0] if self._batchable and inputs else None
        check_outputs(self.model, outputs, self._outputs, rows)
        if self.monitor is not None:
            self.monitor.observe(inputs, outputs)
            if self._dispatcher is not None and time.monotonic() >= self._next_tick:
                self._tick()
        return outputs

    def _tick(self) -> None:
        # The server runs this on a timer; in-process it piggybacks on predict, at most
        # once per tick_s, in whichever thread gets the lock.
        if not self._tick_lock.acquire(blocking=False):
            return
        try:
            self._next_tick = time.monotonic() + self._config.tick_s
            from .hooks import DriftEvent

            report = self.monitor.report()
            status = self.monitor.status(report)
            previous, self._status = self._status, status
            self._dispatcher.observe(
                DriftEvent.from_report(
                    model=self.name,
                    version=self.model.version,
                    status=status,
                    previous=previous,
                    report=report,
                    window_s=self._config.window_s,
                    rows=self.monitor.window_rows,
                    time=time.time(),
                )
            )
        finally:
            self._tick_lock.release()

    def drift(self) -> dict[str, Any]:
        """The drift report, as GET /v2/models/{m}/drift returns it."""
        if self.monitor is None:
            raise ConfigError(f"model '{self.name}' was loaded without a profile: no drift to report")
        return self.monitor.to_json()  # type: ignore[no-any-return]

    def metrics(self, registry: Any = None) -> Any:
        """Register this model's drift metrics (the server's collector) into `registry`
        (a prometheus_client CollectorRegistry; a new one when None) and return it."""
        from prometheus_client import CollectorRegistry

        from .metrics import DriftCollector

        registry = registry if registry is not None else CollectorRegistry()
        monitors = [self.monitor] if self.monitor is not None else []
        registry.register(DriftCollector(lambda: monitors))
        return registry

    def close(self) -> None:
        """Judge drift once more for the hooks (a batch job shorter than tick_s would
        otherwise end without one look), wait up to 10 s for them, and free the model."""
        if self._dispatcher is not None:
            if self.monitor is not None and self.monitor.window_rows:
                self._tick()
            self._dispatcher.close(10.0)
        self.model.close()

    def __enter__(self) -> LocalModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The dtypes of the fixed-size V2 datatypes, in this machine's byte order (little-endian).
_V2_OF_NATIVE = {dtype: name for name, dtype in V2_TO_NUMPY.items() if name != "BYTES"}


def _unusual_dtype(name: str, arr: np.ndarray) -> tuple[np.ndarray, str]:
    """Strings and objects are BYTES, passed as they are (string models take str arrays);
    numbers in the other byte order are swapped; anything else has no V2 datatype."""
    try:
        datatype = v2_datatype(arr.dtype)
    except InvalidInput as exc:
        raise InvalidInput(f"input '{name}': {exc}") from None
    if datatype != "BYTES":
        arr = arr.astype(V2_TO_NUMPY[datatype])
    return arr, datatype


def load(
    spec: str,
    *,
    profile: str | None = None,
    hooks: Sequence[Mapping[str, Any]] = (),
    monitor: MonitorConfig | None = None,
    registry: str | None = None,
    **options: Any,
) -> LocalModel:
    """Load a model for in-process use.

    spec: `model.onnx`, `name=model.onnx`, `package.module:object`, or a registry
    reference (`churn@champion`, `churn/3`, `models:/churn@champion`) in `registry` (else
    MLRT_REGISTRY), whose registered profile is used unless `profile` names another.
    profile: a reference profile JSON: turns drift monitoring on.
    hooks: hook tables as in [[hooks]] (docs/hooks.md); they fire from predict calls.
    options: ModelConfig fields, e.g. intra_op_threads=2, inputs=[...].
    """
    base = parse_model_spec(spec)
    if base.registry_ref is not None:
        from .loading import resolve_registry_model

        base = resolve_registry_model(base, registry)
        profile = profile or base.profile
    try:
        fields = {"name": base.name, "source": base.source, "version": base.version, "profile": profile}
        config = ModelConfig(**{**fields, **options})
    except TypeError as exc:
        raise ConfigError(f"runtime.load: {exc}") from None
    model = load_model(config)
    monitor_config = monitor or MonitorConfig()
    mon = None
    if profile is not None:
        from .loading import build_monitor

        mon = build_monitor(config, model, monitor_config)
    dispatcher = None
    if hooks:
        from .hooks import HookDispatcher, build_hooks

        dispatcher = HookDispatcher(build_hooks(list(hooks)))
    return LocalModel(model, monitor=mon, dispatcher=dispatcher, monitor_config=monitor_config)
