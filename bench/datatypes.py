"""What converting an input's datatype costs, and what the rule costs a request that needs none.

    python -m bench.datatypes [--rounds 40] [--calls 2000] [--baseline DIR] [--json]

Each case is one request's decode-and-check step, exactly as the server runs it
(the pipeline's decode stage: decode the body, check_inputs, select outputs), or one
`runtime.load(...).predict` call on a model that returns its input (so that what is
timed is mlrt's own work around a model), for one row of 20 features:

  json fp32 / binary fp32 / msgpack fp32   sent in the model's FP32: the common case
  json fp64 / binary fp64 / msgpack fp64   sent as FP64 (numpy's default): converted
  predict f32 / predict f64                the in-process API with float32 / float64 rows

Every case runs in worker processes, in short rounds interleaved with the others (order
rotated each round) so the machine's drift hits them alike; a round's figure is the mean
time per call over --calls calls. The table gives the median over rounds and the 25th-75th
percentiles. With --baseline DIR (another checkout of mlrt with its native extensions
built, e.g. `git worktree add ../mlrt-before <commit>` and `python setup.py build_ext
--inplace` there), the same cases also run on that code, paired round by round, and the
table adds the median and quartiles of the per-round ratio (this code / baseline): cases
the baseline refuses (FP64 into FP32 before the rule) are left out of the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

CASES = [
    "json fp32", "binary fp32", "msgpack fp32", "predict f32",
    "json fp64", "binary fp64", "msgpack fp64", "predict f64",
]  # fmt: skip

# Runs in a worker process against whichever checkout is first on its PYTHONPATH; it uses
# only what both sides of a comparison have (the endpoint's decode step, runtime.load's
# LocalModel, PythonModel), so it is passed as source rather than imported from here.
_WORKER = r'''
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
'''


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


def run(rounds: int, calls: int, baseline: Path | None) -> dict[str, object]:
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
    out: dict[str, object] = {
        "rounds": rounds,
        "calls_per_round": calls,
        "runtime": {side: w.runtime for side, w in workers.items()},
        "cases": {},
    }
    cases: dict[str, dict[str, object]] = {}
    for side, case in jobs:
        t = np.asarray(times[(side, case)])
        cases.setdefault(case, {})[f"{side}_ns"] = _quartiles(t)
        cases[case][f"{side}_rounds_ns"] = [round(v, 1) for v in t]
    for case in CASES:
        if ("baseline", case) in times and ("this", case) in times:
            ratio = np.asarray(times[("this", case)]) / np.asarray(times[("baseline", case)])
            cases[case]["ratio"] = _quartiles(ratio, digits=4)
    out["cases"] = cases
    return out


def _quartiles(a: np.ndarray, digits: int = 1) -> dict[str, float]:
    p25, p50, p75 = np.percentile(a, [25, 50, 75])
    return {k: round(float(v), digits) for k, v in (("median", p50), ("p25", p25), ("p75", p75))}


def _table(result: dict[str, object]) -> str:
    cases = result["cases"]
    assert isinstance(cases, dict)
    lines = [
        f"{result['rounds']} rounds x {result['calls_per_round']} calls; "
        "ns per call, median [p25-p75] over rounds",
        f"{'case':<14} {'this code':>24} {'baseline':>24} {'ratio this/baseline':>28}",
    ]
    for case in CASES:
        c = cases.get(case, {})
        cells = []
        for key in ("this_ns", "baseline_ns", "ratio"):
            q = c.get(key)
            cells.append("-" if q is None else f"{q['median']:g} [{q['p25']:g}-{q['p75']:g}]")
        lines.append(f"{case:<14} {cells[0]:>24} {cells[1]:>24} {cells[2]:>28}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls", type=int, default=2000, help="calls per case per round")
    parser.add_argument("--baseline", type=Path, help="another checkout of mlrt to compare with")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    result = run(args.rounds, args.calls, args.baseline)
    print(json.dumps(result, indent=1) if args.json else _table(result))


if __name__ == "__main__":
    main()
