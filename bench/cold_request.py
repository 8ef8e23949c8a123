"""What steps of one request cost, warm and with cold caches, in one process.

At concurrency 1 a server's caches go cold between requests (the CPU runs other work or
idles), so a step's cost in a request is not its cost in a tight loop. This measures, one
call at a time, the steps docs/architecture.md ("What a cold request runs, cut down")
describes, each against what it replaced:

- decoding the `inputs` of a V2 JSON request of one 20-feature FP32 row (parsed by orjson
  before the clock starts): the compiled pass `runtime._native._tensors.v2_inputs`, which the
  server takes for a body not in the plainest form, against the Python decoders it falls back
  to (`codec._decode_inputs`);
- decoding that request's whole body, bytes to tensors: orjson and v2_inputs, against the one
  compiled pass the server takes for a body in the plainest form (`v2_json_request`);
- encoding the answer to it (the bench MLP's two FP32 probabilities), response to bytes:
  the compiled pass `encode_response` takes (`v2_json_answer`), against the document built in
  Python and written by orjson (`codec.encode_document`);
- running the bench MLP on that row: onnxruntime's binding (`session._sess.run`, what
  `runtime.models.onnx` calls on CPU) against `session.run`, its Python wrapper.

"warm": calls back to back. "cold": a 200 µs sleep before each call, which lets the caches
cool as between requests at concurrency 1. Each round times every system in both modes
(order rotated per round); a round's figure is the median of its calls. The table gives the
median over rounds [min-max], and the per-round difference of each pair.

    python -m bench.cold_request [--rounds 15] [--calls 2000] [--json [PATH]]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from . import _harness, _results, models
from ._results import spread

#: Raised when a change makes earlier results incomparable (bench/_results.py). 2: the whole
#: body's decode, orjson and v2_inputs against v2_json_request. 3: the answer's encode.
SCRIPT_VERSION = 3
FEATURES = 20
COLD_SLEEP_S = 200e-6

#: (pair, replaced, taken): each pair's two systems, as the table names them.
PAIRS = (
    ("decode one V2 JSON row", "Python decoders", "compiled pass (v2_inputs)"),
    ("decode its whole body", "orjson + v2_inputs", "one compiled pass (v2_json_request)"),
    ("encode its answer", "document + orjson", "one compiled pass (v2_json_answer)"),
    ("run the bench MLP on one row", "session.run (Python wrapper)", "binding run (what mlrt calls)"),
)


def _systems(tmp: Path) -> dict[str, Any]:
    import onnxruntime as ort
    from runtime._native._tensors import v2_inputs, v2_json_request

    from runtime.server.codec import InferResponse, _decode_inputs, encode_document, encode_response

    row = np.random.default_rng(0).standard_normal(FEATURES).astype(np.float32)
    body = orjson.dumps(
        {"inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32", "data": row.tolist()}]}
    )
    empty = memoryview(b"")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(
        str(models.mlp(tmp / "mlp.onnx", FEATURES)), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in session.get_outputs()]
    feeds = {session.get_inputs()[0].name: row.reshape(1, FEATURES)}
    run_options = ort.RunOptions()
    binding = session._sess

    def native() -> None:
        raw = orjson.loads(body)["inputs"]
        t = time.perf_counter_ns()
        v2_inputs(raw, None)
        return time.perf_counter_ns() - t

    def python() -> None:
        raw = orjson.loads(body)["inputs"]
        t = time.perf_counter_ns()
        _decode_inputs(raw, empty, None)
        return time.perf_counter_ns() - t

    def parsed() -> int:
        t = time.perf_counter_ns()
        v2_inputs(orjson.loads(body)["inputs"], None)
        return time.perf_counter_ns() - t

    def whole() -> int:
        t = time.perf_counter_ns()
        v2_json_request(body)
        return time.perf_counter_ns() - t

    # The answer to this row, as the pipeline hands it to the codec (Call.response).
    probabilities = session.run(names, feeds)[0]
    response = InferResponse("mlp", "1", None, {names[0]: probabilities}, [(names[0], False)],
                             {names[0]: "FP32"})  # fmt: skip

    def document() -> int:
        t = time.perf_counter_ns()
        encode_document(response)
        return time.perf_counter_ns() - t

    def answer() -> int:
        t = time.perf_counter_ns()
        encode_response(response)
        return time.perf_counter_ns() - t

    def wrapper() -> int:
        t = time.perf_counter_ns()
        session.run(names, feeds)
        return time.perf_counter_ns() - t

    def bound() -> int:
        t = time.perf_counter_ns()
        binding.run(names, feeds, run_options)
        return time.perf_counter_ns() - t

    # Both ways must give the same answer, or the comparison means nothing.
    a, b = (
        v2_inputs(orjson.loads(body)["inputs"], None),
        _decode_inputs(orjson.loads(body)["inputs"], empty, None),
    )
    assert a is not None and np.array_equal(a[0]["input"], b[0]["input"]) and a[1] == b[1]
    c = v2_json_request(body)
    assert c is not None and c[1]["input"].tobytes() == a[0]["input"].tobytes() and c[2] == a[1]
    assert np.array_equal(session.run(names, feeds)[0], binding.run(names, feeds, run_options)[0])
    assert encode_response(response) == encode_document(response)
    from runtime._native._json_answer import v2_json_answer

    assert v2_json_answer("mlp", "1", None, response.outputs, response.selected, response.datatypes)
    return {
        PAIRS[0][1]: python,
        PAIRS[0][2]: native,
        PAIRS[1][1]: parsed,
        PAIRS[1][2]: whole,
        PAIRS[2][1]: document,
        PAIRS[2][2]: answer,
        PAIRS[3][1]: wrapper,
        PAIRS[3][2]: bound,
    }


def _time(fn: Any, calls: int, cold: bool) -> float:
    """Median µs of `calls` single calls."""
    out = np.empty(calls)
    for i in range(calls):
        if cold:
            time.sleep(COLD_SLEEP_S)
        out[i] = fn()
    return float(np.median(out)) / 1e3


def measure(rounds: int, calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mlrt-bench-cold-") as d:
        systems = _systems(Path(d))
        for fn in systems.values():  # warm-up: imports, first-call setup
            _time(fn, 200, False)
        names = list(systems)
        out: dict[str, dict[str, list[float]]] = {m: {n: [] for n in names} for m in ("warm", "cold")}
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                for mode in ("warm", "cold"):
                    out[mode][name].append(round(_time(systems[name], calls, mode == "cold"), 3))
    return {"median_us_per_round": out}


def markdown(saved: dict[str, Any], name: str = "cold_request") -> str:
    r = saved["results"]["median_us_per_round"]
    s = saved["settings"]
    lines = [
        "| step | system | warm µs | cold µs |",
        "|---|---|---|---|",
    ]
    for pair, old, new in s["pairs"]:
        for system in (old, new):
            warm, cold = spread(r["warm"][system], ".2f"), spread(r["cold"][system], ".2f")
            lines.append(f"| {pair} | {system} | {warm} | {cold} |")
        diffs = {m: [a - b for a, b in zip(r[m][old], r[m][new], strict=True)] for m in ("warm", "cold")}
        warm, cold = spread(diffs["warm"], ".2f"), spread(diffs["cold"], ".2f")
        lines.append(f"| {pair} | saved, per round | {warm} | {cold} |")
    lines += [
        "",
        f"Each cell: the median over {s['rounds']} rounds [min-max] of a round's median of "
        f'{s["calls"]:,} single calls, systems in rotated order; "cold": {s["cold_sleep_us"]:g} µs '
        f"asleep before each call. Idle policy: {s['idle_policy']}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from ._results import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=2000, help="single calls per system, mode and round")
    _results.json_option(p)
    args = p.parse_args(argv)
    settings = {
        "rounds": args.rounds,
        "calls": args.calls,
        "cold_sleep_us": COLD_SLEEP_S * 1e6,
        "features": FEATURES,
        "pairs": [list(p) for p in PAIRS],
        "idle_policy": _harness.idle_policy(),
    }
    run = Run("cold_request", SCRIPT_VERSION, settings, argv=argv,
              measured=("runtime", "native", "setup.py", "bench/models.py"))  # fmt: skip
    results = measure(args.rounds, args.calls)
    print(markdown(run.envelope(results)), end="")
    if args.json is not None:
        run.save(results, args.json or None)


if __name__ == "__main__":
    main()
