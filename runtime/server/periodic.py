"""A background step that runs every few seconds on the server's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("mlrt.server")


class Periodic:
    """Runs `step` every `every_s` seconds from start() until stop().

    A failing step is logged and the next one still runs: the loop must outlive any
    one bad tick.
    """

    def __init__(self, name: str, every_s: float, step: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.every_s = every_s
        self.step = step
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                await self.step()
            except Exception:
                log.exception("%s failed", self.name)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="mlrt-" + self.name.replace(" ", "-")
            )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
