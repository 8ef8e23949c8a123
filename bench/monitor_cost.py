"""What drift monitoring adds to an in-process prediction, counted in instructions.

    python -m bench.monitor_cost [--calls 1024,3072] [--repeat 2] [--jobs 1] [--rounds 15] [--json [PATH]]

The model: the bench MLP with 8 FP32 features (bench/models.py), `runtime.load(model,
profile=...)` against plain `runtime.load(model)`, one (1, 8) float32 row per `predict`.
The profile is fitted on 2000 normal rows, inputs and outputs, in float32.

Instructions (the figure the goal is set in): each system runs under
`valgrind --tool=callgrind` for N1 and N2 predicts, and the per-call count is
(I(N2) - I(N1)) / (N2 - N1), which removes start-up, loading and warm-up.  Only the
measured loop is counted (collection is switched on inside `functools.reduce`, which
drives the loop and nothing else), and only the main thread (onnxruntime's and
OpenBLAS's threads spin for as long as the scheduler lets them, a different number
of instructions every run).  N1 and N2 are multiples of the monitor's 64-row staging
buffer, so both runs count the same whole number of flushes per call.  Each run is
repeated: the counts agree to a few hundredths of a percent (what remains varies with
where the allocator's pools happen to fall), where wall time varies by 10-30%.  They
agree only when the runs have the machine's cores to themselves: two callgrind runs at
once on 2 cores add 0.2-1% to a plain predict's count, differently each run (most likely the
main thread waiting on onnxruntime's threads), so the runs go one at a time unless
--jobs says otherwise.

Time-driven work is made explicit: the measured monitor's sub-windows are 10^8 s long,
so no rotation falls inside the measured calls (the per-call path still reads the clock
and compares, as it always does).  A rotation's own cost is measured apart: the same
monitor's `advance(now)` with `now` one sub-window later each call; the server's
default window rotates once a minute (600 s in 10 sub-windows), so its share per
prediction is that figure divided by the predictions in a minute.

Wall time, for context: both systems in one process, paired interleaved rounds (order
rotated), medians of per-round p50 with their spread, and the median of per-round
differences.  Wall time on a shared machine moves by more than the monitor costs.

Without valgrind the instruction counts are skipped, with a message, and the rest runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import gc
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import _results
from ._results import spread

ROOT = Path(__file__).resolve().parent.parent
#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1
GOAL_PCT = 5.0  # issue 15: the monitor adds under 5% of a plain predict's instructions
N_FEATURES = 8
#: Sub-windows longer than any run: no rotation happens while predicts are measured.
MEASURED_WINDOW_S = 1e9
MEASURED_SLICES = 10
DEFAULT_SUBWINDOW_S = 60.0  # MonitorConfig(): 600 s in 10 sub-windows
WARMUP_CALLS = 256
ROTATION_CALLS = 200  # wall time: monitor.advance calls timed as one block per round


def _note(msg: str) -> None:
    print(f"[bench.monitor_cost] {msg}", file=sys.stderr, flush=True)


# -- the model and its profile ---------------------------------------------------------------
def build(workdir: Path) -> tuple[Path, Path]:
    """The 8-feature bench MLP and a float32 profile of its inputs and outputs."""
    import runtime
    from runtime.monitor import Profile

    from . import models

    model = models.mlp(workdir / "mlp8.onnx", n_features=N_FEATURES)
    X = np.random.default_rng(1).normal(size=(2000, N_FEATURES)).astype(np.float32)
    Y = runtime.load(str(model)).predict(X)["output"]
    profile = workdir / "ref.json"
    Profile.fit(
        X, outputs=Y, output_names=["output[0]", "output[1]"], dtypes="float32", output_dtypes="float32"
    ).save(str(profile))
    return model, profile


def load(model: Path, profile: Path | None) -> object:
    import runtime
    from runtime.config import MonitorConfig

    config = MonitorConfig(window_s=MEASURED_WINDOW_S, slices=MEASURED_SLICES)
    return runtime.load(str(model), profile=None if profile is None else str(profile), monitor=config)


def the_row() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(1, N_FEATURES)).astype(np.float32)


# -- the child: what runs under callgrind ----------------------------------------------------
def child(mode: str, calls: int, model: Path, profile: Path) -> None:
    """`calls` predicts (or rotations) inside functools.reduce, where collection is on."""
    m = load(model, None if mode == "plain" else profile)
    row = the_row()
    predict = m.predict  # type: ignore[attr-defined]
    if mode == "rotation":
        mon = m.monitor  # type: ignore[attr-defined]
        step = MEASURED_WINDOW_S / MEASURED_SLICES
        start = time.monotonic() + MEASURED_WINDOW_S  # the whole ring rotates out first
        for i in range(WARMUP_CALLS):
            predict(row)
            mon.advance(start + i * step)
        base = start + WARMUP_CALLS * step
        fn = lambda _, i: mon.advance(base + i * step)  # noqa: E731  # one sub-window per call
    else:
        for _ in range(WARMUP_CALLS):
            predict(row)
        fn = lambda _, i: predict(row)  # noqa: E731
    gc.collect()  # the same collector state at the start of every run
    functools.reduce(fn, range(calls), None)


def _callgrind(mode: str, calls: int, model: Path, profile: Path, workdir: Path, tag: str) -> int:
    """Instructions the main thread executed inside the measured loop."""
    out = workdir / f"callgrind.{mode}.{calls}.{tag}"
    env = {
        **os.environ,
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        "valgrind", "--tool=callgrind", "--separate-threads=yes", "--collect-atstart=no",
        "--toggle-collect=functools_reduce", f"--callgrind-out-file={out}",
        sys.executable, "-m", "bench.monitor_cost", "--child", mode, str(calls), str(model), str(profile),
    ]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    main = Path(f"{out}-01")
    counted = 0
    for line in main.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            counted = int(line.split()[1])
            break
    for f in workdir.glob(f"{out.name}*"):
        f.unlink()
    if counted == 0:
        raise RuntimeError(
            "callgrind counted nothing inside functools.reduce: this Python's symbols may be "
            "stripped (callgrind needs the `functools_reduce` symbol to switch counting on)"
        )
    return counted


def instructions(
    model: Path, profile: Path, workdir: Path, calls: tuple[int, int], repeat: int, jobs: int
) -> dict[str, object]:
    n1, n2 = calls
    modes = ("plain", "monitored", "rotation")
    runs = [(mode, n, r) for r in range(repeat) for mode in modes for n in (n1, n2)]
    _note(f"{len(runs)} callgrind runs, {jobs} at a time (about 15 s each alone) ...")
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = {
            run: pool.submit(_callgrind, run[0], run[1], model, profile, workdir, str(run[2])) for run in runs
        }
        raw = {run: f.result() for run, f in futures.items()}
    per_call: dict[str, list[float]] = {}
    for mode in ("plain", "monitored", "rotation"):
        per_call[mode] = [(raw[(mode, n2, r)] - raw[(mode, n1, r)]) / (n2 - n1) for r in range(repeat)]
    added = [m - p for m, p in zip(per_call["monitored"], per_call["plain"], strict=True)]
    return {
        "raw": [{"mode": m, "calls": n, "repeat": r, "instructions": raw[(m, n, r)]} for m, n, r in runs],
        "per_call": per_call,
        "added": added,
        "added_pct": [100 * a / p for a, p in zip(added, per_call["plain"], strict=True)],
    }


# -- wall time ------------------------------------------------------------------------------
def wall_time(model: Path, profile: Path, rounds: int, calls: int) -> dict[str, object]:
    from ._harness import paired_rounds

    plain, monitored = load(model, None), load(model, profile)
    row = the_row()
    res = paired_rounds(
        {"plain": lambda: plain.predict(row), "monitored": lambda: monitored.predict(row)},  # type: ignore[attr-defined]
        rounds=rounds,
        calls=calls,
        warmup=500,
    )
    p50 = {name: [p for p, _ in v] for name, v in res.items()}
    p99 = {name: [p for _, p in v] for name, v in res.items()}
    diff = [m - p for m, p in zip(p50["monitored"], p50["plain"], strict=True)]
    # A rotation, timed: the monitored model's monitor, one sub-window further each call.
    mon = monitored.monitor  # type: ignore[attr-defined]
    step = MEASURED_WINDOW_S / MEASURED_SLICES
    now = time.monotonic() + 2 * MEASURED_WINDOW_S
    rot = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(ROTATION_CALLS):
            now += step
            mon.advance(now)
        rot.append((time.perf_counter() - t0) / ROTATION_CALLS * 1e6)
    return {"p50_us": p50, "p99_us": p99, "added_us": diff, "rotation_us": rot}


# -- the table ---------------------------------------------------------------------------------
def _quartiles(v: list[float]) -> str:
    q1, _, q3 = np.percentile(v, [25, 50, 75])
    return f"{q1:.2f}{' to ' if q1 < 0 else '-'}{q3:.2f}"


def markdown(saved: dict[str, Any], name: str = "monitor_cost") -> str:
    """A saved run's tables (bench/_results.py's layout) and the goal's verdict, in Markdown."""
    r, s = saved["results"], saved["settings"]
    n1, n2 = s["calls"]
    lines: list[str] = []
    ins = r.get("instructions")
    if ins is None:
        lines += [f"Instructions: not counted ({r.get('instructions_skipped') or 'skipped'}).", ""]
    else:
        runs = len(ins["added"])
        per_call, pct = ins["per_call"], ins["added_pct"]
        lines += [
            f"| instructions per predict, main thread | {' | '.join(f'run {i + 1}' for i in range(runs))} |",
            "|---" * (1 + runs) + "|",
        ]
        added = [f"**{a:,.0f} ({p:.2f}%)**" for a, p in zip(ins["added"], pct, strict=True)]
        rows = (
            ("`runtime.load(model).predict`", [f"{v:,.0f}" for v in per_call["plain"]]),
            ("`runtime.load(model, profile=...).predict`", [f"{v:,.0f}" for v in per_call["monitored"]]),
            ("added by the monitor", added),
            ("one rotation (`monitor.advance`)", [f"{v:,.0f}" for v in per_call["rotation"]]),
        )
        lines += [f"| {label} | {' | '.join(cells)} |" for label, cells in rows]
        raw = {(x["mode"], x["calls"], x["repeat"]): x["instructions"] for x in ins["raw"]}
        for mode in ("plain", "monitored", "rotation"):
            cells = [f"{raw[(mode, n1, i)]:,} / {raw[(mode, n2, i)]:,}" for i in range(runs)]
            lines.append(f"| raw I({n1}) / I({n2}), {mode} | {' | '.join(cells)} |")
        rot = statistics.median(per_call["rotation"])
        every, sub = s["default_subwindow_s"], s["measured_window_s"] / s["slices"]
        worst, goal = max(pct), s["goal_pct"]
        lines += [
            "",
            f"Instructions the main thread executed inside the measured loop under callgrind "
            f"({s['valgrind']}), per call as (I({n2}) - I({n1})) / {n2 - n1}, which leaves out start-up, "
            f"loading and warm-up; {runs} run{'s' if runs != 1 else ''} of each. The bench MLP with "
            f"{s['n_features']} FP32 features, one (1, {s['n_features']}) float32 row per predict, a float32 "
            f"profile of inputs and outputs; the measured monitor's sub-windows ({sub:,.0f} s) "
            "outlast the run, and a rotation is counted apart (`monitor.advance`, one sub-window further "
            f"each call). A rotation happens once per sub-window ({every:g} s by default): "
            f"{rot / (10 * every):,.0f} instructions per predict at 10 predicts/s, "
            f"{rot / every:,.0f} at 1/s. "
            "In bold: the figure the goal is set in.",
            "",
            f"{'PASS' if worst < goal else 'FAIL'}: the monitor adds at most {worst:.2f}% of a plain "
            f"predict's instructions (goal: under {goal:g}%, issue 15)",
        ]
    wall = r.get("wall")
    if wall is not None:
        p50 = wall["p50_us"]
        lines += [
            "",
            "| wall time per predict, µs | median [min-max] | quartiles |",
            "|---|---|---|",
        ]
        for label, v in (
            ("plain predict, p50", p50["plain"]),
            ("monitored predict, p50", p50["monitored"]),
            ("monitored - plain, paired by round", wall["added_us"]),
            ("one rotation (`monitor.advance`), mean", wall["rotation_us"]),
        ):
            lines.append(f"| {label} | {spread(v, '.2f')} | {_quartiles(v)} |")
        lines += [
            "",
            f"Wall time for context: both models in one process, {s['rounds']} paired rounds x "
            f"{s['round_calls']:,} calls each, order rotated; a round's figure is its p50 (a rotation: the "
            f"mean of {s['rotation_calls']} calls); median [lowest-highest round] and quartiles over "
            "rounds. Wall time on a shared machine moves by more than the monitor costs.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from ._results import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", default="1024,3072", help="N1,N2: predicts per run (multiples of 64)")
    p.add_argument("--repeat", type=int, default=2, help="runs of each callgrind measurement")
    p.add_argument("--jobs", type=int, default=1,
                   help="callgrind runs at a time (more than one moves the counts: see above)")  # fmt: skip
    p.add_argument("--rounds", type=int, default=15, help="wall time: paired rounds")
    p.add_argument("--round-calls", type=int, default=2000, help="wall time: calls per system per round")
    p.add_argument("--no-wall", action="store_true", help="skip the wall-time comparison")
    _results.json_option(p)
    p.add_argument("--child", nargs=4, metavar=("MODE", "N", "MODEL", "PROFILE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        mode, n, model, profile = args.child
        child(mode, int(n), Path(model), Path(profile))
        return 0
    n1, n2 = (int(v) for v in args.calls.split(","))
    if not 0 < n1 < n2:
        p.error(f"--calls needs 0 < N1 < N2, got {args.calls}")
    valgrind = shutil.which("valgrind")
    version = None
    if valgrind is not None:
        version = subprocess.run([valgrind, "--version"], capture_output=True, text=True).stdout.strip()
    settings: dict[str, Any] = {
        "calls": [n1, n2], "repeat": args.repeat, "jobs": args.jobs, "valgrind": version,
        "rounds": args.rounds, "round_calls": args.round_calls, "wall": not args.no_wall,
        "rotation_calls": ROTATION_CALLS, "n_features": N_FEATURES, "warmup_calls": WARMUP_CALLS,
        "measured_window_s": MEASURED_WINDOW_S, "slices": MEASURED_SLICES,
        "default_subwindow_s": DEFAULT_SUBWINDOW_S, "goal_pct": GOAL_PCT,
    }  # fmt: skip
    run = Run("monitor_cost", SCRIPT_VERSION, settings, argv=argv,
              measured=("runtime", "native", "setup.py", "bench/models.py"))  # fmt: skip
    results: dict[str, Any] = {"instructions": None, "wall": None}
    with tempfile.TemporaryDirectory(prefix="mlrt-monitor-cost-") as tmp:
        workdir = Path(tmp)
        model, profile = build(workdir)
        if valgrind is None:
            msg = "valgrind is not installed (e.g. `apt-get install valgrind`); instruction counts need it"
            _note(msg)
            results["instructions_skipped"] = msg
        else:
            results["instructions"] = instructions(model, profile, workdir, (n1, n2), args.repeat, args.jobs)
        if not args.no_wall:
            _note("wall time ...")
            results["wall"] = wall_time(model, profile, args.rounds, args.round_calls)
    print(markdown(run.envelope(results), "monitor_cost"), end="")
    if args.json is not None:
        run.save(results, args.json or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
