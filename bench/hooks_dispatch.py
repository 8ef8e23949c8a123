"""What the drift monitor's tick pays the hook dispatcher: `HookDispatcher.observe` per call.

    python -m bench.hooks_dispatch [--rounds 15] [--calls 20000] [--json [PATH]]

The server's drift loop calls `observe` once per monitored model on every tick (docs/hooks.md),
on the event loop. Three cases, in interleaved rounds with their order rotated each round:

- steady: the status is the one observed last (nearly every tick);
- change, nothing fires: the status moves between ok and warn and the hook is on alert only;
- fires: ok -> alert with no cooldown, so every second call submits a firing to the hook
  thread (a hook that does nothing); a fresh dispatcher each round, and at most 100 firings
  a round so none is dropped. Only `observe` is timed, not the hook thread.

Each round times a block of calls with one clock read at either end (a clock read per call
would cost as much as the call); the table gives the median over rounds, with min and max.
This used to be a test with a bound; a timing is no test (bench/README.md).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from runtime.hooks import DriftEvent, HookDispatcher, HookSpec

from ._results import git as _git

SCRIPT_VERSION = 1
RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The code these figures measure, relative to the repository root.
MEASURED_PATHS = ("runtime/hooks", "bench/hooks_dispatch.py")
FIRINGS_PER_ROUND = 100  # well under the dispatcher's MAX_PENDING: nothing is dropped

FEATURES = (
    {"name": "age", "section": "features", "psi": 0.31, "js": 0.12, "status": "alert", "rows": 5000},
    {"name": "income", "section": "features", "psi": 0.02, "js": 0.01, "status": "ok", "rows": 5000},
)


def _event(status: str) -> DriftEvent:
    return DriftEvent(
        model="churn", version="3", status=status, previous="ok", features=FEATURES,
        window_s=600.0, rows=5000, time=1_700_000_000.0,
    )  # fmt: skip


class _Nothing:
    name = "nothing"

    def __call__(self, event: DriftEvent) -> None:
        pass


def _steady(calls: int) -> float:
    with HookDispatcher([HookSpec(_Nothing(), on=frozenset({"alert"}))]) as d:
        ev = _event("alert")
        d.observe(ev)
        t0 = time.perf_counter()
        for _ in range(calls):
            d.observe(ev)
        return (time.perf_counter() - t0) / calls


def _change_without_firing(calls: int) -> float:
    with HookDispatcher([HookSpec(_Nothing(), on=frozenset({"alert"}))]) as d:
        events = [_event("ok"), _event("warn")]
        t0 = time.perf_counter()
        for i in range(calls):
            d.observe(events[i & 1])
        elapsed = time.perf_counter() - t0
        assert d.fired == 0
        return elapsed / calls


def _fires(calls: int) -> float:
    n = min(calls, 2 * FIRINGS_PER_ROUND)
    d = HookDispatcher([HookSpec(_Nothing(), on=frozenset({"alert"}), cooldown_s=0)])
    try:
        events = [_event("ok"), _event("alert")]
        t0 = time.perf_counter()
        for i in range(n):
            d.observe(events[i & 1])
        elapsed = time.perf_counter() - t0
    finally:
        d.close()
    assert d.fired == n // 2, d.fired
    return elapsed / n


CASES: dict[str, Callable[[int], float]] = {
    "steady": _steady,
    "change, nothing fires": _change_without_firing,
    "fires (every 2nd call)": _fires,
}


def run(rounds: int, calls: int) -> dict[str, list[float]]:
    """Seconds per call, per case, one figure per round; cases rotated each round."""
    names = list(CASES)
    for name in names:  # warm up: imports, the first thread of a pool
        CASES[name](min(calls, 1000))
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out[name].append(CASES[name](calls))
    return out


def table(raw: dict[str, list[float]], calls: int) -> str:
    lines = [
        "| case | calls per round | rounds | µs per call, median [min-max] |",
        "|---|---|---|---|",
    ]
    for name, per_round in raw.items():
        us = [s * 1e6 for s in per_round]
        n = min(calls, 2 * FIRINGS_PER_ROUND) if name.startswith("fires") else calls
        lines.append(
            f"| {name} | {n:,} | {len(us)} | {statistics.median(us):.2f} [{min(us):.2f}-{max(us):.2f}] |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round, timed as one block")
    parser.add_argument(
        "--json",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="also write the raw results as JSON (default path: bench/results/hooks_dispatch-<date>.json)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 2:
        parser.error("--rounds must be >= 1 and --calls >= 2")
    now = _dt.datetime.now().astimezone()
    raw = run(args.rounds, args.calls)
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--", *MEASURED_PATHS).splitlines()
    local = f", with uncommitted changes to {', '.join(dirty)}" if dirty else ""
    print(
        f"HookDispatcher.observe, {now:%Y-%m-%d %H:%M} (commit {commit[:10]}{local}); "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, one thread calling"
    )
    print(table(raw, args.calls))
    if args.json is not None:
        path = Path(args.json) if args.json else RESULTS_DIR / f"hooks_dispatch-{now:%Y-%m-%dT%H%M}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        result = {
            "benchmark": "bench.hooks_dispatch",
            "script_version": SCRIPT_VERSION,
            "command": "python -m bench.hooks_dispatch " + " ".join(sys.argv[1:] if argv is None else argv),
            "meta": {
                "date": now.isoformat(timespec="seconds"),
                "commit": commit,
                "dirty": dirty,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "load_avg_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                },
            },
            "settings": {"rounds": args.rounds, "calls": args.calls, "firings_per_round": FIRINGS_PER_ROUND},
            "raw_seconds_per_call": raw,
        }
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"raw results: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
