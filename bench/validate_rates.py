"""False alarms and detection of `mlrt validate` on real data:
`python -m bench.validate_rates [--repeats N] [--json PATH]`.

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

Every check runs with its defaults as shipped. Everything is seeded: the same command
gives the same table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from runtime.gates import validate
from runtime.monitor.profile import Profile

from .drift_power import LOADERS, Dataset

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
        "repeats": repeats,
        "results": [{"window": w, "case": c, **t} for (w, c), t in tallies.items()],
    }


def print_table(runs: list[dict[str, Any]]) -> None:
    print(
        f"{'data set':<10} {'window':>6} {'case':<12} {'runs':>5} {'fails':>7} {'caught':>7}  failing checks"
    )
    for run in runs:
        for r in run["results"]:
            fails = r["failed"] / r["runs"]
            target = CASES[r["case"]]
            caught = f"{r['caught'] / r['runs']:.0%}" if target else "-"
            checks = ", ".join(f"{k} {v}" for k, v in sorted(r["by_check"].items(), key=lambda kv: -kv[1]))
            print(
                f"{run['dataset']:<10} {r['window']:>6} {r['case']:<12} {r['runs']:>5} {fails:>7.0%} "
                f"{caught:>7}  {checks}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.validate_rates", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--datasets", nargs="+", default=list(LOADERS), choices=list(LOADERS))
    parser.add_argument("--repeats", type=int, default=40, help="random splits per data set (40)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="write the raw tallies here")
    args = parser.parse_args(argv)
    runs = []
    started = time.perf_counter()
    for i, name in enumerate(args.datasets):
        runs.append(simulate(LOADERS[name](), args.repeats, args.seed + i))
        print(f"# {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print_table(runs)
    if args.json:
        command = "python -m bench.validate_rates " + " ".join(sys.argv[1:] if argv is None else argv)
        Path(args.json).write_text(json.dumps({"command": command, "runs": runs}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
