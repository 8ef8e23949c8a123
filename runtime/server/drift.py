"""The server's drift loop: status ticks and hooks.

Every `tick_s` each monitored model's window is evaluated from its counts (a few
microseconds per feature), status changes are logged, and the hook dispatcher sees
the new status (it decides what fires). With `state_dir`, counts are saved every
`save_every_s` and at shutdown, and restored at start (drift_state.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from ..config import MonitorConfig
from ..hooks import DriftEvent, HookDispatcher
from ..repository import LoadedModel, Repository
from . import drift_state
from .events import Events
from .peers import Peers
from .periodic import Periodic

log = logging.getLogger("mlrt.drift")


class DriftService:
    def __init__(
        self,
        repository: Repository,
        config: MonitorConfig,
        dispatcher: HookDispatcher | None = None,
        events: Events | None = None,
        peers: Peers | None = None,
    ) -> None:
        if config.state_dir:
            drift_state.prepare_state_dir(config.state_dir)
        self.repository = repository
        self.config = config
        self.dispatcher = dispatcher
        self.events = events
        # One of several workers: the leader judges the summed counts of all of them (and
        # alone tells the hooks); the others only keep and save their own counts.
        self.peers = peers
        self.judges = peers is None or peers.leader
        self._status: dict[tuple[str, str], str] = {}
        self._ticks = Periodic("drift tick", config.tick_s, self._tick)
        self._last_save = time.monotonic()
        self.save_error: str | None = None  # the final save's failure, for the exit status

    def monitored(self) -> list[LoadedModel]:
        return [e for e in self.repository.entries() if e.monitor is not None]

    # -- statuses ---------------------------------------------------------------
    def evaluate(self, monitors: Sequence[Any] | None = None) -> None:
        """One tick: compute every monitored model's status, log changes, tell the hooks.
        `monitors`: what to judge (by default this process's own monitors)."""
        if monitors is None:
            monitors = [e.monitor for e in self.monitored()]
        for mon in monitors:
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
                if self.events is not None:
                    what = ", ".join(drifting[:5]) or "no feature drifting"
                    text = f"v{mon.version} drift {previous} -> {status} ({what})"
                    self.events.add("drift", mon.model, text)
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
        if self.peers is None:
            self.evaluate()
        elif self.judges:
            from .merged import summed_monitors

            self.evaluate(await summed_monitors(self.repository, self.peers))
        if self.config.state_dir and time.monotonic() - self._last_save >= self.config.save_every_s:
            self._last_save = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(None, self.save)

    def start(self) -> None:
        if self.monitored() and (self.judges or self.config.state_dir):
            self._ticks.start()

    async def stop(self) -> None:
        await self._ticks.stop()
        if self.config.state_dir:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.save)
            except OSError as exc:
                # Said in the log now, and in the exit status (runtime/server/run.py).
                self.save_error = f"drift counts NOT saved to {self.config.state_dir}: {exc}"
                log.error("%s", self.save_error)
        if self.dispatcher is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.dispatcher.close, 10.0)

    # -- durability (drift_state.py) ------------------------------------------------
    def save(self) -> None:
        assert self.config.state_dir
        drift_state.save(self.config.state_dir, self.monitored(), self._worker)

    def restore(self) -> None:
        if self.config.state_dir:
            drift_state.restore(self.config.state_dir, self.monitored(), self._worker)

    @property
    def _worker(self) -> int:
        return self.peers.index if self.peers is not None else 0
