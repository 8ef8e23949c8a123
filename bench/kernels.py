"""Drift-kernel benchmark: `python -m bench.kernels [--rounds N] [--json [PATH]] [--no-evidently]`;
`python -m bench.kernels --markdown RESULTS.json` prints a saved run's tables for the docs.

One thread, 20 standard-normal float32 features, a profile of 10 quantile bins
fitted on float32 (the dtype the server's model receives).  Four parts:

batch    A 1,000,000 x 20 float32 batch through `Histogram.update` (the call the
         monitor makes for a batch: `NumericCounter` underneath), in the layout the
         server feeds (C order: a request's decoded [n, 20] tensor) and in Fortran
         order, against numpy at its best (contiguous float32 columns, float32
         edges: per-edge `count_nonzero`, `searchsorted + bincount`, `digitize +
         bincount`), numpy on the server's C-order matrix, and a read-only pass
         (the memory floor).
request  One 1 x 20 float32 row through `ModelMonitor.observe` (the server's
         per-request path), `Histogram.update` (in-process) and the counter alone.
stats    PSI of 20 features; `Profile.fit` against `np.quantile`.
evidently  Evidently's PSI against mlrt's, both doing the same work: bin edges
         from the data, counts of reference and current, PSI (see EVIDENTLY_WORK).
         Evidently runs in its own virtualenv under
         ``~/.cache/mlrt-bench/evidently-<version>`` (created on first use with
         ``python -m venv`` + ``pip install``); it is never a dependency of mlrt.

Every system runs in interleaved rounds whose order rotates each round, so the
machine's drift hits them alike.  Figures are medians over rounds with the
interquartile range and min-max; a ratio is the median of per-round ratios.
Nothing here is a best-of.  `--json` also writes the raw per-round samples, the
git commit and the machine's facts to bench/results/kernels-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtime.config import MonitorConfig
from runtime.monitor import Histogram, Profile, kernels
from runtime.monitor.drift import ModelMonitor

from . import _results

#: Bump when what a figure means changes, so stale tables can be told from fresh ones.
#: 3: runs are saved by bench/_results.py (the provenance under "meta", figures under "results").
SCRIPT_VERSION = 3
REQUEST_GOAL_US = 1.0
#: The code these figures measure, relative to the repository root (bench/kernels.py too).
MEASURED_PATHS = ("native", "runtime/monitor", "runtime/_native", "setup.py")


# -- timing -----------------------------------------------------------------------------
def rounds(
    systems: dict[str, Callable[[], object]], n_rounds: int, number: int = 1
) -> dict[str, list[float]]:
    """Seconds per call of each system, one sample per round: `number` calls timed as
    one block (a clock read per call would cost as much as a sub-microsecond call).
    The order rotates every round; one untimed warm-up pass first."""
    names = list(systems)
    for name in names:
        for _ in range(min(number, 2000)):
            systems[name]()
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(n_rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = systems[name]
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            out[name].append((time.perf_counter() - t0) / number)
    return out


def spread(samples: list[float], scale: float = 1.0) -> dict[str, float]:
    """Median, quartiles and range of `samples` x `scale`."""
    a = np.asarray(samples, dtype=np.float64) * scale
    q1, med, q3 = np.percentile(a, [25, 50, 75])
    return {
        "median": float(med), "q1": float(q1), "q3": float(q3), "min": float(a.min()), "max": float(a.max())
    }  # fmt: skip


def ratios(num: list[float], den: list[float]) -> dict[str, float]:
    """Spread of the per-round ratios num/den (paired by round)."""
    return spread([x / y for x, y in zip(num, den, strict=True)])


# -- systems -----------------------------------------------------------------------------
def numpy_count_ge(col: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """numpy's fastest binning for a few edges: one vectorized compare-and-count per
    edge (numpy dispatches it to the CPU's widest SIMD), as mlrt's kernel does.
    Bins then missing, like mlrt's counts."""
    valid = np.count_nonzero(col == col)
    ge = [np.count_nonzero(col >= e) for e in edges]
    return np.concatenate([-np.diff(np.array([valid, *ge, 0])), [col.size - valid]])


def numpy_searchsorted(col: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, col, side="right"), minlength=edges.size + 1)


def numpy_digitize(col: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.digitize(col, edges), minlength=edges.size + 1)


