"""What a shadow, and the prediction log with feedback, cost the primary: the same
endpoint served six ways, side by side.

    python -m bench.shadow [--rounds 6] [--duration 4] [--systems off,recorded] [--json PATH]

Six servers, each with the bench MLP (20 FP32 -> 2) as the endpoint `mlp`'s one variant:
  off      no shadow
  shadow   a 100% shadow: a second MLP (other weights, the same cost) gets a copy of
           every request, compared with the primary's answer (agreement, abs diffs)
  sleepy   a 100% shadow that hangs: one second per call (bench.models:sleepy_shadow)
  recorded no shadow; every answer logged (Parquet, runtime/traffic/predlog.py) and
           remembered for labels (feedback)
  logged   the log alone
  labelled the feedback memory alone
Per round, in rotated order, wrk -t1 -c64 drives each for `duration` seconds with the
same V2 JSON request (bench/wrk/post.lua). The table gives each system's median req/s
and p99 over rounds and the median of the per-round ratios to `off` (with their range),
then what each shadow was sent, dropped and how it compared, and what the log wrote and
dropped (GET /v2/endpoints/mlp).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

from runtime._child import mlrt_command

from . import models
from ._harness import free_port, idle_policy, server, v2_json_body
from .serving import Target, check_answer, wrk

SYSTEMS = ("off", "shadow", "sleepy", "recorded", "logged", "labelled")


def _config(tmp: Path, system: str, primary: Path, candidate: Path) -> Path:
    lines = ["[[models]]", 'name = "mlp-a"', f'source = "{primary}"']
    if system == "shadow":
        lines += ["[[models]]", 'name = "mlp-b"', f'source = "{candidate}"']
    elif system == "sleepy":
        # inline_max_us = 0: the stub answers the server's zero-row calibration at once;
        # its real cost must not be trusted to the event loop.
        lines += ["[[models]]", 'name = "mlp-b"', 'source = "bench.models:sleepy_shadow"']
        lines.append("inline_max_us = 0")
    lines += ["[[endpoints]]", 'name = "mlp"', 'variants = [{ model = "mlp-a", weight = 1 }]']
    if system in ("shadow", "sleepy"):
        lines.append('shadow = [{ model = "mlp-b", sample = 1.0 }]')
    if system in ("recorded", "logged"):
        lines.append(f'log = {{ dir = "{tmp / system}" }}')
    if system in ("recorded", "labelled"):
        lines.append("feedback = { window = 1000 }")
    path = tmp / f"{system}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=float, default=4.0, help="wrk seconds per system per round")
    p.add_argument("--json", metavar="PATH", help="also write the raw per-round figures here")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="which of them, comma-separated (off always)")
    args = p.parse_args()
    systems = ("off", *[s for s in SYSTEMS if s != "off" and s in args.systems.split(",")])
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown system(s) {sorted(unknown)}; known: {', '.join(SYSTEMS)}")
    print(f"[shadow] {idle_policy()}", file=sys.stderr)

    tmp = Path(tempfile.mkdtemp(prefix="mlrt-shadow-"))
    primary = models.mlp(tmp / "mlp-a.onnx")
    candidate = models.mlp(tmp / "mlp-b.onnx", seed=1)
    x = np.random.default_rng(0).standard_normal((1, 20)).astype(np.float32)
    (tmp / "body.json").write_bytes(v2_json_body(x))
    rounds: dict[str, dict[str, list[float]]] = {s: {"rps": [], "p99": [], "non_2xx": []} for s in systems}
    shown: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        targets = {}
        for system in systems:
            port = free_port()
            cfg = _config(tmp, system, primary, candidate)
            cmd = mlrt_command("serve", "--config", str(cfg), "--port", str(port), "--log-level", "warning")
            stack.enter_context(server(cmd, port))
            targets[system] = Target(system, port, tmp / "body.json", path="/v2/models/mlp/infer")
            check_answer(targets[system])
        for system in systems:  # warm-up
            wrk(targets[system], 64, 1)
        for r in range(args.rounds):
            order = systems[r % len(systems) :] + systems[: r % len(systems)]
            for system in order:
                res = wrk(targets[system], 64, args.duration)
                rounds[system]["rps"].append(res["ok_rps"])
                rounds[system]["p99"].append(float(res["p99_us"]))
                rounds[system]["non_2xx"].append(res["non_2xx"] + res["socket_errors"])
            print(f"[shadow] round {r + 1}/{args.rounds}: "
                  + ", ".join(f"{s} {rounds[s]['rps'][-1]:.0f} req/s p99 {rounds[s]['p99'][-1]:.0f} µs"
                              for s in systems), file=sys.stderr, flush=True)  # fmt: skip
        for system in systems:
            with urllib.request.urlopen(f"http://127.0.0.1:{targets[system].port}/v2/endpoints/mlp") as resp:
                shown[system] = json.loads(resp.read())
            if shown[system].get("log"):
                shown[system]["log"]["dir"] = system  # in the run's temporary folder

    print(f"shadow cost: bench MLP behind endpoint `mlp`, {args.rounds} rounds, wrk -t1 -c64 "
          f"{args.duration:.0f} s per system per round ({idle_policy()})")  # fmt: skip
    ratio = "ratio (min-max)"
    print(f"{'system':<10}{'req/s':>10}{ratio:>24}{'p99 µs':>10}{ratio:>24}{'errors':>8}")
    summary: dict[str, dict[str, float]] = {}
    for system in systems:
        fig = rounds[system]
        rps_r = [a / b for a, b in zip(fig["rps"], rounds["off"]["rps"], strict=True)]
        p99_r = [a / b for a, b in zip(fig["p99"], rounds["off"]["p99"], strict=True)]
        summary[system] = {
            "rps": statistics.median(fig["rps"]), "rps_ratio": statistics.median(rps_r),
            "p99_us": statistics.median(fig["p99"]), "p99_ratio": statistics.median(p99_r),
            "errors": sum(fig["non_2xx"]),
        }  # fmt: skip
        s = summary[system]
        print(f"{system:<10}{s['rps']:>10.0f}{s['rps_ratio']:>10.3f} ({min(rps_r):.3f}-{max(rps_r):.3f})"
              f"{s['p99_us']:>10.0f}{s['p99_ratio']:>10.3f} ({min(p99_r):.3f}-{max(p99_r):.3f})"
              f"{s['errors']:>8.0f}")  # fmt: skip
    print()
    print(f"{'shadow of':<10}{'requests':>12}{'sent':>12}{'dropped':>12}{'failed':>8}{'agreement':>11}")
    for system in [s for s in ("shadow", "sleepy") if s in systems]:
        doc = shown[system]
        sh = doc["shadows"][0]
        total = doc["variants"][0]["requests"]
        agreement = "-" if sh["agreement"] is None else f"{100 * sh['agreement']:.1f}%"
        print(f"{system:<10}{total:>12,}{sh['sent']:>12,}{sh['dropped']:>12,}{sh['failed']:>8,}{agreement:>11}")
    for system in [s for s in ("recorded", "logged") if s in systems]:
        log = shown[system]["log"]
        print(f"prediction log ({system}): {shown[system]['variants'][0]['requests']:,} requests, "
              f"{log['written']:,} rows written, {log['dropped']:,} dropped, {log['lost']:,} lost, "
              f"{log['pending']:,} pending at the end")  # fmt: skip
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rounds": rounds, "summary": summary, "endpoints": shown}, indent=1) + "\n"
        )


if __name__ == "__main__":
    main()
