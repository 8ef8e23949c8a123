"""The set of loaded models the server answers for, by name and version."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .batching import Batcher
from .config import ModelConfig, MonitorConfig
from .datatypes import numpy_dtype
from .errors import ConfigError, ModelLoadError, ModelNotFound, ModelNotReady
from .metrics import ModelMetrics, ServingMetrics
from .models import Model, load_model

if TYPE_CHECKING:
    from .monitor.drift import ModelMonitor

log = logging.getLogger("mlrt.repository")


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
    _warn_on_dtypes(config.name, monitor, model)
    return monitor


def _warn_on_dtypes(name: str, monitor: ModelMonitor, model: Model) -> None:
    """Say when the profile was not fitted in the dtypes the model receives: its edges
    then only agree with the served values as far as rounding allows."""
    from .datatypes import numpy_dtype

    specs = {s.name: s for s in (*model.inputs, *model.outputs)}
    off = []
    for features, columns in monitor.column_sources():
        for f, (tensor, _) in zip(features, columns, strict=True):
            spec = specs.get(tensor)
            if f.kind != "numeric" or spec is None or spec.datatype == "BYTES":
                continue
            served = numpy_dtype(spec.datatype).name
            if f.dtype != served and not (f.dtype is None and served == "float64"):
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


@dataclass(eq=False)
class LoadedModel:
    config: ModelConfig
    model: Model
    runner: Batcher
    metrics: ModelMetrics
    monitor: ModelMonitor | None = None
    ready: bool = True
    # The config as given (e.g. `name@production`), from which a reload starts again.
    origin: ModelConfig | None = None

    @property
    def batchable(self) -> bool:
        """True when every tensor's first dim is variable: rows can be stacked."""
        return self.runner.batchable


@dataclass(eq=False)
class Repository:
    # name -> version -> entry; the first version registered is the default.
    models: dict[str, dict[str, LoadedModel]] = field(default_factory=dict)
    metrics: ServingMetrics = field(default_factory=ServingMetrics)
    monitor_config: MonitorConfig = field(default_factory=MonitorConfig)
    registry: str | None = None  # directory or URI of the registry for name@alias models

    @classmethod
    def load(
        cls,
        configs: Iterable[ModelConfig],
        metrics: ServingMetrics | None = None,
        monitor_config: MonitorConfig | None = None,
        registry: str | None = None,
    ) -> Repository:
        repo = cls(
            metrics=metrics if metrics is not None else ServingMetrics(),
            monitor_config=monitor_config if monitor_config is not None else MonitorConfig(),
            registry=registry,
        )
        for cfg in configs:
            repo.register(repo.build(cfg))
        return repo

    def build(self, config: ModelConfig) -> LoadedModel:
        """Load, calibrate and warm up one model, without serving it yet.

        Blocking (file I/O, model load): call it on a worker thread once serving.
        A registry reference is resolved to the version it points at now.
        """
        origin = config
        if config.registry_ref is not None:
            config = resolve_registry_model(config, self.registry)
        entry = self.add_entry(config, load_model(config))
        entry.origin = origin
        return entry

    def add_entry(self, config: ModelConfig, model: Model) -> LoadedModel:
        """Wrap a loaded model in its batcher, metrics and monitor, and calibrate it."""
        mm = self.metrics.for_model(model.name, model.version)
        monitor = build_monitor(config, model, self.monitor_config) if config.profile else None
        runner = Batcher(
            model,
            config,
            on_batch=lambda b: mm.observe_batch(b.rows, b.queue_s, b.compute_s, b.failed),
            observer=monitor.observe if monitor is not None else None,
        )
        self.metrics.for_model(model.name, model.version, queue_depth=lambda: runner.queued_rows)
        try:
            runner.calibrate(zero_inputs(model))
        except Exception as exc:  # a model that cannot run zeros still serves, on threads
            log.warning(
                "model '%s': calibration on a zero row failed (%s); batches run on executor threads",
                config.name,
                exc,
            )
        else:
            log.info(
                "model '%s': compute ~%.1f us + %.2f us/row; batches predicted under %.0f us run inline",
                config.name,
                runner.fixed_us,
                runner.per_row_us,
                runner.inline_max_us,
            )
        if monitor is not None:
            # Calibration rows were counted, but they are not traffic.
            monitor.inputs.reset()
            if monitor.outputs is not None:
                monitor.outputs.reset()
        return LoadedModel(config=config, model=model, runner=runner, metrics=mm, monitor=monitor)

    def register(self, entry: LoadedModel) -> None:
        self.models.setdefault(entry.config.name, {})[entry.model.version] = entry

    def add(self, config: ModelConfig, model: Model) -> LoadedModel:
        entry = self.add_entry(config, model)
        self.register(entry)
        return entry

    def swap(self, entry: LoadedModel) -> list[LoadedModel]:
        """Serve `entry` as its model's only version, at once; returns the replaced ones.

        One dict assignment: a request resolves its entry before or after it, never half.
        Requests already holding an old entry finish on it (drain it with retire()).
        """
        old = list(self.models.get(entry.config.name, {}).values())
        self.models[entry.config.name] = {entry.model.version: entry}
        return [e for e in old if e is not entry]

    def remove(self, name: str) -> list[LoadedModel]:
        return list(self.models.pop(name, {}).values())

    async def retire(self, entry: LoadedModel, timeout_s: float | None = None) -> None:
        """Finish what the entry has queued and running, then release it."""
        entry.ready = False
        await entry.runner.close(timeout_s)
        entry.model.close()
        self.metrics.forget(entry.model.name, entry.model.version)

    def get(self, name: str, version: str | None = None) -> LoadedModel:
        versions = self.models.get(name)
        if not versions:
            raise ModelNotFound(name, served=self.models)
        if version is None:
            entry = next(iter(versions.values()))
        else:
            try:
                entry = versions[version]
            except KeyError:
                raise ModelNotFound(name, version, served=versions) from None
        if not entry.ready:
            raise ModelNotReady(name)
        return entry

    def entries(self) -> list[LoadedModel]:
        return [e for versions in self.models.values() for e in versions.values()]

    @property
    def ready(self) -> bool:
        return bool(self.models) and all(e.ready for e in self.entries())

    async def close(self, timeout_s: float | None = None) -> None:
        """Finish queued and running work of every model, then release them."""
        for entry in self.entries():
            await self.retire(entry, timeout_s)
