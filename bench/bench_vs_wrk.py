"""`mlrt bench` against wrk on the same mlrt server: is the Python generator a faithful one?

    python -m bench.bench_vs_wrk [--rounds 5] [--duration 5] [--concurrency 8] [--target floor]

One `mlrt serve` of the bench MLP (or, with `--target floor`, the do-nothing Starlette
endpoint of bench/floor.py) runs for the whole script. Each round runs wrk (`-t1`,
bench/wrk/post.lua, one V2 JSON row) and `mlrt bench --concurrency C` (V2 JSON, one random
row per request, its own process) for `--duration` seconds each, the order alternating
between rounds. It prints each round and the medians of the per-round ratios
mlrt-bench / wrk of throughput (2xx/s) and p50 as JSON. The done-when goal of issue 8:
throughput ratio within 15% of 1, p50 ratio within 20%.

Both tools are closed-loop with C keep-alive connections; on a 2-core machine each shares
the CPU with the server, so the ratio also shows how much CPU the generator takes from it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from runtime._child import mlrt_command

from . import models
from ._harness import free_port, v2_json_body
from .serving import Target, serve, wrk


def mlrt_bench(port: int, model: str, concurrency: int, duration_s: float) -> dict:
    cmd = mlrt_command("bench", f"http://127.0.0.1:{port}", "--model", model)
    if model == "floor":  # the floor has no model metadata: say what to send
        cmd += ["--input", "input:FP32:-1,20"]
    cmd += ["--concurrency", str(concurrency), "--duration", str(duration_s), "--warmup", "0.5"]
    cmd += ["--json", "--quiet"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 120)
    if out.returncode != 0:
        raise RuntimeError(f"mlrt bench failed: {out.stderr[-2000:]}")
    r = json.loads(out.stdout)["result"]
    return {
        "ok_rps": r["ok_rps"],
        "p50_us": r["latency_ms"]["p50"] * 1e3,
        "p99_us": r["latency_ms"]["p99"] * 1e3,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--target", choices=("mlrt", "floor"), default="mlrt")
    args = p.parse_args()

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="mlrt-bench-vs-wrk-") as tmpdir:
        tmp = Path(tmpdir)
        port = free_port()
        if args.target == "mlrt":
            model = "mlp"
            path = models.mlp(tmp / "mlp.onnx")
            cmd = mlrt_command("serve", f"mlp={path}", "--port", str(port))
            cmd += ["--log-level", "warning"]
        else:
            model = "floor"
            cmd = [sys.executable, "-m", "bench.floor", "--port", str(port)]
        x = np.random.default_rng(0).standard_normal((1, 20)).astype(np.float32)
        body = tmp / "body.json"
        body.write_bytes(v2_json_body(x))
        target = Target(args.target, port, body, ["Content-Type: application/json"])
        rounds = []
        with serve(args.target, cmd, port, tmp):
            wrk(target, args.concurrency, 1.0)  # warm up the server
            for r in range(args.rounds):
                order = ("wrk", "mlrt bench") if r % 2 == 0 else ("mlrt bench", "wrk")
                res = {}
                for name in order:
                    if name == "wrk":
                        w = wrk(target, args.concurrency, args.duration)
                        res[name] = {"ok_rps": w["ok_rps"], "p50_us": w["p50_us"], "p99_us": w["p99_us"]}
                    else:
                        res[name] = mlrt_bench(port, model, args.concurrency, args.duration)
                ratio_rps = res["mlrt bench"]["ok_rps"] / res["wrk"]["ok_rps"]
                ratio_p50 = res["mlrt bench"]["p50_us"] / res["wrk"]["p50_us"]
                rounds.append({**res, "rps_ratio": ratio_rps, "p50_ratio": ratio_p50})
                say(
                    f"round {r + 1}/{args.rounds}: wrk {res['wrk']['ok_rps']:,.0f} req/s p50 "
                    f"{res['wrk']['p50_us']:.0f} us | mlrt bench {res['mlrt bench']['ok_rps']:,.0f} req/s "
                    f"p50 {res['mlrt bench']['p50_us']:.0f} us | ratios {ratio_rps:.3f} {ratio_p50:.3f}"
                )
    summary = {
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "wrk_ok_rps_median": statistics.median(r["wrk"]["ok_rps"] for r in rounds),
        "bench_ok_rps_median": statistics.median(r["mlrt bench"]["ok_rps"] for r in rounds),
        "wrk_p50_us_median": statistics.median(r["wrk"]["p50_us"] for r in rounds),
        "bench_p50_us_median": statistics.median(r["mlrt bench"]["p50_us"] for r in rounds),
        "rps_ratio_median": statistics.median(r["rps_ratio"] for r in rounds),
        "p50_ratio_median": statistics.median(r["p50_ratio"] for r in rounds),
        "per_round": rounds,
    }
    summary["goal_met"] = (
        abs(summary["rps_ratio_median"] - 1) <= 0.15 and abs(summary["p50_ratio_median"] - 1) <= 0.20
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
