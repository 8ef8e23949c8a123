"""What keeping Python models off the event loop costs: a Python model at concurrency 1,
served as shipped (its batches on its thread: a Python model's `inline_max_us` defaults
to 0, docs/reliability.md) against the same model forced inline (`inline_max_us = 40`),
one keep-alive connection each, in interleaved rounds:

    python -m bench.python_inline [--rounds 15] [--requests 300]

The model is `bench.python_inline:numpy_mlp`, a 20-64-2 perceptron in numpy (a
few microseconds a row), so the thread hop is most of what differs.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

from runtime._child import mlrt_command

from ._harness import RawHTTP, free_port, paired_rounds, post_request, server, v2_binary_body

_rng = np.random.default_rng(0)
_W1 = _rng.standard_normal((20, 64)).astype(np.float32)
_W2 = _rng.standard_normal((64, 2)).astype(np.float32)


def numpy_mlp(input: np.ndarray) -> np.ndarray:
    """A two-layer perceptron in numpy: a Python model of bounded, small cost."""
    return np.maximum(input @ _W1, 0) @ _W2


numpy_mlp.inputs = [{"name": "input", "datatype": "FP32", "shape": [-1, 20]}]  # type: ignore[attr-defined]
numpy_mlp.outputs = [{"name": "output", "datatype": "FP32", "shape": [-1, 2]}]  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--requests", type=int, default=300, help="per system per round")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="mlrt-bench-"))
    configs = {}
    for name, inline in (("thread (default)", None), ("inline (40 us)", 40)):
        path = tmp / f"{len(configs)}.toml"
        line = "" if inline is None else f"inline_max_us = {inline}\n"
        path.write_text(f'[[models]]\nname = "numpy_mlp"\nsource = "bench.python_inline:numpy_mlp"\n{line}')
        configs[name] = path
    x = np.random.default_rng(1).standard_normal((1, 20)).astype(np.float32)
    body, headers = v2_binary_body(x)
    raw = post_request("/v2/models/numpy_mlp/infer", body, headers)
    with contextlib.ExitStack() as stack:
        systems = {}
        for name, path in configs.items():
            port = free_port()
            cmd = mlrt_command("serve", "--config", str(path), "--port", str(port), "--log-level", "warning")
            stack.enter_context(server(cmd, port))
            conn = RawHTTP(port)

            def once(c: RawHTTP = conn) -> None:
                status, _ = c.request(raw)
                if status != 200:
                    raise RuntimeError(f"status {status}")

            systems[name] = once
        per_round = paired_rounds(systems, args.rounds, args.requests)
    base = np.array([v[0] for v in per_round["inline (40 us)"]])
    print(f"concurrency 1, a numpy MLP as a Python model, {args.rounds} rounds x {args.requests} requests")
    print(f"{'system':<18}{'p50 µs':>10}{'p99 µs':>10}{'p50 / inline':>14}{'p50 spread':>16}")
    for name, vals in per_round.items():
        p50 = np.array([v[0] for v in vals])
        p99 = np.array([v[1] for v in vals])
        ratio = np.median(p50 / base)
        spread = f"{np.percentile(p50, 25):.0f}-{np.percentile(p50, 75):.0f}"
        print(f"{name:<18}{np.median(p50):>10.1f}{np.median(p99):>10.1f}{ratio:>14.2f}{spread:>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