def _batch(n: int, n_rounds: int) -> tuple[list[dict[str, object]], dict[str, list[float]]]:
    F, bins = 20, 10
    X = np.random.default_rng(0).standard_normal((n, F), dtype=np.float32)
    XF = np.asfortranarray(X)
    X64 = X.astype(np.float64)
    prof = Profile.fit(X[: min(n, 100_000)], bins=bins)
    hist = Histogram(prof)
    e64 = [np.asarray(f.edges, dtype=np.float64) for f in prof.features]
    # The float32 edges mlrt's float32 kernel compares with (rounded up, so float32 data
    # bins exactly as against the float64 edges): numpy gets the same, same dtype as the data.
    e32 = [kernels.edges_as_float32(e) for e in e64]
    fcols = [XF[:, j] for j in range(F)]  # contiguous

    def over(cols_of: Callable[[int], np.ndarray], binner, edges) -> Callable[[], list[np.ndarray]]:
        return lambda: [binner(cols_of(j), edges[j]) for j in range(F)]

    # The kernel alone, rounding float64 to float32 as it reads (no copy).
    flat, eoff = kernels.flatten_edges(e64)
    cols = np.arange(F, dtype=np.int64)
    counter = kernels.NumericCounter(
        flat, kernels.edges_as_float32(flat), eoff, cols, eoff[:-1] + 2 * cols,
        np.zeros(int(eoff[-1]) + 2 * F, dtype=np.int64), float64="round",
    )  # fmt: skip
    systems: dict[str, Callable[[], object]] = {
        "mlrt C": lambda: hist.update(X),
        "mlrt F": lambda: hist.update(XF),
        "mlrt C f64": lambda: hist.update(X64),
        "mlrt C f64 kernel": lambda: counter.try_update(X64),
        "numpy count_ge F": over(fcols.__getitem__, numpy_count_ge, e32),
        "numpy searchsorted F": over(fcols.__getitem__, numpy_searchsorted, e32),
        "numpy digitize F": over(fcols.__getitem__, numpy_digitize, e32),
        "numpy count_ge C": over(lambda j: np.ascontiguousarray(X[:, j]), numpy_count_ge, e32),
        "numpy searchsorted C strided f64": over(lambda j: X[:, j], numpy_searchsorted, e64),
        "read floor C": lambda: np.add.reduce(X, axis=None),
    }
    # Every system must produce the counts mlrt does before it is timed.
    hist.reset()
    hist.update(X)
    want = [c[:-1] for c in hist.feature_counts().values()]
    for name in ("numpy count_ge F", "numpy searchsorted F", "numpy digitize F", "numpy count_ge C"):
        got = systems[name]()
        assert all(np.array_equal(g[: w.size], w) for g, w in zip(got, want, strict=True)), name  # type: ignore[arg-type]
    hist.reset()
    hist.update(X64)
    assert all(np.array_equal(c[:-1], w) for c, w in zip(hist.feature_counts().values(), want, strict=True))
    assert counter.try_update(X64) == n

    raw = rounds(systems, n_rounds)
    per_value = 1e9 / (n * F)
    what = {
        "mlrt C": ("mlrt", "C-order float32 (the server's layout)", "Histogram.update(X)"),
        "mlrt F": ("mlrt", "Fortran-order float32", "Histogram.update(X)"),
        "mlrt C f64": (
            "mlrt",
            "C-order float64 (a float32 profile)",
            "Histogram.update(X): a rounded float32 copy, then counted",
        ),
        "mlrt C f64 kernel": (
            "mlrt kernel alone",
            "C-order float64 (a float32 profile)",
            "NumericCounter(float64='round').try_update(X): rounded as read, no copy",
        ),
        "numpy count_ge F": (
            "numpy best",
            "contiguous float32 columns, float32 edges",
            "per edge np.count_nonzero(col >= e), plus NaN count",
        ),
        "numpy searchsorted F": (
            "numpy",
            "contiguous float32 columns, float32 edges",
            "np.bincount(np.searchsorted(e, col, 'right'))",
        ),
        "numpy digitize F": (
            "numpy",
            "contiguous float32 columns, float32 edges",
            "np.bincount(np.digitize(col, e))",
        ),
        "numpy count_ge C": (
            "numpy best on the server's layout",
            "C-order float32 matrix, float32 edges",
            "copy each column contiguous, then as numpy best",
        ),
        "numpy searchsorted C strided f64": (
            "numpy as compared before (not its best)",
            "strided columns of the C-order matrix, float64 edges",
            "np.bincount(np.searchsorted(e64, X[:, j], 'right'))",
        ),
        "read floor C": ("floor", "C-order float32", "np.add.reduce(X): one read pass, no binning"),
    }
    rows: list[dict[str, object]] = []
    for name, samples in raw.items():
        who, layout, how = what[name]
        row: dict[str, object] = {
            "part": "batch",
            "system": name,
            "who": who,
            "input": layout,
            "does": how,
            "ns_per_value": spread(samples, per_value),
        }
        if name.startswith("numpy"):
            row["x_mlrt_C"] = ratios(samples, raw["mlrt C"])
            same = "mlrt F" if name.endswith(" F") else "mlrt C"
            row["x_mlrt_same_input"] = ratios(samples, raw[same])
            row["same_input_as"] = same
        rows.append(row)
    return rows, raw


