"""Batch scoring throughput and memory: `mlrt predict` against bare onnxruntime.

    python -m bench.predict [--rows 1000000] [--rounds 5] [--batch-rows 65536]
    python -m bench.predict --rss [--rss-rows 1000000 10000000]

Throughput (the default). Two models: the bench MLP (20 FP32 -> 64 -> 32 -> 2) and a
tree ensemble (100 trees of depth 6, onnxruntime's TreeEnsembleRegressor; bench/models.py),
over the same rows: a Parquet file of 20 float32 feature columns and an int64 id, written
with one row group per batch. Per round, in rotated order:

  onnxruntime, N threads   `session.run` over the same batches, already in memory as the
                           float32 matrices the model takes (no reading, no writing): the
                           ceiling; 1 thread and every CPU, each labelled
  mlrt predict             `runtime.predict_files` (what `mlrt predict` runs) reading the
                           Parquet file and writing a Parquet file of the id and the
                           outputs, with its defaults (onnxruntime on every CPU but one)
  mlrt predict + drift     the same with a reference profile: every row counted, the
                           drift report at the end
  Parquet in and out       the same columns read and a file of three columns written with
                           pyarrow as mlrt reads and writes them, no model: the files' own
                           cost
  by hand                  what a user writes without mlrt: pyarrow's ParquetFile.iter_batches,
                           np.column_stack, an onnxruntime session with its default options,
                           pq.ParquetWriter's defaults for the id and the outputs; one thread
                           of Python, one batch after the other

Figures: rows/s, median over rounds [min-max]; the process's CPU time per row (every
thread, onnxruntime's included), median; and per round mlrt's rows/s over the best
onnxruntime row's in that round and over the by-hand job's (the ratios' median and
range). Goal (issue 19): at least 0.8 of the best onnxruntime, with and without drift,
both models.

--rss: peak resident memory of `mlrt predict` (the command, a fresh process per run) on
the MLP over files of each --rss-rows size, two runs each, interleaved; the goal is the
largest within 20% of the smallest.
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
from pathlib import Path
from typing import Any

import numpy as np

from . import _results, models
from ._results import spread

FEATURES = 20
#: Raised when a change makes earlier results incomparable (bench/_results.py). 2: the job by
#: hand and CPU per row added, the files' own cost read as mlrt reads them.
SCRIPT_VERSION = 2


def write_data(path: Path, rows: int, batch_rows: int, seed: int = 0) -> None:
    """A Parquet file of `rows` rows (20 float32 features and an id), written in pieces."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    schema = pa.schema([("id", pa.int64()), *[(f"f{j}", pa.float32()) for j in range(FEATURES)]])
    with pq.ParquetWriter(str(path), schema) as w:
        for start in range(0, rows, batch_rows):
            n = min(batch_rows, rows - start)
            X = rng.standard_normal((n, FEATURES), dtype=np.float32)
            cols = [pa.array(np.arange(start, start + n)), *[pa.array(X[:, j]) for j in range(FEATURES)]]
            w.write_batch(pa.RecordBatch.from_arrays(cols, schema=schema), row_group_size=n)


