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
import statistics
import time
from collections.abc import Callable
from typing import Any

from runtime.hooks import DriftEvent, HookDispatcher, HookSpec

from . import _results

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1
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


def calls_of(case: str, calls: int) -> int:
    """The calls a round of `case` times: the firing case stops at FIRINGS_PER_ROUND firings."""
    return min(calls, 2 * FIRINGS_PER_ROUND) if case.startswith("fires") else calls


def _fires(calls: int) -> float:
    n = calls_of("fires", calls)
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


def run_cases(rounds: int, calls: int) -> dict[str, list[float]]:
    """Seconds per call, per case, one figure per round; cases rotated each round."""
    names = list(CASES)
    for name in names:  # warm up: imports, the first thread of a pool
        CASES[name](min(calls, 1000))
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out[name].append(CASES[name](calls))
    return out


def markdown(saved: dict[str, Any], name: str = "hooks_dispatch") -> str:
    """A saved run's table (bench/_results.py's layout) in Markdown."""
    r, s = saved["results"], saved["settings"]
    lines = [
        "| case | calls per round | µs per call, median [min-max] |",
        "|---|---|---|",
    ]
    for case, per_round in r["seconds_per_call"].items():
        us = [v * 1e6 for v in per_round]
        spread = f"{statistics.median(us):.2f} [{min(us):.2f}-{max(us):.2f}]"
        lines.append(f"| {case} | {r['calls_per_round'][case]:,} | {spread} |")
    lines += [
        "",
        f"`HookDispatcher.observe`, one thread calling, {s['rounds']} rounds with the cases' order rotated; "
        "a round's figure is one block of calls timed with one clock read at either end, divided by its "
        "calls; median [lowest-highest round]. The firing case starts a fresh dispatcher each round and "
        f"fires at most {s['firings_per_round']} times a round (none dropped); only `observe` is timed, "
        "not the hook thread.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from ._results import Run

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round, timed as one block")
    _results.json_option(parser)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 2:
        parser.error("--rounds must be >= 1 and --calls >= 2")
    settings = {"rounds": args.rounds, "calls": args.calls, "firings_per_round": FIRINGS_PER_ROUND}
    run = Run("hooks_dispatch", SCRIPT_VERSION, settings, argv=argv, measured=("runtime/hooks",))
    raw = run_cases(args.rounds, args.calls)
    results = {
        "seconds_per_call": raw,
        "calls_per_round": {name: calls_of(name, args.calls) for name in raw},
    }
    print(markdown(run.envelope(results), "hooks_dispatch"), end="")
    if args.json is not None:
        run.save(results, args.json or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
