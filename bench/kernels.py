"""Drift-kernel benchmark: `python -m bench.kernels [--json] [--rounds N]`.

Compared systems run interleaved in short paired rounds (noisy shared cores);
each ratio is the median of the per-round ratios.  One thread throughout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000)
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
        keys += [k for k in r if k not in keys]
    table = Table(title="mlrt drift kernels (medians; ratios = median of paired rounds)")
    for k in keys:
        table.add_column(k)
    for r in rows:
        table.add_row(*[_fmt(r.get(k)) for k in keys])
    Console(width=200).print(table)


def _fmt(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


if __name__ == "__main__":
    raise SystemExit(main())