def _request(n_rounds: int, calls: int) -> tuple[list[dict[str, object]], dict[str, list[float]]]:
    F, bins = 20, 10
    X = np.random.default_rng(1).standard_normal((100_000, F), dtype=np.float32)
    prof = Profile.fit(X, bins=bins)
    # The server's monitor: default window (600 s in 10 slices), a profile of inputs only.
    monitor = ModelMonitor(
        prof,
        model="bench",
        version="1",
        inputs=[("input", [-1, F])],
        outputs=[("output", [-1, 2])],
        config=MonitorConfig(),
    )
    row = X[:1].copy()
    inputs, outputs = {"input": row}, {"output": np.zeros((1, 2), np.float32)}
    hist = Histogram(prof)
    flat, eoff = kernels.flatten_edges([f.edges for f in prof.features])
    cols = np.arange(F, dtype=np.int64)
    counts = np.zeros(int(eoff[-1]) + 2 * F, dtype=np.int64)
    counter = kernels.NumericCounter(
        flat, kernels.edges_as_float32(flat), eoff, cols, eoff[:-1] + 2 * cols, counts
    )
    # numpy, one row: all 20 features in one broadcast compare against a padded edge
    # matrix (NaN padding compares false), then one scatter-add.
    k = int((eoff[1:] - eoff[:-1]).max())
    E = np.full((F, k), np.nan, dtype=np.float32)
    for j, f in enumerate(prof.features):
        E[j, : len(f.edges)] = kernels.edges_as_float32(np.asarray(f.edges))
    np_counts = np.zeros_like(counts)
    base = eoff[:-1] + 2 * cols

    def numpy_row() -> None:
        np.add.at(np_counts, base + (row.reshape(-1, 1) >= E).sum(axis=1), 1)

    systems: dict[str, Callable[[], object]] = {
        "ModelMonitor.observe": lambda: monitor.observe(inputs, outputs),
        "Histogram.update": lambda: hist.update(row),
        "NumericCounter.try_update": lambda: counter.try_update(row),
        "NumericCounter.update_f32": lambda: counter.update_f32(row),
        "numpy row": numpy_row,
    }
    raw = rounds(systems, n_rounds, calls)
    what = {
        "ModelMonitor.observe": "the server's per-request path: view, lock, window check, staging, "
        "a 64-row kernel call every 64 rows",
        "Histogram.update": "in-process API (runtime.load(...).predict, scripts); one window",
        "NumericCounter.try_update": "the kernel entry alone: one buffer read, 20 searches",
        "NumericCounter.update_f32": "the kernel entry Histogram uses today",
        "numpy row": "numpy: broadcast compare against a padded 20 x 9 edge matrix + np.add.at",
    }
    rows = [
        {
            "part": "request",
            "system": name,
            "does": what[name],
            "us_per_call": spread(samples, 1e6),
            "goal_us": REQUEST_GOAL_US if name in ("ModelMonitor.observe", "Histogram.update") else None,
        }
        for name, samples in raw.items()
    ]
    return rows, raw


