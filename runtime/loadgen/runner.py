"""Running a load: in this process, or split over several generator processes whose
histograms are merged, and the rate sweep.

With `processes > 1` each child (started with the "spawn" method, so it owns a fresh
event loop) opens its connections, reports ready, and waits; the parent then sets one
start time for all, so their schedules line up. Children send progress snapshots and
finally their RunResult state over a queue; the parent merges them (histogram counts
add exactly).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from typing import Any

from ._base import LoadSpec, ProgressFn, run_sync
from .closed import ClosedLoop
from .open import OpenLoop
from .result import RunResult

__all__ = ["SweepResult", "run_load", "split", "sweep"]

START_MARGIN_NS = 50_000_000
READY_TIMEOUT_S = 60.0


def _driver(spec: LoadSpec, progress: ProgressFn | None, gate: Callable[[], int] | None = None):  # type: ignore[no-untyped-def]
    cls = ClosedLoop if spec.concurrency is not None else OpenLoop
    return cls(spec, progress, gate)


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` near-equal shares (the first ones get the remainder)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _child(spec: LoadSpec, q: Any, go: Any, start: Any) -> None:
    k = spec.process_index

    def progress(snap: dict[str, Any]) -> None:
        q.put(("progress", k, snap))

    def gate() -> int:
        q.put(("ready", k, None))
        if not go.wait(READY_TIMEOUT_S):
            raise RuntimeError("the parent did not start the run")
        return int(start.value)

    try:
        result = run_sync(_driver(spec, progress, gate))
        q.put(("result", k, result.to_state()))
    except BaseException as exc:  # reported to the parent, which says what failed
        q.put(("error", k, f"{type(exc).__name__}: {exc}"))


def run_load(spec: LoadSpec, processes: int = 1, progress: ProgressFn | None = None) -> RunResult:
    """Run one load (open or closed loop) and return its merged result."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    if processes == 1:
        return run_sync(_driver(spec, progress))
    specs = []
    conc = split(spec.concurrency, processes) if spec.concurrency is not None else None
    if conc is not None and min(conc) < 1:
        raise ValueError(f"concurrency {spec.concurrency} cannot be split over {processes} processes")
    for k in range(processes):
        specs.append(
            dataclasses.replace(
                spec,
                process_index=k,
                processes=processes,
                concurrency=conc[k] if conc is not None else None,
                connections=max(1, -(-spec.connections // processes)),
                max_connections=max(1, -(-spec.max_connections // processes)),
            )
        )
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    go = ctx.Event()
    start = ctx.Value("q", 0)
    procs = [ctx.Process(target=_child, args=(s, q, go, start), daemon=True) for s in specs]
    for p in procs:
        p.start()
    try:
        ready: set[int] = set()
        results: dict[int, RunResult] = {}
        snaps: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + READY_TIMEOUT_S
        total_s = spec.warmup_s + spec.duration_s + spec.timeout_s + READY_TIMEOUT_S
        while len(results) < processes:
            try:
                kind, k, payload = q.get(timeout=0.5)
            except queue.Empty:
                dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"a generator process exited with code {dead[0]}") from None
                if time.monotonic() > deadline + total_s:
                    raise RuntimeError("generator processes did not finish") from None
                continue
            if kind == "ready":
                ready.add(k)
                if len(ready) == processes:
                    start.value = time.perf_counter_ns() + START_MARGIN_NS
                    go.set()
            elif kind == "progress":
                snaps[k] = payload
                if progress is not None and len(snaps) == processes:
                    progress(merge_snapshots(list(snaps.values())))
            elif kind == "result":
                results[k] = RunResult.from_state(payload)
            else:
                raise RuntimeError(f"generator process {k} failed: {payload}")
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    merged = results[0]
    for k in range(1, processes):
        merged.merge(results[k])
    merged.offered_rps = spec.rate
    return merged


def merge_snapshots(snaps: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(snaps[0])
    for key in ("requests", "ok", "errors", "recent", "connections"):
        out[key] = sum(s[key] for s in snaps)
    # Percentiles do not add; the live line shows the worst process's (the final table is exact).
    out["p50_ms"] = max(s["p50_ms"] for s in snaps)
    out["p99_ms"] = max(s["p99_ms"] for s in snaps)
    return out


# -- sweep ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepResult:
    slo_ms: float
    max_error_rate: float
    steps: list[tuple[float, RunResult]]
    sustainable_rps: float | None
    stopped_because: str
    capacity_rps: float | None = None  # the closed-loop probe, when there was one

    def passes(self, r: RunResult) -> bool:
        return step_passes(r, self.slo_ms, self.max_error_rate)


def step_passes(r: RunResult, slo_ms: float, max_error_rate: float) -> bool:
    if r.requests == 0 or r.ok == 0:
        return False
    err = (r.requests - r.ok) / r.requests
    return err <= max_error_rate and r.latency.percentile(99.0) / 1e6 <= slo_ms


def sweep(
    spec: LoadSpec,
    *,
    slo_ms: float,
    max_error_rate: float = 0.001,
    step_rps: float | None = None,
    max_steps: int = 20,
    refine: int = 2,
    processes: int = 1,
    progress: ProgressFn | None = None,
    on_step: Callable[[float, RunResult, bool], None] | None = None,
) -> SweepResult:
    """Raise the open-loop rate by `step_rps` until a step's p99 exceeds `slo_ms` or its error
    fraction exceeds `max_error_rate`, then bisect `refine` times between the last passing and
    the first failing rate. Without `step_rps`, a 2 s closed-loop probe at concurrency 8 measures
    the capacity C and the steps are C/10."""
    capacity = None
    if step_rps is None:
        probe = dataclasses.replace(
            spec, rate=None, concurrency=8, duration_s=2.0, warmup_s=min(spec.warmup_s, 0.5)
        )
        res = run_load(probe, processes=1)
        capacity = res.ok / res.duration_s
        if capacity <= 0:
            raise RuntimeError(f"the probe got no successful answers: {res.statuses}")
        step_rps = max(1.0, round(capacity / 10.0, 0))
    steps: list[tuple[float, RunResult]] = []

    def one(rate: float) -> bool:
        r = run_load(dataclasses.replace(spec, rate=rate, concurrency=None), processes, progress)
        ok = step_passes(r, slo_ms, max_error_rate)
        steps.append((rate, r))
        if on_step is not None:
            on_step(rate, r, ok)
        return ok

    good: float | None = None
    bad: float | None = None
    rate = step_rps
    for _ in range(max_steps):
        if one(rate):
            good = rate
            rate += step_rps
        else:
            bad = rate
            break
    if bad is None:
        why = f"every step up to {good:,.0f} req/s met the target (raise --sweep-steps)"
    else:
        lo = good if good is not None else 0.0
        for _ in range(refine if good is not None else 0):
            mid = round((lo + bad) / 2.0, 1)
            if mid - lo < 1.0:
                break
            if one(mid):
                lo = good = mid
            else:
                bad = mid
        last = next(r for x, r in steps if x == bad)
        p99 = last.latency.percentile(99.0) / 1e6
        err = (last.requests - last.ok) / max(1, last.requests)
        why = (
            f"at {bad:,.0f} req/s p99 was {p99:.2f} ms (target {slo_ms:g} ms), "
            f"errors {100 * err:.2f}% (limit {100 * max_error_rate:g}%)"
        )
    steps.sort(key=lambda s: s[0])
    return SweepResult(slo_ms, max_error_rate, steps, good, why, capacity)
