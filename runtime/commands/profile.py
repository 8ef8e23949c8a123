"""Fit a reference profile from a Parquet/CSV/Arrow file and write it as JSON.

Numeric columns get quantile bins (--bins per feature, fewer where values tie);
non-numeric columns and those named by --categorical get one bin per level.

example:
  mlrt profile train.parquet -o ref.json --bins 10 --categorical region plan
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


def run(args: argparse.Namespace) -> int:
    import sys

    from runtime.monitor.profile import Profile

    try:
        profile = Profile.fit(args.data, bins=args.bins, categorical=args.categorical, exclude=args.exclude)
    except (OSError, ValueError) as exc:
        print(f"mlrt profile: {exc}", file=sys.stderr)
        return 2
    profile.save(args.output)
    kinds = [f.kind for f in profile.features]
    print(
        f"profiled {profile.row_count} rows, {kinds.count('numeric')} numeric and "
        f"{kinds.count('categorical')} categorical features -> {args.output}"
    )
    return 0
