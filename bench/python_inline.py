"""What keeping Python models off the event loop costs: a Python model at concurrency 1,
served as shipped (its batches on its thread: a Python model's `inline_max_us` defaults
to 0, docs/reliability.md) against the same model forced inline (`inline_max_us = 40`),
one keep-alive connection each, in interleaved rounds:

    python -m bench.python_inline [--rounds 15] [--requests 300] [--json [PATH]]

The model is `bench.python_inline:numpy_mlp`, a 20-64-2 perceptron in numpy (a
few microseconds a row), so the thread hop is most of what differs. One server process
each, V2 binary requests pre-encoded; the table gives the median over rounds of each round's
p50 and p99 with the lowest and highest round, and each round's p50 over the inline
server's in the same round.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from runtime._child import mlrt_command

from . import _results
from ._harness import (
    RawHTTP,
    free_port,
    idle_of,
    idle_policy,
    paired_rounds,
    post_request,
    server,
    v2_binary_body,
)
from ._results import spread

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1
INLINE_US = 40
INLINE = f"inline ({INLINE_US} us)"

_rng = np.random.default_rng(0)
_W1 = _rng.standard_normal((20, 64)).astype(np.float32)
_W2 = _rng.standard_normal((64, 2)).astype(np.float32)


def numpy_mlp(input: np.ndarray) -> np.ndarray:
    """A two-layer perceptron in numpy: a Python model of bounded, small cost."""
    return np.maximum(input @ _W1, 0) @ _W2


numpy_mlp.inputs = [{"name": "input", "datatype": "FP32", "shape": [-1, 20]}]  # type: ignore[attr-defined]
numpy_mlp.outputs = [{"name": "output", "datatype": "FP32", "shape": [-1, 2]}]  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    from ._results import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--requests", type=int, default=300, help="per system per round")
    _results.json_option(p)
    args = p.parse_args(argv)
    settings = {"rounds": args.rounds, "requests": args.requests, "processes": 1, "inline_max_us": INLINE_US,
                "model": "bench.python_inline:numpy_mlp (20-64-2 in numpy), one row, V2 binary",
                "idle": idle_policy()}  # fmt: skip
    run = Run("python_inline", SCRIPT_VERSION, settings, argv=argv,
              measured=("runtime", "native", "setup.py", "bench/_harness.py"))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mlrt-bench-python-inline-") as d:
        results = _measure(args, Path(d))
    print(markdown(run.envelope(results)), end="")
    if args.json is not None:
        run.save(results, args.json or None)


def _measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    configs = {}
    for name, inline in (("thread (default)", None), (INLINE, INLINE_US)):
        path = tmp / f"{len(configs)}.toml"
        line = "" if inline is None else f"inline_max_us = {inline}\n"
        path.write_text(f'[[models]]\nname = "numpy_mlp"\nsource = "bench.python_inline:numpy_mlp"\n{line}')
        configs[name] = path
    x = np.random.default_rng(1).standard_normal((1, 20)).astype(np.float32)
    body, headers = v2_binary_body(x)
    raw = post_request("/v2/models/numpy_mlp/infer", body, headers)
    with contextlib.ExitStack() as stack:
        ports = {}
        for name, path in configs.items():
            ports[name] = free_port()
            cmd = mlrt_command(
                "serve", "--config", str(path), "--port", str(ports[name]), "--log-level", "warning"
            )
            stack.enter_context(server(cmd, ports[name]))
        # Connected once both are up: a connection that sends nothing for the server's
        # header_timeout_s is answered 408 and closed.
        systems = {}
        for name, port in ports.items():
            conn = RawHTTP(port)
            stack.callback(conn.close)

            def once(c: RawHTTP = conn) -> None:
                status, _ = c.request(raw)
                if status != 200:
                    raise RuntimeError(f"status {status}")

            systems[name] = once
        per_round = paired_rounds(systems, args.rounds, args.requests)
    return {
        "per_round_p50_p99_us": {n: [[float(a), float(b)] for a, b in v] for n, v in per_round.items()},
        "idle_after": idle_policy(),
    }


def markdown(saved: dict[str, Any], name: str = "python_inline") -> str:
    """A saved run's table (bench/_results.py's layout) in Markdown."""
    s, r = saved["settings"], saved["results"]
    per_round = r["per_round_p50_p99_us"]
    inline = f"inline ({s['inline_max_us']} us)"
    base = [p50 for p50, _ in per_round[inline]]
    lines = [f"| system | p50 µs | p99 µs | p50 / {inline}, per round |", "|---|---|---|---|"]
    for system, vals in per_round.items():
        p50s, p99s = [v[0] for v in vals], [v[1] for v in vals]
        ratios = [a / b for a, b in zip(p50s, base, strict=True)]
        lines.append(f"| {system} | {spread(p50s)} | {spread(p99s)} | {spread(ratios, '.2f')} |")
    idle = idle_of(saved)
    lines += [
        "",
        f"Concurrency 1, {s['model']}; {s['rounds']} rounds x {s['requests']} requests per system, order "
        f"rotated, one keep-alive connection to one server process each: the model on its thread (a Python "
        f"model's default) and forced inline on the event loop (`inline_max_us = {s['inline_max_us']}`). "
        f"Median over rounds [lowest-highest round]; the ratio is per round. Idle policy: {idle}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
