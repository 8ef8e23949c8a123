"""Fit a reference profile from a Parquet/CSV/Arrow file and write it as JSON.

Numeric columns get quantile bins (--bins per feature, fewer where values tie),
cut halfway between neighbouring values; non-numeric columns and those named by
--categorical get one bin per level.

Give the model (--model, anything `mlrt serve` takes as a file or module) and the
profile is fitted as the model sees the data: each column rounded to the dtype of
the input it feeds (float32 for most ONNX models), so the server counts the same rows
into exactly the reference's bins; and the model's outputs on those rows are profiled
too (prediction drift), named like `label`, `probabilities[0]`, `probabilities[1]`.
Without --model, values are binned in the file's dtype (float64 for CSV) unless
--dtype says otherwise.

examples:
  mlrt profile train.parquet -o ref.json --model churn.onnx --exclude churned customer_id
  mlrt profile train.csv -o ref.json --bins 10 --categorical region plan --dtype float32
"""

from __future__ import annotations

import argparse

NAME = "profile"
HELP = "fit a reference profile (bins and counts per feature) from data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA", help="Parquet, CSV or Arrow file")
    parser.add_argument("-o", "--output", required=True, metavar="REF.json", help="profile to write")
    parser.add_argument("--bins", type=int, default=10, metavar="N", help="quantile bins (10)")
    parser.add_argument(
        "--categorical", nargs="+", default=[], metavar="COL", help="treat COL as categorical"
    )
    parser.add_argument("--exclude", nargs="+", default=[], metavar="COL", help="leave COL out")
    parser.add_argument(
        "--model",
        metavar="MODEL",
        help="model.onnx or package.module:object: fit in its input dtypes and profile its outputs",
    )
    parser.add_argument(
        "--no-outputs", action="store_true", help="with --model: profile the inputs only"
    )
    parser.add_argument(
        "--dtype",
        choices=("float16", "float32", "float64"),
        help="without --model: the float dtype the model receives numeric columns in",
    )


def run(args: argparse.Namespace) -> int:
    from .._imports import cwd_importable

    cwd_importable()  # a package.module:object model in ./, as `mlrt serve` finds it
    import sys
    import warnings
    from pathlib import Path

    from runtime.data import read_table
    from runtime.errors import MlrtError
    from runtime.monitor.profile import DtypeWarning, Profile

    def fail(message: str) -> int:
        print(f"mlrt profile: {message}", file=sys.stderr)
        return 2

    out = Path(args.output)
    if not out.parent.is_dir():
        return fail(f"cannot write {out}: directory {out.parent} does not exist")
    if args.model and args.dtype:
        return fail("--dtype is for profiles without --model (the model's inputs say their dtypes)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DtypeWarning)
            table = read_table(args.data)
            if args.model:
                from runtime.embedded import load
                from runtime.model_profile import fit_for_model

                with load(args.model) as model:
                    profile = fit_for_model(
                        model,
                        table,
                        bins=args.bins,
                        categorical=args.categorical,
                        exclude=args.exclude,
                        outputs=not args.no_outputs,
                    )
            else:
                profile = Profile.fit(
                    table,
                    bins=args.bins,
                    categorical=args.categorical,
                    exclude=args.exclude,
                    dtypes=args.dtype,
                )
        profile.save(out)
    except (OSError, ValueError, MlrtError) as exc:
        return fail(str(exc))
    for w in caught:
        if issubclass(w.category, DtypeWarning):
            print(f"mlrt profile: warning: {w.message}", file=sys.stderr)
    kinds = [f.kind for f in profile.features]
    dtypes = sorted({f.dtype for f in profile.features if f.dtype})
    outputs = ""
    if profile.outputs:
        names = [f.name for f in profile.outputs]
        outputs = f" and {len(names)} outputs ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
    print(
        f"profiled {profile.row_count} rows: {kinds.count('numeric')} numeric and "
        f"{kinds.count('categorical')} categorical features"
        f"{' binned as ' + '/'.join(dtypes) if dtypes else ''}{outputs} -> {out}"
    )
    return 0
