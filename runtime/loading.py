"""Loading one model version: resolve a registry reference, load the model, wrap it in
its batcher, metrics and drift monitor, calibrate the batcher and warm the model up.
The result is a LoadedModel for the repository (runtime/repository.py) to serve."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .batching import Batcher
from .config import ModelConfig, MonitorConfig
from .datatypes import numpy_dtype
from .errors import ConfigError, ModelLoadError
from .metrics import ServingMetrics
from .models import Model, load_model
from .repository import LoadedModel

if TYPE_CHECKING:
    from .monitor.drift import ModelMonitor

log = logging.getLogger("mlrt.repository")


def build(
    config: ModelConfig,
    metrics: ServingMetrics,
    monitor_config: MonitorConfig,
    registry: str | None,
    fallback_profile: str | None = None,
    pin: str | None = None,
) -> LoadedModel:
    """Load, calibrate and warm up one model version, without serving it yet.

    Blocking (file I/O, model load). A registry reference is resolved to the version it
    points at now, or to version `pin` of the same model; the entry remembers the reference
    (`origin`) to reload from it and to follow its alias.
    `fallback_profile`: the profile to judge drift by when the version brings none (the
    version it replaces was monitored), if it fits the new version's inputs and outputs.
    """
    origin = config
    if config.registry_ref is not None:
        if pin is not None:
            config = dataclasses.replace(config, registry_ref=pinned_ref(config.registry_ref, pin))
        config = resolve_registry_model(config, registry)
    model = load_model(config)
    entry = None
    if config.profile is None and fallback_profile is not None:
        try:
            entry = wrap(
                dataclasses.replace(config, profile=fallback_profile), model, metrics, monitor_config
            )
            entry.profile_kept = True
        except (ConfigError, ValueError) as exc:
            log.warning("model '%s': the previous profile does not fit the new version: %s", config.name, exc)
    if entry is None:
        entry = wrap(config, model, metrics, monitor_config)
    entry.origin = origin
    return entry


def wrap(
    config: ModelConfig, model: Model, metrics: ServingMetrics, monitor_config: MonitorConfig
) -> LoadedModel:
    """Wrap a loaded model in its batcher, metrics and monitor, and calibrate it."""
    mm = metrics.for_model(model.name, model.version)
    monitor = build_monitor(config, model, monitor_config) if config.profile else None
    batcher = Batcher(
        model,
        config,
        on_batch=lambda b: mm.observe_batch(b.rows, b.queue_s, b.compute_s, b.failed),
        observer=monitor.observe if monitor is not None else None,
    )
    metrics.for_model(
        model.name,
        model.version,
        queue_depth=lambda: batcher.queued_rows,
        stuck_calls=lambda: batcher.stuck_calls,
        observe_failures=(lambda: batcher.observer_failures) if monitor is not None else None,
    )
    try:
        batcher.calibrate(zero_inputs(model))
    except Exception as exc:  # a model that cannot run zeros still serves, on threads
        log.warning(
            "model '%s': calibration on a zero row failed (%s); batches run on executor threads",
            config.name,
            exc,
        )
    else:
        where = (
            f"batches predicted under {batcher.inline_max_us:.0f} us run inline"
            if batcher.inline_max_us > 0
            else "batches run on executor threads"  # a Python model's cost is not bounded
        )
        log.info(
            "model '%s': compute ~%.1f us + %.2f us/row; %s",
            config.name, batcher.fixed_us, batcher.per_row_us, where,
        )  # fmt: skip
    if monitor is not None:
        # Calibration rows were counted, but they are not traffic.
        monitor.inputs.reset()
        if monitor.outputs is not None:
            monitor.outputs.reset()
    return LoadedModel(config=config, model=model, batcher=batcher, metrics=mm, monitor=monitor)


def zero_inputs(model: Model) -> dict[str, np.ndarray]:
    """One row of zeros (empty strings for BYTES) per input."""
    out = {}
    for s in model.inputs:
        shape = tuple(1 if d == -1 else d for d in s.shape)
        if s.datatype == "BYTES":
            arr = np.empty(shape, dtype=object)
            arr.fill(b"")
        else:
            arr = np.zeros(shape, numpy_dtype(s.datatype))
        out[s.name] = arr
    return out


def build_monitor(config: ModelConfig, model: Model, monitor_config: MonitorConfig) -> ModelMonitor:
    """The drift monitor of a model, from the profile its config names."""
    from .monitor.drift import ModelMonitor
    from .monitor.profile import Profile

    assert config.profile
    try:
        profile = Profile.load(config.profile)
    except FileNotFoundError:
        raise ConfigError(f"model '{config.name}': profile {config.profile!r} not found") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"model '{config.name}': invalid profile {config.profile!r}: {exc}") from None
    monitor = ModelMonitor(
        profile,
        model=model.name,
        version=model.version,
        inputs=[(s.name, s.shape) for s in model.inputs],
        outputs=[(s.name, s.shape) for s in model.outputs],
        config=monitor_config,
    )
    _check_kinds(config.name, monitor, model)
    _warn_on_dtypes(config.name, monitor, model)
    return monitor


def _check_kinds(name: str, monitor: ModelMonitor, model: Model) -> None:
    """Refuse a profile whose feature kinds cannot be the values the model takes: a numeric
    feature (or categorical one of numeric levels) read from a text input, or a feature of
    text levels read from a numeric one. Served, every value fell outside the reference:
    a numeric feature failed each batch's count (and /drift said ok over an empty window),
    text levels read as "other" alarmed on unchanged data."""
    from .monitor.histogram import numeric_levels
    from .monitor.profile import NUMERIC

    for section, f, spec in _fed_by(monitor, model):
        text = spec.datatype == "BYTES"
        if f.kind == NUMERIC:
            wrong = "is numeric" if text else None
        elif text:
            wrong = "has numeric levels" if f.levels and numeric_levels(f.levels) else None
        else:
            wrong = "has text levels" if any(isinstance(v, str) for v in f.levels) else None
        if wrong is not None:
            takes = "text (BYTES)" if text else f"numbers ({spec.datatype})"
            raise ConfigError(
                f"model '{name}': the profile's {section} {f.name!r} {wrong}, but "
                f"{'input' if section == 'feature' else 'output'} {spec.name!r} holds {takes}: the "
                "profile was fitted on other data than the model takes; refit it with "
                "`mlrt profile DATA -o REF.json --model MODEL`"
            )


def _fed_by(monitor: ModelMonitor, model: Model) -> Iterator[tuple[str, Any, Any]]:
    """Each profile feature ("feature") and output ("output") with the spec of the tensor
    it reads, for the checks of a profile against its model at load."""
    specs = {s.name: s for s in (*model.inputs, *model.outputs)}
    for section, (features, columns) in zip(("feature", "output"), monitor.column_sources(), strict=False):
        for f, (tensor, _) in zip(features, columns, strict=True):
            spec = specs.get(tensor)
            if spec is not None:
                yield section, f, spec


def _warn_on_dtypes(name: str, monitor: ModelMonitor, model: Model) -> None:
    """Say when the profile was not fitted in the dtypes the model receives: its edges
    then only agree with the served values as far as rounding allows."""
    from .datatypes import numpy_dtype

    off = []
    for _, f, spec in _fed_by(monitor, model):
        if f.kind != "numeric" or spec.datatype == "BYTES":
            continue
        served = numpy_dtype(spec.datatype).name
        if f.dtype != served and not (f.dtype is None and served == "float64"):
            if _exact_in(f, served):
                continue
            off.append(f"{f.name} ({f.dtype or 'unrecorded'}, served {served})")
    if off:
        log.warning(
            "model '%s': the profile was not fitted in the dtypes the model receives: %s%s; "
            "counts can differ from the reference by rounding. Refit with "
            "`mlrt profile DATA -o REF.json --model MODEL`",
            name,
            ", ".join(off[:5]),
            f" and {len(off) - 5} more" if len(off) > 5 else "",
        )


def _exact_in(f: Any, served: str) -> bool:
    """Whether every value of an integer feature's reference range is exactly a value of
    the float type it is served in (Month 5..9 profiled as int64, served as float64): the
    edges then count the same, and a warning about rounding would be wrong."""
    if f.dtype is None or np.dtype(f.dtype).kind not in "iu" or f.low is None or f.high is None:
        return False
    exact = {"float64": 2**53, "float32": 2**24, "float16": 2**11}.get(served)
    return exact is not None and max(abs(f.low), abs(f.high)) <= exact


def pinned_ref(ref: str, version: str) -> str:
    """The registry reference of one version of the model `ref` names (`fraud@production`,
    `fraud`, `models:/fraud@champion` -> `fraud/3`, `models:/fraud/3`)."""
    mlflow = ref.startswith("models:/")
    body = ref[len("models:/") :] if mlflow else ref
    name = body.split("@")[0].split("/")[0]
    return f"{'models:/' if mlflow else ''}{name}/{version}"


def resolve_registry_model(config: ModelConfig, registry: str | None) -> ModelConfig:
    """The concrete config (file, version, profile) of the version a registry ref points at."""
    from .registry import RegistryError, locate

    assert config.registry_ref is not None
    try:
        reg, ref = locate(config.registry_ref, registry)
        resolved = reg.resolve(ref)
    except RegistryError as exc:
        raise ModelLoadError(f"model '{config.name}': {exc}") from exc
    profile = config.profile or (str(resolved.profile_path) if resolved.profile_path else None)
    return dataclasses.replace(
        config,
        source=str(resolved.model_path),
        version=resolved.version,
        backend=None,
        profile=profile,
        registry_ref=None,
    )