def fit_profile(path: Path, data: Path) -> None:
    import pyarrow.parquet as pq

    from runtime.monitor import Profile

    table = pq.read_table(data, columns=[f"f{j}" for j in range(FEATURES)]).slice(0, 200_000)
    Profile.fit({name: table.column(name).to_numpy() for name in table.column_names}).save(path)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def throughput(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    return {
        "mlp": _measure(args, tmp, "mlp", models.mlp, args.rows),
        "trees": _measure(args, tmp, "trees", models.trees, args.tree_rows),
    }


def _measure(
    args: argparse.Namespace, tmp: Path, model_name: str, build: Any, rows: int
) -> dict[str, object]:
    """Every system on one model, in rotated rounds."""
    import onnxruntime as ort
    import pyarrow.parquet as pq

    from runtime.offline import predict_files

    model = build(tmp / f"{model_name}.onnx")
    data = tmp / f"{model_name}.parquet"
    write_data(data, rows, args.batch_rows)
    profile = tmp / f"{model_name}-ref.json"
    fit_profile(profile, data)
    table = pq.read_table(data, columns=[f"f{j}" for j in range(FEATURES)])
    batches = [
        np.column_stack([c.to_numpy() for c in table.slice(s, args.batch_rows).columns])
        for s in range(0, rows, args.batch_rows)
    ]
    del table
    sessions = {}
    for threads in sorted({1, _cpus()}):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sessions[threads] = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        sessions[threads].run(None, {"input": batches[0]})

    def bare(sess: object = None, threads: int = 1) -> float:
        s = sessions[threads]
        t = time.perf_counter()
        for x in batches:
            s.run(None, {"input": x})
        return rows / (time.perf_counter() - t)

    def mlrt(with_profile: bool) -> float:
        out = tmp / "scored.parquet"
        t = time.perf_counter()
        summary = predict_files(
            str(model), data, out, batch_rows=args.batch_rows, passthrough=["id"],
            profile=str(profile) if with_profile else None,
        )  # fmt: skip
        assert summary.rows == rows
        return rows / (time.perf_counter() - t)

    def by_hand() -> float:
        # The same job without mlrt, as its documentation would lead a user to write it.
        import pyarrow as pa

        t = time.perf_counter()
        names = [f"f{j}" for j in range(FEATURES)]
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        outputs = [o.name for o in session.get_outputs()]
        reader = pq.ParquetFile(str(data))
        writer = None
        for b in reader.iter_batches(batch_size=args.batch_rows, columns=["id", *names]):
            X = np.column_stack([b.column(name).to_numpy() for name in names])
            results = session.run(outputs, {"input": X})
            cols = {"id": b.column("id")}
            for name, r in zip(outputs, results, strict=True):
                r = r.reshape(len(X), -1)
                for k in range(r.shape[1]):
                    cols[name if r.shape[1] == 1 else f"{name}_{k}"] = pa.array(r[:, k])
            out = pa.RecordBatch.from_pydict(cols)
            if writer is None:
                writer = pq.ParquetWriter(str(tmp / "by-hand.parquet"), out.schema)
            writer.write_batch(out)
        assert writer is not None
        writer.close()
        return rows / (time.perf_counter() - t)

    def io_only() -> float:
        # The files alone: the same columns read as mlrt reads them (ParquetFile.iter_batches)
        # and a file of the id and two float columns written as mlrt writes them (no
        # dictionary pages for numbers), no model. What scoring a Parquet file costs anyone.
        import pyarrow as pa

        t = time.perf_counter()
        cols = ["id", *[f"f{j}" for j in range(FEATURES)]]
        writer = None
        for b in pq.ParquetFile(str(data)).iter_batches(batch_size=args.batch_rows, columns=cols):
            out = pa.RecordBatch.from_arrays([b.column(0), b.column(1), b.column(2)], ["id", "a", "b"])
            if writer is None:
                writer = pq.ParquetWriter(str(tmp / "io.parquet"), out.schema, use_dictionary=False)
            writer.write_batch(out)
        assert writer is not None
        writer.close()
        return rows / (time.perf_counter() - t)

    systems = {f"onnxruntime, {n} thread{'s' if n > 1 else ''}": (lambda n=n: bare(threads=n))
               for n in sessions}  # fmt: skip
    systems["Parquet in and out, no model"] = io_only
    systems["by hand: pyarrow + onnxruntime"] = by_hand
    systems["mlrt predict"] = lambda: mlrt(False)
    systems["mlrt predict + drift"] = lambda: mlrt(True)
    names = list(systems)
    for name in names:  # warm-up: files in the page cache, code loaded
        systems[name]()
    per_round: dict[str, list[float]] = {n: [] for n in names}
    cpu_ns: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            c = time.process_time()
            per_round[name].append(systems[name]())
            cpu_ns[name].append((time.process_time() - c) / rows * 1e9)
        print(f"[bench.predict] {model_name} round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    bare_names = [n for n in names if n.startswith("onnxruntime")]  # the ceiling
    best = [max(per_round[n][i] for n in bare_names) for i in range(args.rounds)]
    return {
        "rows": rows,
        "batch_rows": args.batch_rows,
        "rows_per_s": per_round,
        "cpu_ns_per_row": cpu_ns,
        "ratio_to_best_onnxruntime": {
            n: [per_round[n][i] / best[i] for i in range(args.rounds)] for n in names if n.startswith("mlrt")
        },
        "ratio_to_by_hand": {
            n: [per_round[n][i] / per_round["by hand: pyarrow + onnxruntime"][i] for i in range(args.rounds)]
            for n in names
            if n.startswith("mlrt")
        },
    }


def peak_rss(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    model = models.mlp(tmp / "mlp.onnx")
    files = {}
    for rows in args.rss_rows:
        files[rows] = tmp / f"rss-{rows}.parquet"
        write_data(files[rows], rows, args.batch_rows)
    out: dict[int, list[float]] = {rows: [] for rows in files}
    for _ in range(2):
        for rows, data in files.items():
            cmd = [sys.executable, "-m", "runtime", "predict", str(model), str(data), "-o",
                   str(tmp / "rss-out.parquet"), "--passthrough", "id", "--json"]  # fmt: skip
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(proc.pid, 0)
            stdout = proc.stdout.read() if proc.stdout else b""  # type: ignore[union-attr]
            if status != 0:
                raise SystemExit(f"mlrt predict failed: {proc.stderr.read().decode() if proc.stderr else ''}")
            assert json.loads(stdout)["rows"] == rows
            out[rows].append(usage.ru_maxrss / 1024)  # KiB -> MiB
    return {"peak_rss_mib": {str(k): v for k, v in out.items()}}


def markdown(saved: dict[str, Any], name: str = "predict") -> str:
    """A saved run's table (bench/_results.py's layout) in Markdown."""
    r = saved["results"]
    if name == "predict_rss":
        sizes = r["peak_rss_mib"]
        lines = ["| rows | peak RSS MiB, each run |", "|---|---|"]
        lines += [
            f"| {int(rows):,} | {' / '.join(f'{v:.0f}' for v in runs)} |" for rows, runs in sizes.items()
        ]
        values = [statistics.median(v) for v in sizes.values()]
        growth = max(values) / min(values) - 1
        verdict = "PASS" if growth <= 0.2 else "FAIL"
        lines += ["", f"{verdict}: largest over smallest median +{100 * growth:.1f}% (goal: within 20%)"]
        return "\n".join(lines) + "\n"
    models_ = list(r)
    head = " | ".join(f"{m}, {r[m]['rows']:,} rows | CPU ns/row" for m in models_)
    lines = [f"| system | {head} |", "|---" * (1 + 2 * len(models_)) + "|"]
    for system in r[models_[0]]["rows_per_s"]:
        cells = []
        for m in models_:
            cells += [
                spread(r[m]["rows_per_s"][system], ",.0f"),
                f"{statistics.median(r[m]['cpu_ns_per_row'][system]):,.0f}",
            ]
        lines.append(f"| {system} | {' | '.join(cells)} |")
    for key, label in (("ratio_to_best_onnxruntime", "best onnxruntime"), ("ratio_to_by_hand", "by hand")):
        for system in r[models_[0]][key]:
            cells = []
            for m in models_:
                v = r[m][key][system]
                cell = spread(v, '.3f')
                if key == "ratio_to_best_onnxruntime":
                    cell = f"**{cell}** {'PASS' if statistics.median(v) >= 0.8 else 'FAIL'}"
                cells += [cell, ""]
            lines.append(f"| {system} / {label}, per round | {' | '.join(cells)} |")
    batch = r[models_[0]]["batch_rows"]
    rounds = len(next(iter(r[models_[0]]["rows_per_s"].values())))
    lines += [
        "",
        f"Rows/s median [min-max] over {rounds} rounds in rotated order, batches of {batch:,} rows; CPU "
        "time per row of the whole process (every thread), median; ratios per round. "
        "PASS/FAIL: the goal of at least 0.8 of the best onnxruntime row (issue 19).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from ._results import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows for the MLP (1,000,000)")
    p.add_argument("--tree-rows", type=int, default=500_000, help="rows for the trees (500,000)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-rows", type=int, default=65_536)
    p.add_argument("--rss", action="store_true", help="measure peak memory instead")
    p.add_argument("--rss-rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    _results.json_option(p)
    args = p.parse_args(argv)
    name = "predict_rss" if args.rss else "predict"
    settings: dict[str, Any] = {"batch_rows": args.batch_rows}
    if args.rss:
        settings["rss_rows"] = args.rss_rows
    else:
        settings.update(rows=args.rows, tree_rows=args.tree_rows, rounds=args.rounds)
    run = Run(name, SCRIPT_VERSION, settings, argv=argv, script="predict",
              measured=("runtime", "native", "setup.py", "bench/models.py"))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mlrt-bench-predict-") as d:
        tmp = Path(d)
        results = peak_rss(args, tmp) if args.rss else throughput(args, tmp)
    print(markdown(run.envelope(results), name), end="")
    if args.json is not None:
        run.save(results, args.json or None)


if __name__ == "__main__":
    main()
