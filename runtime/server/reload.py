"""Following registry aliases and swapping model versions without dropping a request.

A change loads the new version on a worker thread and warms it up (the batcher's
calibration runs it), then one dict assignment switches traffic; requests already
holding the old version finish on it, then it is unloaded. If loading fails the old
version keeps serving, the failure is logged and counted in mlrt_model_reloads_total.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from ..config import ModelConfig, ServerConfig
from ..errors import InvalidInput, ModelLoadError, ModelNotFound
from ..models.base import signature
from ..names import RULE, is_valid_name
from ..registry.errors import UnknownAlias, UnknownModel
from ..repository import LoadedModel, Repository
from .events import Events
from .peers import Peers
from .periodic import Periodic

log = logging.getLogger("mlrt.reload")


class Reloader:
    def __init__(
        self,
        repository: Repository,
        config: ServerConfig,
        events: Events | None = None,
        peers: Peers | None = None,
    ) -> None:
        self.repository = repository
        # Of several workers, the leader follows the aliases and has the others load what
        # it loaded: the server swaps once, not once per worker on its own clock.
        self.peers = peers
        self.config = config
        self.events = events if events is not None else Events()
        self._locks: dict[str, asyncio.Lock] = {}
        self._unloaded: dict[str, ModelConfig] = {}
        self._polls = Periodic("registry poll", config.registry_poll_s, self._poll_once)
        self._retiring: set[asyncio.Task[None]] = set()
        # Per model followed by alias, the version its alias named when it failed to load:
        # polled again and again, it would fail and log every few seconds until the alias moves.
        self._failed: dict[str, str] = {}

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def followed(self) -> list[LoadedModel]:
        """Models served by alias (name@alias): their alias is polled."""
        out = []
        for e in self.repository.entries():
            ref = e.origin.registry_ref if e.origin is not None else None
            if ref is not None and "@" in ref:
                out.append(e)
        return out

    async def reload(self, name: str) -> LoadedModel:
        """Load `name` again from where it came from (its alias' current target, or its file),
        then swap it in. Raises on failure; the old version keeps serving.

        `name` comes from a URL: it is a model name (runtime/names.py) and nothing else. A
        name not served or unloaded can only mean the registry's `name@production`; no spec
        syntax (a path, `module:object`, `served=ref`) is ever read from it."""
        if not is_valid_name(name):
            raise InvalidInput(f"invalid model name {name!r}: use {RULE}")
        async with self._lock(name):
            versions = self.repository.models.get(name)
            if versions:
                current = next(iter(versions.values()))
                origin = current.origin or current.config
            elif name in self._unloaded:
                origin = self._unloaded[name]
            elif self.repository.registry:
                ref = f"{name}@production"
                origin = ModelConfig(name=name, source=ref, registry_ref=ref)
            else:
                raise ModelNotFound(name)
            # A new version without a profile of its own is judged by the current one's, if
            # it fits: monitoring must not go quiet because a registration forgot --profile.
            kept = next((e.config.profile for e in (versions or {}).values() if e.monitor is not None), None)
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(None, self.repository.build, origin, kept)
            except Exception as exc:
                unknown = isinstance(exc, ModelLoadError) and isinstance(
                    exc.__cause__, (UnknownModel, UnknownAlias)
                )
                if unknown and not versions:
                    # Nothing of that name here or in the registry: not found, not a failed load.
                    raise ModelNotFound(name, message=str(exc.__cause__)) from None
                self.repository.metrics.reloads.labels(name, "failed").inc()
                self.events.add("load_failed", name, f"a new version failed to load: {exc}")
                log.error(
                    "model '%s': loading a new version failed; the current one keeps serving: %s", name, exc
                )
                raise
            old = self.repository.swap(new)
            self._unloaded.pop(name, None)
            self.repository.metrics.reloads.labels(name, "swapped").inc()
            was = ", ".join(o.model.version for o in old) or "none"
            self.events.add("swap", name, f"now version {new.model.version} (was {was})")
            log.info(
                "model '%s': now serving version %s (was %s)",
                name,
                new.model.version,
                ", ".join(o.model.version for o in old) or "none",
            )
            before = [signature(o.model.inputs) for o in old]
            if before and signature(new.model.inputs) not in before:
                log.warning(
                    "model '%s': version %s takes (%s), version %s took (%s): requests made for the "
                    "old inputs are now refused",
                    name, new.model.version, signature(new.model.inputs), old[0].model.version, before[0],
                )  # fmt: skip
            if new.profile_kept:
                log.warning(
                    "model '%s': version %s has no reference profile of its own, so its drift is judged "
                    "against the profile of version %s (%s); store one with the version (mlrt registry "
                    "register ... --profile REF.json) to judge it by its own",
                    name,
                    new.model.version,
                    ", ".join(o.model.version for o in old if o.monitor is not None),
                    kept,
                )
            elif new.monitor is None and any(o.monitor is not None for o in old):
                # Not an error (the version serves), but the user must not find out from a
                # dashboard that went quiet.
                log.warning(
                    "model '%s': version %s has no reference profile, so drift monitoring is OFF for "
                    "it (version %s was monitored); store one with the version (mlrt registry "
                    "register ... --profile REF.json) or pass --profile %s=REF.json",
                    name,
                    new.model.version,
                    ", ".join(o.model.version for o in old if o.monitor is not None),
                    name,
                )
        for entry in old:
            await self.repository.retire(entry, self.config.graceful_timeout_s)
        return new

    async def unload(self, name: str) -> None:
        if not is_valid_name(name):
            raise InvalidInput(f"invalid model name {name!r}: use {RULE}")
        async with self._lock(name):
            entries = self.repository.remove(name)
            if not entries:
                raise ModelNotFound(name)
            self._unloaded[name] = entries[0].origin or entries[0].config
        for entry in entries:
            await self.repository.retire(entry, self.config.graceful_timeout_s)
        log.info("model '%s': unloaded", name)
        self.events.add("unload", name, "unloaded")

    async def _poll_once(self) -> None:
        loop = asyncio.get_running_loop()
        for entry in self.followed():
            name = entry.config.name
            try:
                target = await loop.run_in_executor(None, self._alias_target, entry)
            except Exception as exc:
                log.warning("model '%s': cannot read its alias: %s", name, exc)
                continue
            if target is None or target == entry.model.version or self._lock(name).locked():
                continue
            if self._failed.get(name) == target:
                continue  # failed to load at an earlier poll: tried again when the alias moves
            log.info("model '%s': alias moved to version %s", name, target)
            try:
                await self.reload(name)
            except Exception:  # logged and counted in reload()
                self._failed[name] = target
                log.warning(
                    "model '%s': version %s is not tried again until the alias moves (or POST "
                    "/v2/repository/models/%s/load)", name, target, name,
                )  # fmt: skip
                continue
            self._failed.pop(name, None)
            if self.peers is not None:
                await self.peers.broadcast("POST", f"/v2/repository/models/{quote(name, safe='')}/load")

    def _alias_target(self, entry: LoadedModel) -> str | None:
        from ..registry import locate, parse_ref

        assert entry.origin is not None and entry.origin.registry_ref is not None
        reg, ref = locate(entry.origin.registry_ref, self.repository.registry)
        r = parse_ref(ref[len("models:/") :] if ref.startswith("models:/") else ref)
        return reg.alias_target(r.name, r.alias) if r.alias else None

    def start(self) -> None:
        if self.followed() and (self.peers is None or self.peers.leader):
            self._polls.start()

    async def stop(self) -> None:
        await self._polls.stop()
