"""The server's drift loop: status ticks, hooks, and saving counts across restarts.

Every `tick_s` each monitored model's window is evaluated from its counts (a few
microseconds per feature), status changes are logged, and the hook dispatcher sees
the new status (it decides what fires). With `state_dir`, counts are saved every
`save_every_s` and at shutdown, and restored at start when the profile matches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import MonitorConfig
from ..errors import ConfigError
from ..hooks import DriftEvent, HookDispatcher
from ..repository import LoadedModel, Repository
from .periodic import Periodic

log = logging.getLogger("mlrt.drift")


def state_path(state_dir: str, entry: LoadedModel) -> Path:
    safe = f"{entry.model.name}@{entry.model.version}".replace(os.sep, "_")
    return Path(state_dir) / f"{safe}.npz"


def prepare_state_dir(path: str) -> None:
    """Create `path` if needed and prove a file can be written there, so a bad --state-dir
    stops the server at start instead of losing the counts at exit."""
    where = Path(path)
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".mlrt-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--state-dir {path}: drift counts could not be saved there ({exc.strerror or exc})"
        ) from None


class DriftService:
    def __init__(
        self, repository: Repository, config: MonitorConfig, dispatcher: HookDispatcher | None = None
    ) -> None:
        if config.state_dir:
            prepare_state_dir(config.state_dir)
        self.repository = repository
        self.config = config
        self.dispatcher = dispatcher
        self._status: dict[tuple[str, str], str] = {}
        self._ticks = Periodic("drift tick", config.tick_s, self._tick)
        self._last_save = time.monotonic()

    def monitored(self) -> list[LoadedModel]:
        return [e for e in self.repository.entries() if e.monitor is not None]

    # -- statuses ---------------------------------------------------------------
    def evaluate(self) -> None:
        """One tick: compute every monitored model's status, log changes, tell the hooks."""
        for entry in self.monitored():
            mon = entry.monitor
            assert mon is not None
            report = mon.report()
            status = mon.status(report)
            key = (mon.model, mon.version)
            previous = self._status.get(key, "ok")
            self._status[key] = status
            if status != previous:
                drifting = [d.name for d in report if d.status != "ok"]
                log.warning(
                    "model '%s' v%s drift status %s -> %s (%s)",
                    mon.model,
                    mon.version,
                    previous,
                    status,
                    ", ".join(drifting) or "no feature drifting",
                )
            if self.dispatcher is not None:
                self.dispatcher.observe(
                    DriftEvent.from_report(
                        model=mon.model,
                        version=mon.version,
                        status=status,
                        previous=previous,
                        report=report,
                        window_s=self.config.window_s,
                        rows=mon.window_rows,
                        time=time.time(),
                    )
                )

    async def _tick(self) -> None:
        self.evaluate()
        if self.config.state_dir and time.monotonic() - self._last_save >= self.config.save_every_s:
            self._last_save = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(None, self.save)

    def start(self) -> None:
        if self.monitored():
            self._ticks.start()

    async def stop(self) -> None:
        await self._ticks.stop()
        if self.config.state_dir:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.save)
            except OSError as exc:
                log.error("drift counts NOT saved to %s: %s", self.config.state_dir, exc)
        if self.dispatcher is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.dispatcher.close, 10.0)

    # -- durability -------------------------------------------------------------
    def save(self) -> None:
        """Write every monitor's counts (atomically: a crash never leaves half a file)."""
        assert self.config.state_dir
        os.makedirs(self.config.state_dir, exist_ok=True)
        for entry in self.monitored():
            assert entry.monitor is not None
            state: dict[str, Any] = entry.monitor.state()
            path = state_path(self.config.state_dir, entry)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **{k: np.asarray(v) for k, v in state.items()})
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def restore(self) -> None:
        if not self.config.state_dir:
            return
        for entry in self.monitored():
            assert entry.monitor is not None
            path = state_path(self.config.state_dir, entry)
            if not path.exists():
                continue
            try:
                with np.load(path) as data:
                    state = {k: data[k] for k in data.files}
                state = {k: (v.item() if v.ndim == 0 else v) for k, v in state.items()}
                if entry.monitor.restore(state):
                    log.info(
                        "model '%s' v%s: drift counts restored from %s",
                        entry.model.name,
                        entry.model.version,
                        path,
                    )
                else:
                    log.warning(
                        "model '%s' v%s: %s was saved for another profile; starting afresh",
                        entry.model.name,
                        entry.model.version,
                        path,
                    )
            except (OSError, ValueError, KeyError) as exc:
                log.warning(
                    "model '%s': cannot restore drift counts from %s: %s", entry.model.name, path, exc
                )
