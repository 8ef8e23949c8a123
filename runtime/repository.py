"""The set of loaded models the server answers for, by name and version.

How a model version is loaded, wrapped in its batcher, metrics and monitor and warmed
up is runtime/loading.py; this module only holds, swaps and retires the results.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .batching import Batcher
from .config import ModelConfig, MonitorConfig
from .errors import ModelNotFound, ModelNotReady
from .metrics import ModelMetrics, ServingMetrics
from .models import Model

if TYPE_CHECKING:
    from .monitor.drift import ModelMonitor

#: How often a retiring version checks whether its last holders are done.
RETIRE_POLL_S = 0.002


@dataclass(eq=False)
class LoadedModel:
    config: ModelConfig
    model: Model
    batcher: Batcher
    metrics: ModelMetrics
    monitor: ModelMonitor | None = None
    ready: bool = True
    # The config as given (e.g. `name@production`), from which a reload starts again.
    origin: ModelConfig | None = None
    # True when the version brought no profile and is judged by the one of the version it
    # replaced (runtime/server/reload.py).
    profile_kept: bool = False
    # Requests that resolved this version and are not answered yet (server/pipeline.py):
    # a version swapped out is retired only once they are done.
    holders: int = 0
    # Output name -> V2 datatype, what every response encoder needs.
    output_datatypes: dict[str, str] = field(init=False)
    # Input name -> V2 datatype: what a checked request holds (the shadow copies' datatypes).
    input_datatypes: dict[str, str] = field(init=False)
    # Every output with its binary flag, (as JSON, as binary): what a request that names no
    # outputs gets (codec.select_outputs), made once rather than per request.
    every_output: tuple[tuple[tuple[str, bool], ...], tuple[tuple[str, bool], ...]] = field(init=False)

    def __post_init__(self) -> None:
        self.output_datatypes = {o.name: o.datatype for o in self.model.outputs}
        self.input_datatypes = {i.name: i.datatype for i in self.model.inputs}
        names = [o.name for o in self.model.outputs]
        self.every_output = (tuple((n, False) for n in names), tuple((n, True) for n in names))

    @property
    def batchable(self) -> bool:
        """True when every tensor's first dim is variable: rows can be stacked."""
        return self.batcher.batchable


@dataclass(eq=False)
class Repository:
    # name -> version -> entry; the first version registered is the default.
    models: dict[str, dict[str, LoadedModel]] = field(default_factory=dict)
    metrics: ServingMetrics = field(default_factory=ServingMetrics)
    monitor_config: MonitorConfig = field(default_factory=MonitorConfig)
    registry: str | None = None  # directory or URI of the registry for name@alias models
    # Names a client calls like a model (the server's endpoints, runtime/traffic): listed
    # beside the models when a name is neither, so the 404 says every name that works.
    endpoint_names: tuple[str, ...] = ()

    @classmethod
    def load(
        cls,
        configs: Iterable[ModelConfig],
        metrics: ServingMetrics | None = None,
        monitor_config: MonitorConfig | None = None,
        registry: str | None = None,
        pins: Mapping[str, str] | None = None,
    ) -> Repository:
        """Load every configured model (runtime/loading.py) into a new repository.

        `pins`: by model name, the registry version to load instead of the one its alias
        points at now (a restarted worker serves what the other workers serve)."""
        repo = cls(
            metrics=metrics if metrics is not None else ServingMetrics(),
            monitor_config=monitor_config if monitor_config is not None else MonitorConfig(),
            registry=registry,
        )
        for cfg in configs:
            repo.register(repo.build(cfg, pin=(pins or {}).get(cfg.name)))
        return repo

    def build(
        self, config: ModelConfig, fallback_profile: str | None = None, pin: str | None = None
    ) -> LoadedModel:
        """Load a version with this repository's metrics, monitoring and registry, without
        serving it yet (blocking: a worker thread's job once serving)."""
        from .loading import build

        return build(config, self.metrics, self.monitor_config, self.registry, fallback_profile, pin)

    def register(self, entry: LoadedModel) -> None:
        self.models.setdefault(entry.config.name, {})[entry.model.version] = entry

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
        """Finish what the entry has queued and running, then release it.

        Requests that resolved this version before it was swapped out (their bodies
        still arriving or decoding) are waited for first, so none of them fails."""
        entry.ready = False
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while entry.holders > 0 and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(RETIRE_POLL_S)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        await entry.batcher.close(remaining)
        entry.model.close()
        self.metrics.forget(entry.model.name, entry.model.version)

    def get(self, name: str, version: str | None = None) -> LoadedModel:
        versions = self.models.get(name)
        if not versions:
            raise ModelNotFound(name, served=self.models, endpoints=self.endpoint_names)
        if version is None:
            entry = next(iter(versions.values()))
        else:
            try:
                entry = versions[version]
            except KeyError:
                raise ModelNotFound(name, version, served=versions) from None
        if not entry.ready:
            raise ModelNotReady(name)
        if not entry.batcher.healthy:
            raise ModelNotReady(name, "not ready: every thread is stuck in a call past its deadline")
        return entry

    def entries(self) -> list[LoadedModel]:
        return [e for versions in self.models.values() for e in versions.values()]

    @property
    def ready(self) -> bool:
        return bool(self.models) and all(e.ready and e.batcher.healthy for e in self.entries())

    async def close(self, timeout_s: float | None = None) -> None:
        """Finish queued and running work of every model, then release them."""
        for entry in self.entries():
            await self.retire(entry, timeout_s)
