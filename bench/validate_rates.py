"""False alarms and detection of `mlrt validate` on real data:
`python -m bench.validate_rates [--repeats N] [--json [PATH]]`.

For each data set (the tables of bench/drift_power.py, which ship inside Python packages:
ties, nulls, categories), each repeat splits the rows at random: a reference half, profiled
as `mlrt profile --model` profiles for a float32 model (text columns categorical), and the
other half, from which the windows come: all of it (a test split) and 500 rows of it (a
day's batch). Unchanged windows measure false alarms: any check failing fails the data.
Windows with one injected defect measure detection, of the check meant to catch it:

- glitch 2%: 2% of rows of the first numeric feature (of 10 values or more) set past the reference's largest
  value by its range (a sensor fault, a unit slip): `out_of_range`
- nulls +20pt: 20% more rows of the first numeric feature missing: `nulls`
- unseen 5%: 5% of rows of the first categorical feature given a new level:
  `unseen_categories` (data sets with a categorical feature)
- shift 0.5sd: the first numeric feature moved by half its standard deviation: drift
  (`model_status`)

Every check runs with its defaults as shipped. Everything is seeded: data set number i of
bench/drift_power.py's LOADERS takes seed --seed + i whichever --datasets are run, so the
same command, with the data sets' packages at the versions the saved run records, gives the
same table.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
import pyarrow as pa

from runtime.gates import validate
from runtime.monitor.profile import Profile

from . import _results
from .drift_power import LOADERS, Dataset, _has_nulls, _package_versions

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1

WINDOWS = ("half", 500)
CASES = {  # case -> the check that should catch it
    "unchanged": None,
    "glitch 2%": "out_of_range",
    "nulls +20pt": "nulls",
    "unseen 5%": "unseen_categories",
    "shift 0.5sd": "model_status",
}


def _table(ds: Dataset, rows: np.ndarray) -> dict[str, np.ndarray]:
    return {name: col[rows] for name, col in ds.columns.items()}


def _profile(ds: Dataset, rows: np.ndarray) -> Profile:
    cols = _table(ds, rows)
    numeric = {n: "float32" for n in cols if n not in ds.categorical}
    return Profile.fit(pa.table(cols), categorical=ds.categorical, dtypes=numeric)


def _first_numeric(ds: Dataset) -> str:
    """The first numeric feature that takes at least 10 values (digits' first pixels are
    nearly always 0: half a standard deviation moves nothing across a bin edge)."""
    numeric = [name for name in ds.columns if name not in ds.categorical]
    return next(
        (n for n in numeric if np.unique(ds.columns[n][~np.isnan(ds.columns[n])]).size >= 10), numeric[0]
    )


def _inject(
    ds: Dataset, cols: dict[str, np.ndarray], case: str, profile: Profile, rng: np.random.Generator
) -> dict[str, np.ndarray] | None:
    out = {n: c.copy() for n, c in cols.items()}
    n = len(next(iter(cols.values())))
    numeric = _first_numeric(ds)
    if case == "unchanged":
        return out
    if case == "glitch 2%":
        f = profile.feature(numeric)
        rows = rng.choice(n, size=max(1, round(0.02 * n)), replace=False)
        out[numeric][rows] = f.high + (f.high - f.low)
    elif case == "nulls +20pt":
        present = np.flatnonzero(~np.isnan(out[numeric]))
        rows = rng.choice(present, size=min(len(present), round(0.2 * n)), replace=False)
        out[numeric][rows] = np.nan
    elif case == "unseen 5%":
        if not ds.categorical:
            return None
        rows = rng.choice(n, size=max(1, round(0.05 * n)), replace=False)
        out[ds.categorical[0]][rows] = "__never_seen__"
    elif case == "shift 0.5sd":
        x = out[numeric]
        out[numeric] = x + 0.5 * np.nanstd(ds.columns[numeric])
    return out


def simulate(ds: Dataset, repeats: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    # tallies[(window, case)] = {"runs", "failed" (any check), "caught" (the target check), "by_check"}
    tallies: dict[tuple[str, str], dict[str, Any]] = {}
    window_rows: dict[str, int] = {}  # each window's rows (the same every repeat)
    for _ in range(repeats):
        order = rng.permutation(ds.rows)
        ref_rows, rest = order[: ds.rows // 2], order[ds.rows // 2 :]
        profile = _profile(ds, ref_rows)
        for window in WINDOWS:
            rows = (
                rest
                if window == "half"
                else rng.choice(rest, size=min(int(window), len(rest)), replace=False)
            )
            base = _table(ds, rows)
            window_rows[str(window)] = len(rows)
            for case, target in CASES.items():
                cols = _inject(ds, base, case, profile, rng)
                if cols is None:
                    continue
                result = validate(pa.table(cols), profile)
                t = tallies.setdefault(
                    (str(window), case), {"runs": 0, "failed": 0, "caught": 0, "by_check": {}}
                )
                t["runs"] += 1
                t["failed"] += not result.passed
                failed = {c.name for c in result.failures}
                t["caught"] += target in failed
                for name in failed:
                    t["by_check"][name] = t["by_check"].get(name, 0) + 1
    return {
        "dataset": ds.name,
        "source": ds.source,
        "rows": ds.rows,
        "features": len(ds.columns),
        "nulls": any(_has_nulls(v) for v in ds.columns.values()),
        "repeats": repeats,
        "window_rows": window_rows,
        "results": [{"window": w, "case": c, **t} for (w, c), t in tallies.items()],
    }


_COLUMNS = {  # the summary's columns: case -> heading
    "unchanged": "unchanged: fails",
    "glitch 2%": "glitch 2% past max: caught",
    "nulls +20pt": "nulls +20 pt: caught",
    "unseen 5%": "unseen level 5%: caught",
    "shift 0.5sd": "shift 0.5 sd: caught",
}


def markdown(saved: dict[str, Any], name: str = "validate_rates") -> str:
    """A saved run's tables (bench/_results.py's layout) in Markdown: per data set and case,
    over both windows, then per window with the checks that failed."""
    runs = saved["results"]["datasets"]
    s = saved["settings"]
    cases = s["cases"]  # case -> the check meant to catch it
    lines = [
        "| data set (rows) | " + " | ".join(_COLUMNS.get(c, c) for c in cases) + " |",
        "|---" * (1 + len(cases)) + "|",
    ]
    for run in runs:
        cells = []
        for case in cases:
            found = [r for r in run["results"] if r["case"] == case]
            if not found:
                cells.append("(no categories)" if case == "unseen 5%" else "-")
                continue
            key = "failed" if cases[case] is None else "caught"
            cells.append(f"{sum(r[key] for r in found)}/{sum(r['runs'] for r in found)}")
        nulls = "; nulls" if run.get("nulls") else ""
        lines.append(f"| {run['dataset']} ({run['rows']:,}{nulls}) | " + " | ".join(cells) + " |")
    windows = ", ".join("the whole other half" if w == "half" else f"{w} rows of it" for w in s["windows"])
    lines += [
        "",
        f"{s['repeats']} random splits per data set (seed {s['seed']} + the data set's place in "
        f"{', '.join(s['seed_order'])}): one half profiled for a float32 model, windows from the other: "
        f"{windows}; every check at its shipped default. A cell counts windows over both sizes: "
        "unchanged, those where any check failed; each defect, those where the check meant to catch it "
        f"failed ({'; '.join(f'{c}: {t}' for c, t in cases.items() if t)}).",
        "",
        "| data set | window | case | runs | any check failed | caught by its check | failing checks |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for run in runs:
        for r in run["results"]:
            caught = f"{r['caught'] / r['runs']:.0%}" if cases[r["case"]] else "-"
            checks = ", ".join(f"{k} {v}" for k, v in sorted(r["by_check"].items(), key=lambda kv: -kv[1]))
            window = f"{r['window']}: {run['window_rows'][r['window']]:,} rows"
            lines.append(
                f"| {run['dataset']} | {window} | {r['case']} | {r['runs']} | "
                f"{r['failed'] / r['runs']:.0%} | {caught} | {checks} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from ._results import Run

    parser = argparse.ArgumentParser(
        prog="python -m bench.validate_rates", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--datasets", nargs="+", default=list(LOADERS), choices=list(LOADERS))
    parser.add_argument("--repeats", type=int, default=40, help="random splits per data set (40)")
    parser.add_argument("--seed", type=int, default=0)
    _results.json_option(parser)
    args = parser.parse_args(argv)
    settings: dict[str, Any] = {
        "datasets": args.datasets,
        "repeats": args.repeats,
        "seed": args.seed,
        "seed_order": list(LOADERS),  # data set i of these takes seed + i
        "windows": [str(w) for w in WINDOWS],
        "cases": CASES,
        "data_packages": _package_versions(),
    }
    run = Run("validate_rates", SCRIPT_VERSION, settings, argv=argv,
              measured=("runtime", "native", "setup.py", "bench/drift_power.py"))  # fmt: skip
    runs = []
    started = time.perf_counter()
    for name in args.datasets:
        runs.append(simulate(LOADERS[name](), args.repeats, args.seed + list(LOADERS).index(name)))
        print(f"[bench.validate_rates] {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    results = {"datasets": runs}
    print(markdown(run.envelope(results), "validate_rates"), end="")
    if args.json is not None:
        run.save(results, args.json or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
