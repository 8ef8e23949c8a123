"""HookDispatcher: decides when a status change (or a canary rollback) fires which hook, and runs
hooks off the event loop."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

from ._event import STATUS_RANK, DriftEvent, Event, HookSpec, RollbackEvent

logger = logging.getLogger("runtime.hooks")

# Firings waiting for a hook thread beyond this are dropped (and logged): a hook that hangs
# must not turn into unbounded memory. Firings are rare (one per drift episode), so this is
# only reached when every worker is stuck.
MAX_PENDING = 256


class HookDispatcher:
    """Fires hooks when a model's drift status rises into a hook's `on` statuses.

    `observe(event)` is called on every status evaluation; it only compares statuses and
    submits firings to a small thread pool, so it returns in microseconds and never raises.

    - De-duplication: a hook fires when the status of a (model, version) *rises* into one
      of its `on` statuses (ok < warn < alert). Staying there, or falling, fires nothing;
      the first observation of a model counts as coming from "ok".
    - Cooldown: a hook that fired for a (model, version) less than `cooldown_s` ago is
      suppressed (logged); that episode then stays unfired, unless the status rose above
      the one it fired for (warn, then alert: the escalation is news).

    Usage::

        dispatcher = HookDispatcher(build_hooks(config.hooks))
        dispatcher.observe(event)        # from the monitor's status tick
        dispatcher.notify(rollback)      # when the traffic router rolls a canary back
        dispatcher.close(timeout_s=10)   # at shutdown
    """

    def __init__(
        self,
        hooks: Sequence[HookSpec],
        *,
        max_workers: int = 2,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[str, str, str], None] | None = None,
    ) -> None:
        """`on_event(kind, model, text)` hears of each firing and its outcome (the server's
        timeline, runtime/server/events.py); called from the hook threads too."""
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self._hooks = tuple(hooks)
        self._clock = clock
        # No threads start until the first firing.
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mlrt-hook")
        # observe() may be called from the loop and, embedded, from other threads; the
        # lock is uncontended in the common case and held for a few dict operations.
        self._lock = threading.Lock()
        self._last_status: dict[tuple[str, str], str] = {}
        # Per (hook, family, model, version): when it last fired, and the highest status rank
        # it fired for within that cooldown.
        self._fired_at: dict[tuple[int, str, str, str], tuple[float, int]] = {}
        self._pending: set[Future[None]] = set()
        self._fired = 0
        self._closed = False
        self._on_event = on_event

    @property
    def hooks(self) -> tuple[HookSpec, ...]:
        return self._hooks

    @property
    def fired(self) -> int:
        """Firings submitted so far (suppressed and dropped ones excluded)."""
        return self._fired

    def observe(self, event: DriftEvent) -> None:
        """Note the model's current status and fire the hooks it calls for. Never raises."""
        try:
            self._observe(event)
        except Exception:  # the monitor's tick must survive anything here
            logger.exception("hook dispatch failed for model %r version %r", event.model, event.version)

    def notify(self, event: RollbackEvent) -> None:
        """Fire the hooks whose `on` holds "rollback" (cooldown permitting). Never raises.

        A rollback is an episode by itself (the canary's weight is 0 afterwards, and it only
        serves again when someone sets it), so there is no rise to wait for."""
        try:
            with self._lock:
                to_fire = self._due(event)
            for spec in to_fire:
                self._submit(spec, event)
        except Exception:
            logger.exception("hook dispatch failed for the rollback of model %r", event.model)

    def _observe(self, event: DriftEvent) -> None:
        rank = STATUS_RANK.get(event.status)
        if rank is None:
            logger.warning("ignoring drift event for model %r: unknown status %r", event.model, event.status)
            return
        key = (event.model, event.version)
        with self._lock:
            previous = self._last_status.get(key, "ok")
            self._last_status[key] = event.status
            if rank <= STATUS_RANK[previous] or not self._hooks:
                return  # the common case: no rise in status
            if event.previous != previous:
                # The hook sees the transition that fired it.
                event = dataclasses.replace(event, previous=previous)
            to_fire = self._due(event)
        for spec in to_fire:
            self._submit(spec, event)

    def _due(self, event: Event) -> list[HookSpec]:
        """The hooks this event fires, past their cooldowns; called under the lock. Drift
        and rollbacks keep separate cooldowns, so one never silences the other."""
        now = self._clock()
        family = "rollback" if isinstance(event, RollbackEvent) else "drift"
        due = []
        for index, spec in enumerate(self._hooks):
            if event.kind not in spec.on:
                continue
            key = (index, family, event.model, event.version)
            last, last_rank = self._fired_at.get(key, (None, -1))
            rank = STATUS_RANK.get(getattr(event, "status", ""), -1)
            # A rise above the status it fired for (warn, then alert) is news: not suppressed.
            if last is not None and now - last < spec.cooldown_s and rank <= last_rank:
                logger.info(
                    "hook %s suppressed for model %s version %s (%s): fired %.0f s ago, cooldown %g s",
                    spec.hook.name,
                    event.model,
                    event.version,
                    event.describe(),
                    now - last,
                    spec.cooldown_s,
                )
                continue
            within = last is not None and now - last < spec.cooldown_s
            # The cooldown restarts now; the rank it fired for carries over only inside one.
            self._fired_at[key] = (now, max(rank, last_rank) if within else rank)
            due.append(spec)
        return due

    def _submit(self, spec: HookSpec, event: Event) -> None:
        name = spec.hook.name
        with self._lock:
            if self._closed:
                logger.warning("hook %s not fired for model %s: dispatcher is closed", name, event.model)
                return
            if len(self._pending) >= MAX_PENDING:
                logger.error(
                    "hook %s dropped for model %s version %s: %d firings already waiting for a hook thread",
                    name,
                    event.model,
                    event.version,
                    len(self._pending),
                )
                return
            # Logged and told before submitting, so that "fired" always precedes the hook's
            # "done"/"failed" in the log and in the timeline.
            logger.info(
                "hook %s fired: model %s version %s %s", name, event.model, event.version, event.describe()
            )
            self._tell(event.model, f"hook {name} fired: version {event.version} {event.describe()}")
            future = self._executor.submit(self._run, spec, event)
            self._pending.add(future)
            self._fired += 1
        future.add_done_callback(self._done)

    def _tell(self, model: str, text: str) -> None:
        if self._on_event is not None:
            self._on_event("hook", model, text)

    def _done(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _run(self, spec: HookSpec, event: Event) -> None:
        name = spec.hook.name
        started = time.perf_counter()
        try:
            spec.hook(event)
        except BaseException as exc:  # noqa: B036 - nobody reads these futures; log everything
            self._tell(event.model, f"hook {name} failed: {type(exc).__name__}: {exc}")
            logger.error(
                "hook %s failed for model %s version %s after %.0f ms: %s: %s",
                name,
                event.model,
                event.version,
                (time.perf_counter() - started) * 1e3,
                type(exc).__name__,
                exc,
            )
        else:
            self._tell(event.model, f"hook {name} done in {(time.perf_counter() - started) * 1e3:.0f} ms")
            logger.info(
                "hook %s done for model %s version %s in %.0f ms",
                name,
                event.model,
                event.version,
                (time.perf_counter() - started) * 1e3,
            )

    def close(self, timeout_s: float | None = None) -> None:
        """Stop accepting firings, wait up to `timeout_s` (None: no limit) for those
        queued or running, then stop the pool. Hooks still running past the timeout
        are left to finish on their threads; queued ones are cancelled."""
        with self._lock:
            self._closed = True
            pending = set(self._pending)
        if pending:
            _, not_done = wait(pending, timeout=timeout_s)
            running = sum(1 for f in not_done if f.running())
            if not_done:
                logger.warning(
                    "%d hook firing(s) still running after %s s; %d queued behind them cancelled",
                    running, timeout_s, len(not_done) - running,
                )  # fmt: skip
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> HookDispatcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
