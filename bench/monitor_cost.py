"""What drift monitoring adds to an in-process prediction, counted in instructions.

    python -m bench.monitor_cost [--calls 1024,3072] [--repeat 2] [--jobs 2] [--rounds 15] [--json PATH]

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
where the allocator's pools happen to fall), where wall time varies by 10-30%.

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
import datetime as _dt
import functools
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ._results import git as _git

ROOT = Path(__file__).resolve().parent.parent
GOAL_PCT = 5.0
N_FEATURES = 8
#: Sub-windows longer than any run: no rotation happens while predicts are measured.
MEASURED_WINDOW_S = 1e9
MEASURED_SLICES = 10
DEFAULT_SUBWINDOW_S = 60.0  # MonitorConfig(): 600 s in 10 sub-windows
WARMUP_CALLS = 256
#: The code these figures measure, relative to the repository root.
MEASURED_PATHS = (
    "native", "runtime/monitor", "runtime/embedded.py", "runtime/models", "runtime/convert.py",
    "bench/monitor_cost.py", "setup.py",
)  # fmt: skip


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
    _note(f"{len(runs)} callgrind runs, {jobs} at a time (about 30 s each) ...")
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
        "calls": [n1, n2],
        "repeat": repeat,
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
    diff = [m - p for m, p in zip(p50["monitored"], p50["plain"], strict=True)]
    # A rotation, timed: the monitored model's monitor, one sub-window further each call.
    mon = monitored.monitor  # type: ignore[attr-defined]
    step = MEASURED_WINDOW_S / MEASURED_SLICES
    now = time.monotonic() + 2 * MEASURED_WINDOW_S
    rot = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(200):
            now += step
            mon.advance(now)
        rot.append((time.perf_counter() - t0) / 200 * 1e6)
    return {"rounds": rounds, "calls": calls, "p50_us": p50, "added_us": diff, "rotation_us": rot}


def spread(a: list[float]) -> str:
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return f"{med:.2f} [{q1:.2f}-{q3:.2f}] ({min(a):.2f}-{max(a):.2f})"


# -- report -----------------------------------------------------------------------------------
def report(result: dict[str, Any]) -> str:
    """The results as the text tables this benchmark prints."""
    meta = result["meta"]
    dirty = f" + uncommitted changes to {', '.join(meta['dirty'])}" if meta["dirty"] else ""
    out = [
        f"bench.monitor_cost, {meta['date']}, commit {meta['commit'][:10]}{dirty}",
        f"machine: {meta['machine']}; load before/after {meta['load_before']} / {meta['load_after']}",
        f"model: bench MLP, {N_FEATURES} FP32 features -> 2 outputs, one (1, {N_FEATURES}) float32 row "
        "per predict; profile: inputs and outputs, float32, 10 bins",
    ]
    ins = result.get("instructions")
    if isinstance(ins, dict):
        n1, n2 = ins["calls"]
        out += [
            "",
            f"instructions per predict, main thread, (I({n2}) - I({n1})) / {n2 - n1}, "
            f"{ins['repeat']} runs each ({meta['valgrind']})",
            "",
            f"{'':<40}" + "".join(f"{'run ' + str(r + 1):>12}" for r in range(ins["repeat"])),
        ]
        per_call = ins["per_call"]
        for name, vals, fmt in (
            ("runtime.load(model).predict", per_call["plain"], "{:>12,.0f}"),
            ("runtime.load(model, profile=...).predict", per_call["monitored"], "{:>12,.0f}"),
            ("added by the monitor", ins["added"], "{:>12,.0f}"),
            ("added / plain, %", ins["added_pct"], "{:>12.2f}"),
            ("one rotation (monitor.advance)", per_call["rotation"], "{:>12,.0f}"),
        ):
            out.append(f"{name:<40}" + "".join(fmt.format(v) for v in vals))
        worst = max(ins["added_pct"])
        rot = float(np.median(per_call["rotation"]))
        every = DEFAULT_SUBWINDOW_S
        out += [
            "",
            f"{'PASS' if worst < GOAL_PCT else 'FAIL'}  the monitor adds at most {worst:.2f}% of a plain "
            f"predict's instructions (goal: under {GOAL_PCT:g}%)",
            f"a rotation: {rot:,.0f} instructions once per sub-window ({every:g} s by default), so "
            f"{rot / (10 * every):,.0f} per predict at 10 predicts/s, {rot / every:,.0f} at 1/s",
            "",
            "raw counts (instructions of the main thread inside the measured loop):",
        ]
        out += [
            f"  {r['mode']:<10} {r['calls']:>6} calls, run {r['repeat'] + 1}: {r['instructions']:>14,}"
            for r in ins["raw"]
        ]
    else:
        out += ["", f"instructions: skipped, {ins}"]
    wall = result.get("wall")
    if isinstance(wall, dict):
        out += [
            "",
            f"wall time per predict, in-process, {wall['rounds']} paired rounds x {wall['calls']} calls: "
            "median [quartiles] (range) of per-round p50, µs",
            "",
            f"{'plain':<40}{spread(wall['p50_us']['plain'])}",
            f"{'monitored':<40}{spread(wall['p50_us']['monitored'])}",
            f"{'monitored - plain (paired by round)':<40}{spread(wall['added_us'])}",
            f"{'one rotation (monitor.advance)':<40}{spread(wall['rotation_us'])}",
        ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", default="1024,3072", help="N1,N2: predicts per run (multiples of 64)")
    p.add_argument("--repeat", type=int, default=2, help="runs of each callgrind measurement")
    p.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1), help="callgrind runs at a time")
    p.add_argument("--rounds", type=int, default=15, help="wall time: paired rounds")
    p.add_argument("--round-calls", type=int, default=2000, help="wall time: calls per system per round")
    p.add_argument("--no-wall", action="store_true", help="skip the wall-time comparison")
    p.add_argument("--json", metavar="PATH", help="also write the raw results as JSON")
    p.add_argument("--child", nargs=4, metavar=("MODE", "N", "MODEL", "PROFILE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        mode, n, model, profile = args.child
        child(mode, int(n), Path(model), Path(profile))
        return 0
    n1, n2 = (int(v) for v in args.calls.split(","))
    if not 0 < n1 < n2:
        p.error(f"--calls needs 0 < N1 < N2, got {args.calls}")
    now = _dt.datetime.now().astimezone()
    valgrind = shutil.which("valgrind")
    result: dict[str, Any] = {
        "benchmark": "bench.monitor_cost",
        "command": "python -m bench.monitor_cost " + " ".join(sys.argv[1:] if argv is None else argv),
        "meta": {
            "date": now.isoformat(timespec="seconds"),
            "commit": _git("rev-parse", "HEAD"),
            # Uncommitted changes to what these figures measure (the tree may hold others).
            "dirty": [line[3:] for line in _git("status", "--porcelain", "--", *MEASURED_PATHS).splitlines()],
            "load_before": [round(x, 2) for x in os.getloadavg()],
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"numpy {np.__version__}",
            "valgrind": subprocess.run([valgrind, "--version"], capture_output=True, text=True).stdout.strip()
            if valgrind
            else None,
        },
    }
    with tempfile.TemporaryDirectory(prefix="mlrt-monitor-cost-") as tmp:
        workdir = Path(tmp)
        model, profile = build(workdir)
        if valgrind is None:
            msg = "valgrind is not installed (e.g. `apt-get install valgrind`); instruction counts need it"
            _note(msg)
            result["instructions"] = msg
        else:
            result["instructions"] = instructions(model, profile, workdir, (n1, n2), args.repeat, args.jobs)
        if not args.no_wall:
            _note("wall time ...")
            result["wall"] = wall_time(model, profile, args.rounds, args.round_calls)
    result["meta"]["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(report(result), end="")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
