"""What converting an input's datatype costs, and what the rule costs a request that needs none.

    python -m bench.datatypes [--rounds 300] [--calls 2000] [--baseline DIR] [--json [PATH]]

Each case is one request's decode-and-check step, exactly as the server runs it
(the pipeline's decode stage: decode the body, check_inputs, select outputs), or one
`runtime.load(...).predict` call on a model that returns its input (so that what is
timed is mlrt's own work around a model), for one row of 20 features:

  json fp32 / binary fp32 / msgpack fp32   sent in the model's FP32: the common case
  json fp64 / binary fp64 / msgpack fp64   sent as FP64 (numpy's default): converted
  predict f32 / predict f64                the in-process API with float32 / float64 rows

Every case runs in worker processes, in short rounds interleaved with the others (order
rotated each round) so the machine's drift hits them alike; a round's figure is the mean
time per call over --calls calls. The table gives the median over rounds with the lowest
and highest round, and what FP64 costs over FP32 on the same wire, paired round by round.
With --baseline DIR (another checkout of mlrt with its native extensions built, e.g. `git
worktree add ../mlrt-before <commit>` and `python setup.py build_ext --inplace` there), the
same cases also run on that code, paired round by round, and the table adds the median and
range of the per-round ratio (this code / baseline): cases the baseline refuses (FP64 into
FP32 before the rule) are left out of the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import _results
from ._results import spread

REPO = Path(__file__).resolve().parents[1]
#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1

CASES = [
    "json fp32", "binary fp32", "msgpack fp32", "predict f32",
    "json fp64", "binary fp64", "msgpack fp64", "predict f64",
]  # fmt: skip

# Runs in a worker process against whichever checkout is first on its PYTHONPATH; it uses
# only what both sides of a comparison have (the endpoint's decode step, runtime.load's
# LocalModel, PythonModel), so it is passed as source rather than imported from here.
_WORKER = r"""
import json, sys, time
import msgpack, numpy as np
import runtime
from runtime.config import ModelConfig
from runtime.embedded import LocalModel
from runtime.models.python import PythonModel
try:  # the server's decode step: the pipeline's (or, in a baseline before it, the endpoint's)
    from runtime.server.http import HTTP_WIRE
    from runtime.server.pipeline import Pipeline
except ImportError:
    Pipeline = None

def identity(x):
    return x
identity.inputs = [{"name": "input", "datatype": "FP32", "shape": [-1, 20]}]
identity.outputs = [{"name": "output", "datatype": "FP32", "shape": [-1, 20]}]

model = PythonModel(ModelConfig(name="m", source="bench:identity"), obj=identity)
local = LocalModel(model)
class Entry:
    pass
entry = Entry()
entry.model = model
if Pipeline is not None:
    pipeline = Pipeline(None)

    def decoded(headers, body):
        pipeline.decode(entry, HTTP_WIRE, body, headers, 0.0, False)
else:
    from runtime.server.infer import InferEndpoint

    endpoint = InferEndpoint(None, 1 << 20)

    def decoded(headers, body):
        endpoint._decoded(entry, None, headers, body, 0.0)
x64 = np.random.default_rng(0).random((1, 20))

def v2_json(x, dt):
    doc = {"inputs": [{"name": "input", "datatype": dt, "shape": [1, 20], "data": x.ravel().tolist()}]}
    return json.dumps(doc).encode(), {}

def v2_binary(x, dt):
    raw = x.tobytes()
    head = json.dumps({"inputs": [{"name": "input", "datatype": dt, "shape": [1, 20],
                                   "parameters": {"binary_data_size": len(raw)}}]}).encode()
    return head + raw, {b"inference-header-content-length": str(len(head)).encode()}

def v2_msgpack(x, dt):
    doc = {"inputs": {"input": {"datatype": dt, "shape": [1, 20], "data": x.tobytes()}}}
    return msgpack.packb(doc, use_bin_type=True), {b"content-type": b"application/msgpack"}

def decode_case(make, x, dt):
    body, headers = make(x, dt)
    def run():
        decoded(headers, body)
    return run

def predict_case(x):
    return lambda: local.predict(x)

x32 = x64.astype(np.float32)
cases = {
    "json fp32": decode_case(v2_json, x32, "FP32"),
    "binary fp32": decode_case(v2_binary, x32, "FP32"),
    "msgpack fp32": decode_case(v2_msgpack, x32, "FP32"),
    "predict f32": predict_case(x32),
    "json fp64": decode_case(v2_json, x64, "FP64"),
    "binary fp64": decode_case(v2_binary, x64, "FP64"),
    "msgpack fp64": decode_case(v2_msgpack, x64, "FP64"),
    "predict f64": predict_case(x64),
}
usable = {}
for name, fn in cases.items():
    try:
        for _ in range(200):
            fn()
        usable[name] = fn
    except Exception as exc:  # the baseline may refuse FP64
        usable[name] = None
