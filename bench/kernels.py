"""Drift-kernel benchmark: `python -m bench.kernels [--json] [--rounds N] [--no-evidently]`.

Compared systems run interleaved in short paired rounds (noisy shared cores);
each ratio is the median of the per-round ratios.  One thread throughout.

Evidently's PSI is timed in its own virtualenv under
``~/.cache/mlrt-bench/evidently-<version>`` (created on first use with
``python -m venv`` + ``pip install``); if that fails the row says why.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtime.monitor import Histogram, Profile, kernels
from runtime.monitor.profile import quantile_edges


def _time(fn: Callable[[], object], number: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def _paired(a: Callable[[], object], b: Callable[[], object], rounds: int, number: int = 1):
    ta, tb, ratios = [], [], []
    for _ in range(rounds):
        x, y = _time(a, number), _time(b, number)
        ta.append(x)
        tb.append(y)
        ratios.append(y / x)
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


EVIDENTLY_VERSION = "0.7.23"
# evidently 0.7.23 imports pandas.core.dtypes.common.infer_dtype_from_object, gone in pandas 3.
EVIDENTLY_REQS = [f"evidently=={EVIDENTLY_VERSION}", "pandas<3"]
EVIDENTLY_API = "evidently.legacy.calculations.stattests.psi_stat_test"

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
print(json.dumps({"version": evidently.__version__}), flush=True)
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


def _evidently_row(X: np.ndarray, m: int, bins: int, rounds: int) -> dict[str, object]:
    """Evidently PSI vs mlrt update+PSI on ref = X[:m], cur = X[m:2m], paired rounds."""
    F = X.shape[1]
    case = f"Evidently PSI vs mlrt update+PSI, {m}+{m}x{F} f32"
    py, how = ensure_evidently_venv()
    if py is None:
        _note(f"Evidently skipped: {how}")
        return {"case": case, "note": f"not available: {how}"}
    ref, cur = X[:m], X[m : 2 * m]
    prof = Profile.fit(ref, bins=bins)
    h_ref, h_cur = Histogram(prof), Histogram(prof)

    def mlrt_psi() -> np.ndarray:
        # Same work as Evidently's call: bin reference and current, then PSI per feature.
        h_ref.reset()
        h_ref.update(ref)
        h_cur.reset()
        h_cur.update(cur)
        return kernels.psi(list(h_ref.feature_counts().values()), list(h_cur.feature_counts().values()))

    mlrt_vals = mlrt_psi()
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
                return {"case": case, "note": f"not available: worker failed: {_last_line(err)}"}
            version = json.loads(hello)["version"]
            t_ev, t_ml, ratios, ev_vals = [], [], [], []
            for _ in range(rounds):
                proc.stdin.write("go\n")
                proc.stdin.flush()
                res = json.loads(proc.stdout.readline())
                ev_vals = res["psi"]
                t_m = _time(mlrt_psi)
                t_ev.append(res["seconds"])
                t_ml.append(t_m)
                ratios.append(res["seconds"] / t_m)
        finally:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    values = 2 * m * F
    return {
        "case": case,
        "mlrt_ns_per_value": statistics.median(t_ml) / values * 1e9,
        "evidently_ns_per_value": statistics.median(t_ev) / values * 1e9,
        "speedup_vs_evidently": statistics.median(ratios),
        "note": f"evidently {version}; {how}",
        "detail": (
            f"Evidently {version}: {EVIDENTLY_API}(ref, cur, ColumnType.Numerical) per column on pandas "
            f"Series (its own bins: sturges over ref+cur); mlrt: Histogram.update of ref and cur "
            f"({bins} quantile bins) + runtime.psi. ns per value over {2 * m}x{F} values (ref+cur). "
            f"Max PSI: evidently {max(ev_vals):.2g}, mlrt {float(np.nanmax(mlrt_vals)):.2g}."
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-evidently", action="store_true", help="skip the Evidently PSI row")
    parser.add_argument(
        "--evidently-rows", type=int, default=100_000, help="reference rows = current rows for Evidently"
    )
    args = parser.parse_args(argv)
    n, F, bins = args.rows, 20, 10
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, F), dtype=np.float32)
    prof = Profile.fit(X[: min(n, 100_000)], bins=bins)
    edges = [np.asarray(f.edges) for f in prof.features]
    flat, eoff = kernels.flatten_edges(edges)
    e32 = kernels.edges_as_float32(flat)
    cols = np.arange(F, dtype=np.int64)
    coff = eoff[:-1] + 2 * cols
    counts = np.zeros(int(eoff[-1]) + 2 * F, dtype=np.int64)
    counter = kernels.NumericCounter(flat, e32, eoff, cols, coff, counts)
    values = n * F
    rows: list[dict[str, object]] = []

    def native() -> None:
        counter.update_f32(X)

    def numpy_binning() -> None:
        for j in range(F):
            np.bincount(np.searchsorted(edges[j], X[:, j], side="right"), minlength=bins + 1)

    t_nat, t_np, ratio = _paired(native, numpy_binning, args.rounds)
    rows.append(
        {
            "case": f"numeric update {n}x{F} f32, {bins} bins",
            "mlrt_ns_per_value": t_nat / values * 1e9,
            "numpy_ns_per_value": t_np / values * 1e9,
            "speedup_vs_numpy": ratio,
        }
    )
    # Memory-bandwidth floor: one read pass over the same bytes.
    t_read = statistics.median(_time(lambda: np.add.reduce(X, axis=None), 1) for _ in range(args.rounds))
    rows.append(
        {
            "case": "read floor: np.add.reduce over X",
            "mlrt_ns_per_value": t_read / values * 1e9,
            "note": f"{X.nbytes / t_read / 1e9:.1f} GB/s",
        }
    )
    X64 = X.astype(np.float64)
    t64 = statistics.median(_time(lambda: counter.update_f64(X64)) for _ in range(args.rounds))
    rows.append({"case": f"numeric update {n}x{F} f64, {bins} bins", "mlrt_ns_per_value": t64 / values * 1e9})
    XF = np.asfortranarray(X)
    tF = statistics.median(_time(lambda: counter.update_f32(XF)) for _ in range(args.rounds))
    rows.append({"case": f"numeric update {n}x{F} f32 F-order", "mlrt_ns_per_value": tF / values * 1e9})

    hist = Histogram(prof)
    row = X[:1].copy()
    calls = 100_000
    per = statistics.median(_time(lambda: hist.update(row), calls) for _ in range(args.rounds))
    rows.append({"case": "Histogram.update(1x20 f32 row) from Python", "mlrt_us_per_call": per * 1e6})

    def numpy_row() -> None:
        for j in range(F):
            counts[coff[j] + np.searchsorted(edges[j], row[0, j], side="right")] += 1

    t_row, t_np_row, r_row = _paired(lambda: hist.update(row), numpy_row, args.rounds, 20_000)
    rows[-1]["numpy_us_per_call"] = t_np_row * 1e6
    rows[-1]["speedup_vs_numpy"] = r_row

    hist.update(X[:100_000])
    t_psi = statistics.median(_time(hist.psi, 100_000) for _ in range(args.rounds))
    rows.append({"case": "Histogram.psi() 20 features", "mlrt_us_per_call": t_psi * 1e6})
    exp = [np.asarray(f.counts) for f in prof.features]
    cur = list(hist.feature_counts().values())
    t_psi2 = statistics.median(_time(lambda: kernels.psi(exp, cur), 10_000) for _ in range(args.rounds))
    rows.append({"case": "runtime.psi(list of 20 count arrays)", "mlrt_us_per_call": t_psi2 * 1e6})

    qs = np.arange(1, bins) / bins
    fit_rounds = max(3, args.rounds // 2)
    t_fit, t_q, r_fit = _paired(
        lambda: Profile.fit(X, bins=bins), lambda: np.quantile(X, qs, axis=0), fit_rounds
    )
    rows.append(
        {
            "case": f"Profile.fit {n}x{F} vs np.quantile(axis=0)",
            "mlrt_s": t_fit,
            "numpy_s": t_q,
            "speedup_vs_numpy": r_fit,
        }
    )
    t_edges = statistics.median(
        _time(lambda: [quantile_edges(X[:, j], bins) for j in range(F)]) for _ in range(fit_rounds)
    )
    rows[-1]["edges_only_s"] = t_edges

    if not args.no_evidently:
        m = max(1, min(args.evidently_rows, n // 2))
        rows.append(_evidently_row(X, m, bins, args.rounds))

    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print(rows)
    return 0


def _print(rows: list[dict[str, object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys and k != "detail"]
    table = Table(title="mlrt drift kernels (medians; ratios = median of paired rounds)")
    for k in keys:
        table.add_column(k)
    details: list[str] = []
    for r in rows:
        cells = [_fmt(r.get(k)) for k in keys]
        if r.get("detail"):
            details.append(str(r["detail"]))
            cells[0] += f" [{len(details)}]"
        table.add_row(*cells)
    console = Console(width=200)
    console.print(table)
    for i, d in enumerate(details, 1):
        console.print(f"[{i}] {d}", markup=False)


def _fmt(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


if __name__ == "__main__":
    raise SystemExit(main())