def _stats(n: int, n_rounds: int) -> tuple[list[dict[str, object]], dict[str, list[float]]]:
    F, bins = 20, 10
    X = np.random.default_rng(2).standard_normal((n, F), dtype=np.float32)
    prof = Profile.fit(X[: min(n, 100_000)], bins=bins)
    hist = Histogram(prof)
    hist.update(X[: min(n, 100_000)])
    exp = [np.asarray(f.counts) for f in prof.features]
    cur = list(hist.feature_counts().values())
    qs = np.arange(1, bins) / bins
    psi = {"Histogram.psi": hist.psi, "kernels.psi(lists)": lambda: kernels.psi(exp, cur)}
    raw = rounds(psi, n_rounds, 2000)
    fit = rounds(
        {"Profile.fit": lambda: Profile.fit(X, bins=bins), "np.quantile": lambda: np.quantile(X, qs, axis=0)},
        max(3, n_rounds // 2),
    )
    raw.update(fit)

    def row(system: str, does: str, **figures: object) -> dict[str, object]:
        return {"part": "stats", "system": system, "does": does, **figures}

    rows = [
        row("Histogram.psi", "PSI of 20 features from the window's counts",
            us_per_call=spread(raw["Histogram.psi"], 1e6)),
        row("kernels.psi(lists)", "PSI of 20 count arrays given as lists",
            us_per_call=spread(raw["kernels.psi(lists)"], 1e6)),
        row("Profile.fit", f"{n:,} x {F} float32, {bins} quantile bins, counts",
            s_per_call=spread(raw["Profile.fit"]),
            x_np_quantile=ratios(raw["Profile.fit"], raw["np.quantile"])),
        row("np.quantile", "np.quantile(X, 9 levels, axis=0) alone", s_per_call=spread(raw["np.quantile"])),
    ]  # fmt: skip
    return rows, raw


# -- Evidently ---------------------------------------------------------------------------
EVIDENTLY_VERSION = "0.7.23"
# evidently 0.7.23 imports pandas.core.dtypes.common.infer_dtype_from_object, gone in pandas 3.
EVIDENTLY_REQS = [f"evidently=={EVIDENTLY_VERSION}", "pandas<3"]
EVIDENTLY_API = "evidently.legacy.calculations.stattests.psi_stat_test"
EVIDENTLY_WORK = {
    "evidently": (
        "psi_stat_test(ref[c], cur[c], ColumnType.Numerical) per column on pandas Series: its count "
        "of distinct reference values (numeric if > 20), bin edges from ref + cur (numpy "
        "'sturges' equal-width bins), np.histogram of ref and of cur, PSI"
    ),
    "mlrt": (
        "Profile.fit(ref, bins=10) (quantile edges from ref, ref's counts) + Histogram.update(cur) "
        "+ Histogram.psi(), all 20 columns at once"
    ),
    "same work": "bin edges fitted from the data, counts of reference and current, PSI per column",
    "differs": "bins: Evidently equal-width ({sturges} by Sturges' rule), mlrt 10 quantile bins",
}

# Runs inside the Evidently venv: loads ref/cur from an .npz, then times one PSI pass over all
# columns per line read from stdin and prints one JSON line per pass.
_EVIDENTLY_WORKER = """\
import json, sys, time
import numpy as np
import pandas as pd
import evidently
from evidently.legacy.calculations.stattests import psi_stat_test
from evidently.legacy.core import ColumnType

data = np.load(sys.argv[1])
ref, cur = pd.DataFrame(data["ref"]), pd.DataFrame(data["cur"])

def run():
    return [float(psi_stat_test(ref[c], cur[c], ColumnType.Numerical, None).drift_score) for c in ref.columns]

run()  # warm-up
print(json.dumps({"version": evidently.__version__, "pandas": pd.__version__}), flush=True)
for _ in sys.stdin:
    t0 = time.perf_counter()
    vals = run()
    print(json.dumps({"seconds": time.perf_counter() - t0, "psi": vals}), flush=True)
"""


def _note(msg: str) -> None:
    print(f"[bench.kernels] {msg}", file=sys.stderr, flush=True)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("WARNING: Location")]
    return lines[-1].strip()[:200] if lines else "no output"