print(json.dumps({"runtime": runtime.__file__, "cases": [n for n, f in usable.items() if f]}), flush=True)
for line in sys.stdin:
    name, calls = line.rsplit(" ", 1)
    fn = usable[name]
    t0 = time.perf_counter_ns()
    for _ in range(int(calls)):
        fn()
    print((time.perf_counter_ns() - t0) / int(calls), flush=True)
"""


class _Worker:
    def __init__(self, tree: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER], cwd=tree, env=env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        hello = json.loads(self._line())
        self.runtime: str = hello["runtime"]
        self.cases: list[str] = hello["cases"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the benchmark worker exited ({self.proc.wait()})")
        return line

    def time_ns(self, case: str, calls: int) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{case} {calls}\n")
        self.proc.stdin.flush()
        return float(self._line())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def run_cases(rounds: int, calls: int, baseline: Path | None) -> dict[str, Any]:
    """ns per call, one figure per round, per side ("this", and "baseline" with one) and case."""
    workers = {"this": _Worker(REPO)}
    if baseline is not None:
        workers["baseline"] = _Worker(baseline)
    try:
        jobs = [(side, case) for side, w in workers.items() for case in CASES if case in w.cases]
        times: dict[tuple[str, str], list[float]] = {job: [] for job in jobs}
        for r in range(rounds):
            for side, case in jobs[r % len(jobs) :] + jobs[: r % len(jobs)]:
                times[(side, case)].append(workers[side].time_ns(case, calls))
    finally:
        for w in workers.values():
            w.close()
    out: dict[str, Any] = {side: {} for side in workers}
    for (side, case), t in times.items():
        out[side][case] = [round(v, 1) for v in t]
    return {"ns_per_call": out}


def markdown(saved: dict[str, Any], name: str = "datatypes") -> str:
    """A saved run's table (bench/_results.py's layout) in Markdown."""
    s = saved["settings"]
    ns = saved["results"]["ns_per_call"]
    this, base = ns["this"], ns.get("baseline")
    head = ["case", "ns per call", "FP64 - FP32 (same wire), per round, ns"]
    if base is not None:
        head += ["baseline, ns per call", "this / baseline, per round"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for case in s["cases"]:
        if case not in this:
            continue
        cells = [case, spread(this[case], ',.0f')]
        same = case.replace("64", "32")
        if case != same and same in this:
            cells.append(spread(np.asarray(this[case]) - np.asarray(this[same]), ",.0f", sign="+"))
        else:
            cells.append("")
        if base is not None:
            if case in base:
                ratio = np.asarray(this[case]) / np.asarray(base[case])
                cells += [spread(base[case], ',.0f'), spread(ratio, '.3f')]
            else:
                cells += ["refused", ""]
        lines.append("| " + " | ".join(cells) + " |")
    against = ""
    if base is not None:
        against = (
            f" The same cases on the baseline ({s['baseline']}) in the same rounds, paired round by round; "
            "cases it refuses are left out of the comparison."
        )
    lines += [
        "",
        f"One row of 20 features: the server's decode step (decode the body, check the inputs, select "
        f"the outputs) for each wire, or `runtime.load(...).predict` on a model that returns its input; "
        f"sent in the model's FP32 or as FP64 (converted). {s['rounds']} rounds of {s['calls']:,} calls "
        "per case in worker processes, order rotated; a round's figure is its mean per call; "
        f"median [lowest-highest round]; FP64 - FP32 paired by round.{against}",
    ]
    return "\n".join(lines) + "\n"


def _commit(tree: Path) -> str:
    """The commit a checkout is at, with "+ changes" where it has uncommitted ones."""

    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    commit = git("rev-parse", "--short=7", "HEAD") or "unknown commit"
    changed = git("status", "--porcelain", "--", "runtime", "native")
    return commit + (" + uncommitted changes" if changed else "")


def main(argv: list[str] | None = None) -> None:
    from ._results import Run

    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--calls", type=int, default=2000, help="calls per case per round")
    parser.add_argument("--baseline", type=Path, help="another checkout of mlrt to compare with")
    _results.json_option(parser)
    args = parser.parse_args(argv)
    baseline = None if args.baseline is None else f"checkout of {_commit(args.baseline)}"
    # The command names the baseline by its commit, not by a folder of one machine.
    shown = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(shown):
        if arg == "--baseline" and i + 1 < len(shown):
            shown[i + 1] = f"<{baseline}>"
        elif arg.startswith("--baseline="):
            shown[i] = f"--baseline=<{baseline}>"
    settings = {"rounds": args.rounds, "calls": args.calls, "cases": CASES, "baseline": baseline}
    run = Run("datatypes", SCRIPT_VERSION, settings, argv=shown)
    results = run_cases(args.rounds, args.calls, args.baseline)
    print(markdown(run.envelope(results), "datatypes"), end="")
    if args.json is not None:
        run.save(results, args.json or None)


if __name__ == "__main__":
    main()
