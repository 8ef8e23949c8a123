"""Validate a data set against the reference profile it should look like: the data gate of
a CI pipeline, before training or scoring.

Checks, each reported with the figure that failed:
  schema   every profiled column present and of a type the profile takes; no unknown
           columns (unless --allow-extra, or named with --ignore, such as the label)
  quality  missing share (nulls, NaN) within the reference's + --max-null-increase (and
           never over --max-null-rate); categorical values the reference never had (at
           most --max-unseen); numbers outside the reference's range (at most
           --max-out-of-range); columns constant here that varied in the reference;
           repeated rows with --duplicates LIMIT. Past a limit fails when chance does
           not explain it (the drift rule's significance and Holm's correction)
  model    with --model: the columns map onto the model's inputs as mlrt predict maps
           them, every value converts to its input's datatype, and the profile bins
           each float column in the dtype the model receives (else unchanged data can
           alarm)
  drift    PSI per feature by the server's rule (bands, significance, minimum rows); the
           data fails when the model-level status is alert

Formats: text (a terminal or a CI log), json (stable, docs/gates.md), markdown (a table,
the failing checks first, to post as a pull-request comment).
Exit status: 0 passed, 1 failed, 2 bad input (no such file, an unreadable profile).

examples:
  mlrt validate today.parquet --profile ref.json
  mlrt validate train.csv --profile ref.json --ignore churned --format markdown -o report.md
  mlrt validate today.parquet --profile ref.json --model churn.onnx --ignore customer_id
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

NAME = "validate"
HELP = "check a data set against a reference profile: schema, quality, drift (exit 1 if it fails)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="+", metavar="DATA", help="Parquet, CSV or Arrow files or folders")
    parser.add_argument("--profile", required=True, metavar="REF.json", help="the reference (mlrt profile)")
    parser.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    parser.add_argument("-o", "--output", metavar="REPORT", help="write the report here instead of stdout")
    parser.add_argument("--allow-extra", action="store_true", help="columns the profile lacks are fine")
    parser.add_argument(
        "--ignore", nargs="+", default=[], metavar="COL", help="columns to leave out (labels, ids)"
    )
    parser.add_argument(
        "--max-null-increase", type=float, default=0.05, metavar="X",
        help="missing share allowed above the reference's (0.05)",
    )  # fmt: skip
    parser.add_argument("--max-null-rate", type=float, metavar="X", help="missing share never allowed past X")
    parser.add_argument(
        "--max-unseen",
        type=float,
        default=0.0,
        metavar="X",
        help="share of never-seen categories allowed (0)",
    )
    parser.add_argument(
        "--max-out-of-range", type=float, default=0.01, metavar="X",
        help="share of numbers outside the reference's range allowed (0.01)",
    )  # fmt: skip
    parser.add_argument(
        "--model", metavar="MODEL",
        help="also check the data against this model's inputs (anything mlrt serve takes)",
    )  # fmt: skip
    parser.add_argument("--registry", metavar="URI", help="registry for MODEL refs (default: MLRT_REGISTRY)")
    parser.add_argument(
        "--duplicates", type=float, metavar="LIMIT", help="check repeated rows: share allowed"
    )


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report, indent=1) + "\n"
    failed = report["failed"]
    verdict = "PASSED" if report["passed"] else f"FAILED ({failed} check{'' if failed == 1 else 's'})"
    head = f"validate {verdict}: {', '.join(report['data'])}, {report['rows']:,} rows against a reference of "
    head += f"{report['reference_rows']:,}"
    checks = report["checks"]  # failing first
    if fmt == "markdown":
        lines = [
            f"**mlrt validate {verdict}**: {report['rows']:,} rows against {report['reference_rows']:,}",
            "",
        ]
        lines += ["| result | family | check | column | finding |", "|---|---|---|---|---|"]
        for c in checks:
            if c["passed"] and c["family"] == "drift" and c["check"] == "psi":
                continue  # every passing feature's PSI would drown the table; the JSON has them
            mark = "pass" if c["passed"] else "**FAIL**"
            finding = c["message"].replace("|", "\\|")
            lines.append(f"| {mark} | {c['family']} | {c['check']} | {c['column'] or ''} | {finding} |")
        return "\n".join(lines) + "\n"
    lines = [head]
    for c in checks:
        if c["passed"]:
            continue
        lines.append(f"  FAILED {c['family']}/{c['check']}: {c['message']}")
    passed = sum(1 for c in checks if c["passed"])
    lines.append(f"  {passed} checks passed")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from .._imports import cwd_importable

    cwd_importable()  # a package.module:object model in ./, as `mlrt serve` finds it
    from runtime.errors import MlrtError
    from runtime.gates import validate

    from . import failer

    fail = failer("validate")
    try:
        result = validate(
            args.data,
            args.profile,
            allow_extra=args.allow_extra,
            ignore=args.ignore,
            max_null_increase=args.max_null_increase,
            max_null_rate=args.max_null_rate,
            max_unseen=args.max_unseen,
            max_out_of_range=args.max_out_of_range,
            duplicates=args.duplicates,
            model=args.model,
            registry=args.registry,
        )
    except (MlrtError, FileNotFoundError, ValueError, OSError) as exc:
        return fail(str(exc))
    text = render(result.to_json(), args.format)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            return fail(f"cannot write {args.output}: {exc}")
    else:
        sys.stdout.write(text)
    return 0 if result.passed else 1
