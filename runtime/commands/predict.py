"""Score data files with a model and write the predictions: batch scoring on one machine.

DATA is files, folders or glob patterns of Parquet, CSV or Arrow IPC, read one record
batch at a time (--batch-rows), so memory follows the batch size, not the data. The
output (its format from -o's suffix, or --format) holds the --passthrough columns, then
the model's outputs as columns: `label` for a one-column output, `probabilities_<class>`
for a classifier's scores (one column per class), `<output>_<i>` for another wider one.
It is written under a temporary name and renamed at the end: an interrupted run never
leaves a file that looks complete.

Which columns feed the model: --columns, in order; else, when every input is one column
named like a data column, by name; else the profile's features when they fill the input
(data with some of them but not all is refused);
else every column but the --passthrough ones, in the file's order. Each is converted to
the model's datatype by the server's rule (float64 into FP32: yes; float into INT64: no).

With a profile (--profile, or the one registered with a registry version), every row is
counted into the reference's bins as the server counts it, and the drift report ends
the run; --fail-on-drift exits 1 when the model's status is alert. Exit status 2 on bad
input or a model that fails, 130 when interrupted (Ctrl-C), 143 when terminated (SIGTERM);
either way the partial output is removed.

examples:
  mlrt predict churn.onnx customers.parquet -o scored.parquet --passthrough customer_id
  mlrt predict churn@champion 'exports/2026-12-*.csv' -o scored.csv --fail-on-drift
  mlrt predict model.onnx data/ -o out.arrow --columns age income tenure --json
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

NAME = "predict"
HELP = "score Parquet/CSV/Arrow files with a model into a file (batch scoring)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="model.onnx, package.module:object or a registry ref (churn@champion)"
    )
    parser.add_argument("data", nargs="+", metavar="DATA", help="files, folders or globs of one format")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="the predictions file")
    parser.add_argument("--format", choices=("parquet", "csv", "arrow"), help="default: from OUT's suffix")
    parser.add_argument("--batch-rows", type=int, default=65_536, metavar="N", help="rows per batch (65536)")
    parser.add_argument("--columns", nargs="+", metavar="COL", help="columns feeding the model, in order")
    parser.add_argument("--outputs", nargs="+", metavar="NAME", help="model outputs to write (default: all)")
    parser.add_argument(
        "--passthrough", nargs="+", default=[], metavar="COL", help="columns copied to the output (ids)"
    )
    parser.add_argument("--profile", metavar="REF.json", help="reference profile: report drift at the end")
    parser.add_argument(
        "--fail-on-drift", action="store_true",
        help="exit 1 when the drift status is alert (needs a profile: exit 2 without one)",
    )
    parser.add_argument("--threads", type=int, metavar="N", help="onnxruntime threads (default: all CPUs)")
    parser.add_argument("--registry", metavar="URI", help="registry for MODEL refs (default: MLRT_REGISTRY)")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON line (the default when stdout is not a terminal)"
    )


class _Terminated(KeyboardInterrupt):
    """SIGTERM (timeout, Kubernetes, a scheduler stopping the job), handled as Ctrl-C is:
    the scoring threads stop and the partial output is removed."""


@contextlib.contextmanager
def _terminated_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum: int, frame: object) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    from .._imports import cwd_importable

    cwd_importable()  # a package.module:object model in ./, as `mlrt serve` finds it
    from runtime.errors import MlrtError
    from runtime.offline import predict_files

    from . import failer

    fail = failer("predict")

    as_json = args.json or not sys.stdout.isatty()
    progress, bar = _progress(enabled=sys.stderr.isatty())
    try:
        with bar, _terminated_as_interrupt():
            options = {name: getattr(args, name) for name in _OPTIONS}
            summary = predict_files(
                args.model, args.data, args.output, progress=progress, require_profile=args.fail_on_drift,
                **options,
            )
    except _Terminated:
        print(f"mlrt predict: terminated; {args.output} was not written", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"mlrt predict: interrupted; {args.output} was not written", file=sys.stderr)
        return 130
    except (MlrtError, FileNotFoundError, ValueError, OSError) as exc:
        return fail(f"{exc}; {args.output} was not written")
    if as_json:
        import json

        print(json.dumps(summary.to_json()))
    else:
        print(
            f"wrote {summary.rows:,} rows ({', '.join(summary.columns)}) to {summary.output} "
            f"in {summary.seconds:.1f} s ({summary.rows_per_s:,.0f} rows/s)"
        )
        if summary.drift is not None:
            from .drift import render

            sys.stdout.write(render([{**summary.drift, "source": ", ".join(args.data)}], "table"))
    if args.fail_on_drift and summary.drift is not None and summary.drift["status"] == "alert":
        return 1
    return 0


#: The command's options that are predict_files' keywords of the same name.
_OPTIONS = ("format", "batch_rows", "columns", "outputs", "passthrough", "profile", "threads", "registry")


def _progress(enabled: bool) -> tuple[Any, Any]:
    """A rich progress bar on stderr (rows, rows/s, ETA when the total is known), or
    nothing when stderr is not a terminal."""
    import contextlib

    if not enabled:
        return None, contextlib.nullcontext()
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("scoring"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}{task.fields[of]} rows"),
        TextColumn("{task.fields[rate]} rows/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("predict", total=None, of="", rate="-")

    def update(rows: int, total: int | None, seconds: float) -> None:
        rate = f"{rows / seconds:,.0f}" if seconds > 0 else "-"
        of = f" of {total:,}" if total else ""
        bar.update(task, completed=rows, total=total, of=of, rate=rate)

    return update, bar
