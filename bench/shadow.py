"""What a shadow, and the prediction log with feedback, cost the primary: the same
endpoint served six ways, side by side.

    python -m bench.shadow [--rounds 8] [--duration 4] [--systems off,recorded] [--json [PATH]]

Six servers, each with the bench MLP (20 FP32 -> 2) as the endpoint `mlp`'s one variant:
  off      no shadow
  shadow   a 100% shadow: a second MLP (other weights, the same cost) gets a copy of
           every request, compared with the primary's answer (agreement, abs diffs)
  sleepy   a 100% shadow that hangs: one second per call (bench.models:sleepy_shadow)
  recorded no shadow; every answer logged (Parquet, runtime/traffic/predlog.py) and
           remembered for labels (feedback)
  logged   the log alone
  labelled the feedback memory alone
After a 1 s warm-up each, per round, in rotated order, wrk -t1 -c64 drives each for
`duration` seconds with the same V2 JSON request (bench/wrk/post.lua). The table gives each
system's req/s and p99, median [min-max] over rounds, and the median [min-max] of the
per-round ratios to `off`; then what each shadow was sent, dropped and how it compared, and
what the log wrote and dropped (GET /v2/endpoints/mlp).

The published figure is all six systems in one run of 8 rounds (about 4 minutes): the
shadows' ratios sit near 1 and need the rounds; `--systems` picks some for a shorter run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from runtime._child import mlrt_command

from . import _results, models
from ._harness import free_port, idle_policy, server, v2_json_body
from ._results import spread
from .serving import Target, check_answer, wrk

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1
SYSTEMS = ("off", "shadow", "sleepy", "recorded", "logged", "labelled")
LABELS = {
    "off": "off: no shadow, nothing recorded",
    "shadow": "shadow: 100%, a second MLP",
    "sleepy": "sleepy: 100% shadow sleeping 1 s per call",
    "recorded": "recorded: prediction log + feedback",
    "logged": "logged: the prediction log alone",
    "labelled": "labelled: the feedback memory alone",
}
CONNECTIONS = 64
WARMUP_S = 1.0


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


def measure(args: argparse.Namespace, systems: tuple[str, ...]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="mlrt-shadow-"))
    primary = models.mlp(tmp / "mlp-a.onnx")
    candidate = models.mlp(tmp / "mlp-b.onnx", seed=1)
    x = np.random.default_rng(0).standard_normal((1, 20)).astype(np.float32)
    (tmp / "body.json").write_bytes(v2_json_body(x))
    keys = ("rps", "p50_us", "p99_us", "non_2xx", "socket_errors", "timeouts")
    rounds: dict[str, dict[str, list[float]]] = {s: {k: [] for k in keys} for s in systems}
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
            wrk(targets[system], CONNECTIONS, WARMUP_S)
        for r in range(args.rounds):
            order = systems[r % len(systems) :] + systems[: r % len(systems)]
            for system in order:
                res = wrk(targets[system], CONNECTIONS, args.duration)
                fig = rounds[system]
                fig["rps"].append(float(res["ok_rps"]))
                fig["p50_us"].append(float(res["p50_us"]))
                fig["p99_us"].append(float(res["p99_us"]))
                for k in ("non_2xx", "socket_errors", "timeouts"):
                    fig[k].append(int(res[k]))
            print(f"[bench.shadow] round {r + 1}/{args.rounds}: "
                  + ", ".join(f"{s} {rounds[s]['rps'][-1]:.0f} req/s p99 {rounds[s]['p99_us'][-1]:.0f} µs"
                              for s in systems), file=sys.stderr, flush=True)  # fmt: skip
        for system in systems:
            with urllib.request.urlopen(f"http://127.0.0.1:{targets[system].port}/v2/endpoints/mlp") as resp:
                shown[system] = json.loads(resp.read())
            if shown[system].get("log"):
                shown[system]["log"]["dir"] = system  # in the run's temporary folder
    return {"per_round": rounds, "endpoints": shown}


def markdown(saved: dict[str, Any], name: str = "shadow") -> str:
    """A saved run's tables (bench/_results.py's layout) in Markdown."""
    r, s = saved["results"], saved["settings"]
    per_round, shown = r["per_round"], r["endpoints"]
    off = per_round["off"]
    lines = [
        "| system | req/s | / off, per round | p99 µs | / off, per round | non-2xx, socket errors |",
        "|---|---|---|---|---|---|",
    ]
    for system, fig in per_round.items():
        if system == "off":
            rps_ratio = p99_ratio = "1"
        else:
            rps_ratio = spread([a / b for a, b in zip(fig["rps"], off["rps"], strict=True)], ".3f")
            p99_ratio = spread([a / b for a, b in zip(fig["p99_us"], off["p99_us"], strict=True)], ".3f")
        errors = sum(fig["non_2xx"]), sum(fig["socket_errors"]) + sum(fig["timeouts"])
        lines.append(
            f"| {LABELS.get(system, system)} | {spread(fig['rps'], ',.0f')} | {rps_ratio} "
            f"| {spread(fig['p99_us'], ',.0f')} | {p99_ratio} | {errors[0]}, {errors[1]} |"
        )
    lines += [
        "",
        f"wrk -t1 -c{s['connections']}, {s['rounds']} rounds x {s['duration_s']:g} s per system after a "
        f"{s['warmup_s']:g} s warm-up each, order rotated; req/s (2xx) and p99: median [min-max] over "
        "rounds; ratios: median [min-max] of each round's figure over `off`'s in the same round; "
        f"{s['idle']}.",
    ]
    shadows = [x for x in ("shadow", "sleepy") if x in shown]
    if shadows:
        lines += [
            "",
            "| shadow of | requests | copies sent | dropped | failed | agreement |",
            "|---|---|---|---|---|---|",
        ]
        for system in shadows:
            doc = shown[system]
            sh = doc["shadows"][0]
            agreement = "-" if sh["agreement"] is None else f"{100 * sh['agreement']:.1f}%"
            lines.append(
                f"| {system} | {doc['variants'][0]['requests']:,} | {sh['sent']:,} | {sh['dropped']:,} "
                f"| {sh['failed']:,} | {agreement} |"
            )
    logs = [x for x in ("recorded", "logged") if x in shown]
    if logs:
        lines += [
            "",
            "| prediction log of | requests | rows written | dropped | lost | pending at the end |",
            "|---|---|---|---|---|---|",
        ]
        for system in logs:
            log = shown[system]["log"]
            lines.append(
                f"| {system} | {shown[system]['variants'][0]['requests']:,} | {log['written']:,} "
                f"| {log['dropped']:,} | {log['lost']:,} | {log['pending']:,} |"
            )
    if shadows or logs:
        lines += [
            "",
            "Counts over the whole run, warm-up included, from each server's GET /v2/endpoints/mlp "
            "at the end.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from ._results import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--duration", type=float, default=4.0, help="wrk seconds per system per round")
    p.add_argument("--systems", default=",".join(SYSTEMS), help="which of them, comma-separated (off always)")
    _results.json_option(p)
    args = p.parse_args(argv)
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        p.error(f"unknown system(s) {sorted(unknown)}; known: {', '.join(SYSTEMS)}")
    systems = ("off", *[s for s in SYSTEMS if s != "off" and s in args.systems.split(",")])
    settings = {
        "rounds": args.rounds, "duration_s": args.duration, "warmup_s": WARMUP_S,
        "connections": CONNECTIONS, "systems": list(systems), "idle": idle_policy(),
        "model": "bench MLP, 20 FP32 -> 64 -> 32 -> 2, behind endpoint `mlp`, one row per V2 JSON request",
        "load_generator": "wrk -t1 + bench/wrk/post.lua (closed loop, keep-alive)",
    }  # fmt: skip
    run = Run("shadow", SCRIPT_VERSION, settings, argv=argv, measured=("runtime", "native", "setup.py",
              "bench/models.py", "bench/serving.py", "bench/wrk"))  # fmt: skip
    print(f"[bench.shadow] {idle_policy()}", file=sys.stderr)
    results = measure(args, systems)
    print(markdown(run.envelope(results)), end="")
    if args.json is not None:
        run.save(results, args.json or None)


if __name__ == "__main__":
    main()
