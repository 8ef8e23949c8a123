"""Judge a candidate model against its baseline on labelled data: the metric gate of a CI
pipeline.

Both models score the same rows of DATA (files, folders or globs of Parquet, CSV or Arrow
IPC; --target names the true labels, and every other column feeds the models by the rule
of `mlrt predict`). The gate fails when the candidate's metric is worse than the
baseline's by more than --min-delta (with --strict: when the worse end of the bootstrap
interval of the difference is), or when its p99 time per batch is more than
--max-latency-ratio times the baseline's on this machine. The PSI between the two models'
predictions is reported beside it.

Metrics, computed as scikit-learn computes them: accuracy, f1 (binary for 0/1 labels,
else macro), auc and logloss (from the class scores), rmse, mae. The target holds the
labels the models were trained on (names or numbers); each model's scores are matched to
them by its own classes (scikit-learn's classes_, an ONNX classifier's class labels), else
taken as class indices.

Exit status: 0 passed, 1 failed, 2 bad input (a missing column, a model that cannot load).
-o writes the JSON report (docs/gates.md).

examples:
  mlrt gate --candidate churn-v2.onnx --baseline churn@champion --data test.parquet \\
      --target churned --metric auc
  mlrt gate --candidate new.onnx --baseline old.onnx --data test/ --target y --metric rmse \\
      --min-delta 0.5 --max-latency-ratio 1.5 -o gate.json
"""

from __future__ import annotations

import argparse
import json
import sys

NAME = "gate"
HELP = "compare a candidate model with its baseline on labelled data (exit 1 if worse)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--candidate", required=True, metavar="MODEL", help="the model to judge")
    parser.add_argument(
        "--baseline", required=True, metavar="MODEL", help="the model it must not be worse than"
    )
    parser.add_argument("--data", required=True, nargs="+", metavar="DATA", help="labelled data files")
    parser.add_argument("--target", required=True, metavar="COL", help="the column of true labels")
    parser.add_argument(
        "--metric", required=True, choices=("accuracy", "f1", "auc", "logloss", "rmse", "mae")
    )
    parser.add_argument(
        "--min-delta", type=float, default=0.0, metavar="X", help="how much worse the candidate may be (0)"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail unless the whole bootstrap interval is within the tolerance",
    )
    parser.add_argument(
        "--max-latency-ratio",
        type=float,
        metavar="R",
        help="fail when candidate p99 / baseline p99 exceeds R",
    )
    parser.add_argument("--columns", nargs="+", metavar="COL", help="columns feeding the models, in order")
    parser.add_argument("--batch-rows", type=int, default=4096, metavar="N", help="rows per batch (4096)")
    parser.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (1000)")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's random seed (0)")
    parser.add_argument("--registry", metavar="URI", help="registry for MODEL refs (default: MLRT_REGISTRY)")
    parser.add_argument("-o", "--output", metavar="GATE.json", help="write the JSON report here")
    parser.add_argument("--json", action="store_true", help="print the JSON report instead of the summary")


def render(report: dict) -> str:
    """The report as a few lines for a terminal or a CI log."""
    m, lat, drift = report["metric"], report["latency"], report["prediction_drift"]
    lo, hi = m["interval"]
    spread = "undefined" if lo is None or hi is None else f"{lo:+.6g}, {hi:+.6g}"
    verdict = "PASSED" if report["passed"] else "FAILED"
    better = "higher" if m["higher_is_better"] else "lower"
    lines = [
        f"gate {verdict}: {report['candidate']} against {report['baseline']} "
        f"on {report['data']['rows']:,} rows",
        f"  {m['name']} ({better} is better): candidate {m['candidate']:.6g}, baseline {m['baseline']:.6g}, "
        f"difference {m['delta']:+.6g} [{spread}] ({m['confidence']:.0%} bootstrap), "
        f"tolerance {m['min_delta']:g}{' (strict)' if m['strict'] else ''}",
        f"  latency: p99 per batch of {lat['batch_rows']} rows {lat['candidate_p99_s'] * 1e3:.3g} ms against "
        f"{lat['baseline_p99_s'] * 1e3:.3g} ms ({lat['ratio']:.2f}x"
        + (f", limit {lat['max_ratio']:g}x)" if lat["max_ratio"] is not None else ")"),
        f"  prediction drift ({drift['on']}): PSI {drift['psi']:.4f} ({drift['status']})",
    ]
    lines += [f"  FAILED {f}" for f in report["failures"]]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from .._imports import cwd_importable

    cwd_importable()  # a package.module:object model in ./, as `mlrt serve` finds it
    from runtime.errors import MlrtError
    from runtime.gates import gate

    from . import failer

    fail = failer("gate")
    try:
        result = gate(
            args.candidate,
            args.baseline,
            args.data,
            args.target,
            args.metric,
            min_delta=args.min_delta,
            max_latency_ratio=args.max_latency_ratio,
            strict=args.strict,
            batch_rows=args.batch_rows,
            bootstrap=args.bootstrap,
            seed=args.seed,
            columns=args.columns,
            registry=args.registry,
        )
    except (MlrtError, FileNotFoundError, ValueError, OSError) as exc:
        return fail(str(exc))
    report = result.to_json()
    if args.output:
        try:
            with open(args.output, "w") as fh:
                json.dump(report, fh, indent=1)
                fh.write("\n")
        except OSError as exc:
            return fail(f"cannot write {args.output}: {exc}")
    if args.json:
        print(json.dumps(report))
    else:
        sys.stdout.write(render(report))
    return 0 if result.passed else 1
