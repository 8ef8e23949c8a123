"""This checkout against another one of mlrt, side by side in one run: did a change keep
the serving figures?

    python -m bench.ab --baseline DIR [--rounds 8] [--requests 300] [--duration 4]

DIR is another checkout with its native extensions built in place, e.g.
`git worktree add ../mlrt-before <commit> && (cd ../mlrt-before && python setup.py
build_ext --inplace)`. Both serve the bench MLP (20 FP32 -> 2) with the same Python and
packages; only the `runtime` package differs. Per round, in rotated order:
  c=1   one keep-alive connection, pre-encoded V2 JSON requests: p50 and p99 (µs)
  c=64  wrk -t1 -c64 (bench/wrk/post.lua, the same V2 JSON body): requests per second
The table gives each figure's median over rounds and the median of the per-round ratio
this/baseline with its range (for p50, below 1 is faster; for req/s, above 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from runtime._child import mlrt_command

from . import models
from ._harness import RawHTTP, free_port, post_request, server, v2_json_body
from .serving import Target, wrk


def _baseline_command(root: Path, *args: str) -> list[str]:
    # The other checkout's `runtime` first on sys.path, imported before anything else.
    boot = (
        f"import sys; sys.path.insert(0, {str(root)!r}); import runtime; "
        f"assert runtime.__file__.startswith({str(root)!r}), runtime.__file__; "
        "from runtime.cli import main; sys.exit(main())"
    )
    return [sys.executable, "-c", boot, *args]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", type=Path, required=True, help="another mlrt checkout, built in place")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--requests", type=int, default=300, help="c=1 requests per system per round")
    p.add_argument("--duration", type=float, default=4.0, help="c=64 seconds per system per round")
    p.add_argument("--json", metavar="PATH", help="also write the raw per-round figures here")
    args = p.parse_args()
    base = args.baseline.resolve()
    if not (base / "runtime" / "__init__.py").exists():
        sys.exit(f"{base} is not an mlrt checkout")

    tmp = Path(tempfile.mkdtemp(prefix="mlrt-ab-"))
    model = models.mlp(tmp / "mlp.onnx")
    x = np.random.default_rng(0).standard_normal((1, 20)).astype(np.float32)
    body = v2_json_body(x)
    (tmp / "body.json").write_bytes(body)
    raw = post_request("/v2/models/mlp/infer", body)
    serve = ("serve", f"mlp={model}", "--log-level", "warning", "--port")
    commands = {
        "this": lambda port: mlrt_command(*serve, str(port)),
        "baseline": lambda port: _baseline_command(base, *serve, str(port)),
    }
    rounds: dict[str, dict[str, list[float]]] = {n: {"p50": [], "p99": [], "rps": []} for n in commands}
    with contextlib.ExitStack() as stack:
        ports = {}
        for name, command in commands.items():
            port = free_port()
            stack.enter_context(server(command(port), port))
            ports[name] = port
        for port in ports.values():  # warm-up
            conn = RawHTTP(port)
            for _ in range(300):
                conn.request(raw)
            conn.close()
        names = list(commands)
        for r in range(args.rounds):
            order = names[r % 2 :] + names[: r % 2]
            for name in order:
                # A new connection each round: a keep-alive one left idle while wrk runs
                # would be closed by the server's keep-alive timeout.
                conn = RawHTTP(ports[name])
                for _ in range(20):
                    conn.request(raw)
                times = []
                for _ in range(args.requests):
                    status, took = _timed(conn, raw)
                    if status != 200:
                        raise RuntimeError(f"{name}: status {status}")
                    times.append(took)
                conn.close()
                rounds[name]["p50"].append(float(np.percentile(times, 50)))
                rounds[name]["p99"].append(float(np.percentile(times, 99)))
            for name in order:
                target = Target(name, ports[name], tmp / "body.json")
                res = wrk(target, 64, args.duration)
                rounds[name]["rps"].append(res["ok_rps"])
            print(f"[ab] round {r + 1}/{args.rounds}: "
                  + ", ".join(f"{n} p50 {rounds[n]['p50'][-1]:.1f} µs, {rounds[n]['rps'][-1]:.0f} req/s"
                              for n in names), file=sys.stderr, flush=True)  # fmt: skip
    print(f"this checkout vs {base}: bench MLP, {args.rounds} rounds "
          f"(c=1: {args.requests} requests; c=64: wrk -t1 {args.duration:.0f} s)")  # fmt: skip
    print(f"{'figure':<12}{'this':>12}{'baseline':>12}{'ratio (median, min-max)':>30}")
    summary = {}
    for fig, unit in (("p50", "µs"), ("p99", "µs"), ("rps", "req/s")):
        a, b = rounds["this"][fig], rounds["baseline"][fig]
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        summary[fig] = {"this": statistics.median(a), "baseline": statistics.median(b),
                        "ratio": statistics.median(ratios), "ratio_min": min(ratios),
                        "ratio_max": max(ratios)}  # fmt: skip
        s = summary[fig]
        print(f"{fig + ' ' + unit:<12}{s['this']:>12.1f}{s['baseline']:>12.1f}"
              f"{s['ratio']:>14.3f} ({s['ratio_min']:.3f}-{s['ratio_max']:.3f})")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline": str(base), "rounds": rounds, "summary": summary},
                                              indent=1) + "\n")  # fmt: skip


def _timed(conn: RawHTTP, raw: bytes) -> tuple[int, float]:
    t = time.perf_counter()
    status, _ = conn.request(raw)
    return status, (time.perf_counter() - t) * 1e6


if __name__ == "__main__":
    main()