def ensure_evidently_venv(version: str = EVIDENTLY_VERSION) -> tuple[Path | None, str]:
    """Python of a venv with Evidently ``version`` (created if missing), and a note.

    Returns ``(None, reason)`` when it cannot be created or installed (no network, no wheel).
    """
    root = Path.home() / ".cache" / "mlrt-bench" / f"evidently-{version}"
    py = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    marker = root / ".mlrt-ok"
    if marker.exists() and py.exists():
        return py, "cached venv"
    _note(f"installing Evidently {version} into {root} (one-time) ...")
    t0 = time.perf_counter()
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        if not py.exists():
            r = subprocess.run(
                [sys.executable, "-m", "venv", str(root)], capture_output=True, text=True, timeout=300
            )
            if r.returncode != 0:
                return None, f"python -m venv failed: {_last_line(r.stderr + r.stdout)}"
        r = subprocess.run(
            [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", *EVIDENTLY_REQS],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        if r.returncode != 0:
            return None, f"pip install {' '.join(EVIDENTLY_REQS)} failed: {_last_line(r.stderr + r.stdout)}"
        r = subprocess.run(
            [str(py), "-c", f"from {EVIDENTLY_API.rsplit('.', 1)[0]} import psi_stat_test"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if r.returncode != 0:
            return None, f"import failed after install: {_last_line(r.stderr)}"
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{type(e).__name__}: {e}"
    marker.write_text(version + "\n")
    took = time.perf_counter() - t0
    _note(f"Evidently {version} installed in {took:.0f} s")
    return py, f"venv installed in {took:.0f} s"


def _evidently(m: int, n_rounds: int) -> tuple[list[dict[str, object]], dict[str, list[float]]]:
    """Evidently's PSI and mlrt's fit + count + PSI on ref = m rows, cur = the next m rows,
    in alternating order, each round one pass of each."""
    F, bins = 20, 10
    X = np.random.default_rng(3).standard_normal((2 * m, F), dtype=np.float32)
    ref, cur = X[:m], X[m:]
    base: dict[str, object] = {"part": "evidently", "rows": f"{m:,} + {m:,} x {F} float32", **EVIDENTLY_WORK}
    # numpy's 'sturges': ceil(log2(values) + 1) equal-width bins over ref + cur.
    base["differs"] = EVIDENTLY_WORK["differs"].format(sturges=int(np.ceil(np.log2(2 * m) + 1)))
    py, how = ensure_evidently_venv()
    if py is None:
        _note(f"Evidently skipped: {how}")
        return [{**base, "note": f"not available: {how}"}], {}

    def mlrt_psi() -> np.ndarray:
        h = Histogram(Profile.fit(ref, bins=bins))
        h.update(cur)
        return h.psi()

    mlrt_vals = mlrt_psi()
    t_ev: list[float] = []
    t_ml: list[float] = []
    ev_vals: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mlrt-bench-") as tmp:
        data, script = Path(tmp) / "data.npz", Path(tmp) / "evidently_psi.py"
        np.savez(data, ref=ref, cur=cur)
        script.write_text(_EVIDENTLY_WORKER)
        proc = subprocess.Popen(
            [str(py), str(script), str(data)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None
            hello = proc.stdout.readline()
            if not hello:
                err = proc.communicate(timeout=30)[1]
                return [{**base, "note": f"not available: worker failed: {_last_line(err)}"}], {}
            versions = json.loads(hello)

            def evidently_pass() -> None:
                proc.stdin.write("go\n")  # type: ignore[union-attr]
                proc.stdin.flush()  # type: ignore[union-attr]
                res = json.loads(proc.stdout.readline())  # type: ignore[union-attr]
                t_ev.append(res["seconds"])  # timed inside the worker, pipe excluded
                ev_vals[:] = res["psi"]

            def mlrt_pass() -> None:
                t0 = time.perf_counter()
                mlrt_psi()
                t_ml.append(time.perf_counter() - t0)

            for r in range(n_rounds):
                for fn in (evidently_pass, mlrt_pass) if r % 2 == 0 else (mlrt_pass, evidently_pass):
                    fn()
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    per_value = 1e9 / (2 * m * F)
    row = {
        **base,
        "evidently_version": versions["version"],
        "pandas_version": versions["pandas"],
        "evidently_ns_per_value": spread(t_ev, per_value),
        "mlrt_ns_per_value": spread(t_ml, per_value),
        "x_mlrt": ratios(t_ev, t_ml),
        "max_psi": {"evidently": max(ev_vals), "mlrt": float(np.nanmax(mlrt_vals))},
        "note": how,
    }
    return [row], {"evidently": t_ev, "mlrt fit+count+psi": t_ml}


# -- output ------------------------------------------------------------------------------
def simd() -> dict[str, object]:
    """The instruction sets each side counted with (the machine's other facts: bench/_results.py)."""
    from runtime._native import _histogram

    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as feats  # type: ignore[no-redef]
    return {
        "numpy_simd": [f for f in ("AVX512F", "AVX2", "SSE42") if feats.get(f)],
        "mlrt_kernel_simd": _histogram.simd_target(),
    }


def _flat(saved: dict) -> dict:
    """A saved run in the shape the renderers read: results, SIMD and provenance side by side
    (runs saved before SCRIPT_VERSION 3 already are)."""
    if "results" not in saved:
        return saved
    meta = {**saved["meta"], "machine": {**saved["meta"]["machine"], **saved["results"]["simd"]}}
    return {**saved, **saved["results"], "meta": meta}


def _fmt_spread(s: object, digits: int = 3) -> str:
    if not isinstance(s, dict):
        return "" if s is None else str(s)
    f = f"{{:.{digits}g}}"
    med, q1, q3, lo, hi = (f.format(s[k]) for k in ("median", "q1", "q3", "min", "max"))
    return f"{med} [{q1}-{q3}] ({lo}-{hi})"


def print_tables(result: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    result = _flat(result)
    console = Console(width=220)
    meta: dict = result["meta"]  # type: ignore[assignment]
    m = meta["machine"]
    local = f" + changes to {', '.join(meta['dirty'])}" if meta["dirty"] else ""
    console.print(
        f"mlrt drift kernels, {meta['date']} (commit {meta['commit'][:10]}{local}); {m['cpu']}, "
        f"{m['cpus']} CPUs, load {meta['load_before']} -> {meta['load_after']}; kernel SIMD "
        f"{m['mlrt_kernel_simd']}, numpy SIMD {'/'.join(m['numpy_simd'])}",
        markup=False,
    )
    console.print(
        "median [IQR] (min-max) over rounds; a ratio is the median of per-round ratios.", markup=False
    )
    rows: list[dict[str, object]] = result["rows"]  # type: ignore[assignment]
    s = result["settings"]

    t = Table(title=f"batch: {s['rows']:,} x 20, 10 bins, one thread, {s['rounds']} rounds")  # type: ignore[index]
    for c in ("system", "input", "does", "ns per value", "time / mlrt C-order", "time / mlrt same input"):
        t.add_column(c)
    for r in (r for r in rows if r["part"] == "batch"):
        same = ""
        if "same_input_as" in r:
            same = f"{_fmt_spread(r.get('x_mlrt_same_input'))} vs {r['same_input_as']}"
        t.add_row(
            f"{r['who']}: {r['system']}", str(r["input"]), str(r["does"]), _fmt_spread(r["ns_per_value"]),
            _fmt_spread(r.get("x_mlrt_C")), same,
        )  # fmt: skip
    console.print(t)

    calls = f"{s['request_rounds']} rounds x {s['request_calls']:,} calls"  # type: ignore[index]
    t = Table(title=f"request: one 1 x 20 float32 row, {calls}")
    for c in ("system", "does", "µs per call", f"goal < {REQUEST_GOAL_US:g} µs"):
        t.add_column(c)
    for r in (r for r in rows if r["part"] == "request"):
        us = r["us_per_call"]
        goal = ""
        if r.get("goal_us"):
            goal = "PASS" if us["median"] < r["goal_us"] else "FAIL"  # type: ignore[index]
        t.add_row(str(r["system"]), str(r["does"]), _fmt_spread(us), goal)
    console.print(t)

    t = Table(title="statistics and fit")
    for c in ("system", "does", "time", "ratio"):
        t.add_column(c)
    for r in (r for r in rows if r["part"] == "stats"):
        if "us_per_call" in r:
            t.add_row(str(r["system"]), str(r["does"]), _fmt_spread(r["us_per_call"]) + " µs", "")
        else:
            ratio = f"time / np.quantile: {_fmt_spread(r['x_np_quantile'])}" if "x_np_quantile" in r else ""
            t.add_row(str(r["system"]), str(r["does"]), _fmt_spread(r["s_per_call"]) + " s", ratio)
    console.print(t)

    for r in (r for r in rows if r["part"] == "evidently"):
        t = Table(title=f"Evidently vs mlrt, the same work: {r['same work']}; {r['rows']}")
        for c in ("system", "does", "ns per value (ref + cur values)"):
            t.add_column(c)
        if "x_mlrt" not in r:
            t.add_row("Evidently", str(r["evidently"]), str(r["note"]))
        else:
            ev = _fmt_spread(r["evidently_ns_per_value"])
            t.add_row(f"Evidently {r['evidently_version']}", str(r["evidently"]), ev)
            t.add_row("mlrt", str(r["mlrt"]), _fmt_spread(r["mlrt_ns_per_value"]))
            t.add_row("Evidently time / mlrt time", str(r["differs"]), _fmt_spread(r["x_mlrt"]))
        console.print(t)


def _md_spread(s: dict[str, float], digits: int = 3) -> str:
    f = f"{{:.{digits}g}}"
    med, q1, q3, lo, hi = (f.format(s[k]) for k in ("median", "q1", "q3", "min", "max"))
    return f"**{med}** [{q1}-{q3}] ({lo}-{hi})"


def markdown(result: dict, name: str = "kernels") -> str:
    """The tables of a run (a result as `--json` writes it) in Markdown, for the docs."""
    result = _flat(result)
    meta, s, rows = result["meta"], result["settings"], result["rows"]
    m = meta["machine"]
    local = f", with uncommitted changes to {', '.join(meta['dirty'])}" if meta["dirty"] else ""
    out = [
        f"Run {meta['date'][:16].replace('T', ' ')} at commit {meta['commit'][:10]}{local}; {m['cpu']}, "
        f"{m['cpus']} CPUs, load average {meta['load_before'][0]} before and {meta['load_after'][0]} "
        f"after; mlrt's kernel counted with {m['mlrt_kernel_simd']}, numpy has "
        f"{'/'.join(m['numpy_simd'])}. Figures: **median** [interquartile range] (min-max) over "
        "order-rotated rounds; a ratio is the median of per-round ratios.",
        "",
        f"Batch: {s['rows']:,} x 20 standard-normal values, 10 bins, one thread, {s['rounds']} rounds.",
        "",
        "| system | input | does | ns per value | its time / mlrt's, same input | its time / mlrt C-order |",
        "|---|---|---|---|---|---|",
    ]
    for r in (r for r in rows if r["part"] == "batch"):
        same = f"{_md_spread(r['x_mlrt_same_input'])} vs {r['same_input_as']}" if "same_input_as" in r else ""
        vs_c = _md_spread(r["x_mlrt_C"]) if "x_mlrt_C" in r else ""
        out.append(
            f"| {r['who']}: `{r['system']}` | {r['input']} | `{r['does']}` | "
            f"{_md_spread(r['ns_per_value'])} | {same} | {vs_c} |"
        )
    out += [
        "",
        f"Request: one 1 x 20 float32 row, {s['request_rounds']} rounds of "
        f"{s['request_calls']:,} calls each (timed as one block per round).",
        "",
        f"| path | does | µs per call | goal < {REQUEST_GOAL_US:g} µs |",
        "|---|---|---|---|",
    ]
    for r in (r for r in rows if r["part"] == "request"):
        us = r["us_per_call"]
        goal = ("PASS" if us["median"] < r["goal_us"] else "FAIL") if r.get("goal_us") else ""
        out.append(f"| `{r['system']}` | {r['does']} | {_md_spread(us)} | {goal} |")
    out += ["", "| statistics and fit | does | time |", "|---|---|---|"]
    for r in (r for r in rows if r["part"] == "stats"):
        if "us_per_call" in r:
            out.append(f"| `{r['system']}` | {r['does']} | {_md_spread(r['us_per_call'])} µs |")
        else:
            ratio = f"; time / np.quantile {_md_spread(r['x_np_quantile'])}" if "x_np_quantile" in r else ""
            out.append(f"| `{r['system']}` | {r['does']} | {_md_spread(r['s_per_call'])} s{ratio} |")
    for r in (r for r in rows if r["part"] == "evidently"):
        out += ["", f"Evidently against mlrt, the same work ({r['same work']}), {r['rows']}:", ""]
        if "x_mlrt" not in r:
            out.append(f"Not run: {r['note']}.")
            continue
        out += [
            "| system | does | ns per value (reference + current values) |",
            "|---|---|---|",
            f"| Evidently {r['evidently_version']} (pandas {r['pandas_version']}) | {r['evidently']} | "
            f"{_md_spread(r['evidently_ns_per_value'])} |",
            f"| mlrt | {r['mlrt']} | {_md_spread(r['mlrt_ns_per_value'])} |",
            f"| Evidently's time / mlrt's | {r['differs']} | {_md_spread(r['x_mlrt'])} |",
        ]
    return "\n".join(out) + "\n"


def _md_iqr(s: dict[str, float]) -> str:
    return f"**{s['median']:.3g}** [{s['q1']:.3g}-{s['q3']:.3g}]"


def summary_markdown(results: list[dict]) -> str:
    """One table of the figures that matter, one column per run: median [IQR]."""
    results = [_flat(r) for r in results]
    head = "| figure | " + " | ".join(
        f"{r['meta']['date'][:16].replace('T', ' ')}, load {r['meta']['load_before'][0]}" for r in results
    )
    lines = [head + " |", "|---" * (len(results) + 1) + "|"]

    def add(label: str, cell: Callable[[dict], str]) -> None:
        cells = []
        for r in results:
            try:
                cells.append(cell(r))
            except (KeyError, StopIteration):
                cells.append("")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    def row(r: dict, part: str, system: str) -> dict:
        return next(x for x in r["rows"] if x["part"] == part and x.get("system", "") == system)

    for system in ("mlrt C", "mlrt F", "mlrt C f64", "mlrt C f64 kernel"):
        x = row(results[0], "batch", system)
        add(
            f"mlrt, {x['input']}: `{x['does']}`, ns/value",
            lambda r, s=system: _md_iqr(row(r, "batch", s)["ns_per_value"]),
        )
    for system in (
        "numpy count_ge F",
        "numpy searchsorted F",
        "numpy digitize F",
        "numpy count_ge C",
        "numpy searchsorted C strided f64",
    ):
        x = row(results[0], "batch", system)
        add(
            f"{x['who']}, {x['input']}: `{x['does']}`; its time / mlrt's on the same input "
            f"({x['same_input_as']}); ns/value",
            lambda r, s=system: (
                f"{_md_iqr(row(r, 'batch', s)['x_mlrt_same_input'])}; "
                f"{row(r, 'batch', s)['ns_per_value']['median']:.3g} ns"
            ),
        )
    add(
        "numpy at its best (contiguous float32 columns) against mlrt on C-order: its time / mlrt's",
        lambda r: _md_iqr(row(r, "batch", "numpy count_ge F")["x_mlrt_C"]),
    )
    add("read floor, `np.add.reduce` over the C-order matrix, ns/value",
        lambda r: _md_iqr(row(r, "batch", "read floor C")["ns_per_value"]))  # fmt: skip
    for system in ("ModelMonitor.observe", "Histogram.update", "NumericCounter.try_update", "numpy row"):
        x = row(results[0], "request", system)
        goal = f" (goal < {x['goal_us']:g} µs)" if x.get("goal_us") else ""
        add(
            f"one 1 x 20 float32 row, `{system}`{goal}, µs",
            lambda r, s=system: (
                _md_iqr(row(r, "request", s)["us_per_call"])
                + (
                    (
                        " PASS"
                        if row(r, "request", s)["us_per_call"]["median"] < row(r, "request", s)["goal_us"]
                        else " FAIL"
                    )
                    if row(r, "request", s).get("goal_us")
                    else ""
                )
            ),  # fmt: skip
        )
    add(
        "`Histogram.psi()`, 20 features, µs",
        lambda r: _md_iqr(row(r, "stats", "Histogram.psi")["us_per_call"]),
    )
    add("`Profile.fit` 1,000,000 x 20: its time / `np.quantile(axis=0)`'s",
        lambda r: _md_iqr(row(r, "stats", "Profile.fit")["x_np_quantile"]))  # fmt: skip
    add(
        "Evidently PSI, same work, ns/value",
        lambda r: _md_iqr(row(r, "evidently", "")["evidently_ns_per_value"]),
    )
    add(
        "mlrt fit + count + PSI, same work, ns/value",
        lambda r: _md_iqr(row(r, "evidently", "")["mlrt_ns_per_value"]),
    )
    add("Evidently's time / mlrt's, same work", lambda r: _md_iqr(row(r, "evidently", "")["x_mlrt"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=9, help="rounds of the batch and Evidently parts")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the batch")
    parser.add_argument("--request-rounds", type=int, default=21)
    parser.add_argument(
        "--request-calls", type=int, default=20_000, help="calls per round, timed as one block"
    )
    parser.add_argument("--no-evidently", action="store_true", help="skip the Evidently comparison")
    parser.add_argument("--evidently-rows", type=int, default=100_000, help="reference rows = current rows")
    _results.json_option(parser)
    parser.add_argument(
        "--markdown",
        nargs="+",
        metavar="RESULTS",
        help="run nothing: print a saved run's tables as Markdown, or with several runs one "
        "table of their main figures side by side",
    )
    args = parser.parse_args(argv)
    if args.markdown:
        saved = [json.loads(Path(p).read_text()) for p in args.markdown]
        print(markdown(saved[0]) if len(saved) == 1 else summary_markdown(saved), end="")
        return 0
    from ._results import Run

    settings = {
        "rows": args.rows,
        "features": 20,
        "bins": 10,
        "rounds": args.rounds,
        "request_rounds": args.request_rounds,
        "request_calls": args.request_calls,
        "evidently_rows": None if args.no_evidently else args.evidently_rows,
        "threads": 1,
    }
    run = Run("kernels", SCRIPT_VERSION, settings, measured=MEASURED_PATHS, argv=argv)
    rows: list[dict[str, object]] = []
    raw: dict[str, dict[str, list[float]]] = {}
    for part, step in (
        ("batch", lambda: _batch(args.rows, args.rounds)),
        ("request", lambda: _request(args.request_rounds, args.request_calls)),
        ("stats", lambda: _stats(args.rows, args.rounds)),
        ("evidently", None if args.no_evidently else lambda: _evidently(args.evidently_rows, args.rounds)),
    ):
        if step is None:
            continue
        _note(f"{part} ...")
        part_rows, part_raw = step()
        rows += part_rows
        raw[part] = part_raw
    results = {"rows": rows, "raw_seconds_per_call": raw, "simd": simd()}
    print_tables(run.envelope(results))
    if args.json is not None:
        run.save(results, args.json or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
