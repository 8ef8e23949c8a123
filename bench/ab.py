"""This checkout against another one of mlrt, side by side in one run: did a change keep
the serving figures?

    python -m bench.ab --baseline-ref REF [--rounds 8] [--requests 300] [--duration 4] [--json [PATH]]
    python -m bench.ab --baseline DIR ...

REF is a commit of this repository: its tree is exported to a temporary folder and its
native extensions built there (`setup.py build_ext --inplace`, about a minute). DIR is
another checkout with its native extensions already built in place. Both serve the bench
MLP (20 FP32 -> 2) with the same Python and packages; only the `runtime` package differs.
Per round, in rotated order:
  c=1   one keep-alive connection, pre-encoded V2 JSON requests: p50 and p99 (µs)
  c=64  wrk -t1 -c64 (bench/wrk/post.lua, the same V2 JSON body): requests per second
The table gives each figure's median over rounds and the median of the per-round ratio
this/baseline with its range (for p50, below 1 is faster; for req/s, above 1).

The published run (`python -m bench all --full --only ab`) sets the code before the single
request pipeline (issue 17, commit f2e16d2) against the current code: has anything since
given back what that code had?
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime._child import mlrt_command

from . import _results, models
from ._harness import RawHTTP, free_port, post_request, server, v2_json_body
from .serving import Target, wrk

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1
#: Whether this/baseline above 1 is better, per figure.
FIGURES = (("p50", "c=1 p50 µs", False), ("p99", "c=1 p99 µs", False), ("rps", "c=64 req/s", True))
#: Within noise of the baseline: the goal issue 17 set for its refactor.
GOAL = 0.97


def _baseline_command(root: Path, *args: str) -> list[str]:
    # The other checkout's `runtime` first on sys.path, imported before anything else.
    boot = (
        f"import sys; sys.path.insert(0, {str(root)!r}); import runtime; "
        f"assert runtime.__file__.startswith({str(root)!r}), runtime.__file__; "
        "from runtime.cli import main; sys.exit(main())"
    )
    return [sys.executable, "-c", boot, *args]


def export(ref: str, into: Path) -> str:
    """Commit `ref`'s tree in `into`, its native extensions built in place; its short hash."""
    commit = _results.git("rev-parse", "--short=7", f"{ref}^{{commit}}")
    if not commit:
        sys.exit(f"bench.ab: {ref!r} is not a commit of this repository")
    archive = subprocess.run(["git", "archive", commit], cwd=_results.ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    print(f"[ab] building {commit}'s native extensions ...", file=sys.stderr, flush=True)
    built = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=into,
                           capture_output=True, text=True)  # fmt: skip
    if built.returncode != 0:
        sys.exit(f"bench.ab: building {commit} failed:\n{built.stderr[-2000:]}")
    return commit


def measure(base: Path, rounds_: int, requests: int, duration: float, tmp: Path) -> dict[str, Any]:
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
        for r in range(rounds_):
            order = names[r % 2 :] + names[: r % 2]
            for name in order:
                # A new connection each round: a keep-alive one left idle while wrk runs
                # would be closed by the server's keep-alive timeout.
                conn = RawHTTP(ports[name])
                for _ in range(20):
                    conn.request(raw)
                times = []
                for _ in range(requests):
                    status, took = _timed(conn, raw)
                    if status != 200:
                        raise RuntimeError(f"{name}: status {status}")
                    times.append(took)
                conn.close()
                rounds[name]["p50"].append(round(float(np.percentile(times, 50)), 2))
                rounds[name]["p99"].append(round(float(np.percentile(times, 99)), 2))
            for name in order:
                target = Target(name, ports[name], tmp / "body.json")
                res = wrk(target, 64, duration)
                rounds[name]["rps"].append(round(float(res["ok_rps"]), 1))
            print(f"[ab] round {r + 1}/{rounds_}: "
                  + ", ".join(f"{n} p50 {rounds[n]['p50'][-1]:.1f} µs, {rounds[n]['rps'][-1]:.0f} req/s"
                              for n in names), file=sys.stderr, flush=True)  # fmt: skip
    return {"rounds": rounds}


def markdown(saved: dict[str, Any], name: str = "ab") -> str:
    s, rounds = saved["settings"], saved["results"]["rounds"]
    lines = [
        f"| figure | this checkout | baseline ({s['baseline']}) | this / baseline, per round |",
        "|---|---|---|---|",
    ]
    verdicts = []
    for key, label, higher in FIGURES:
        a, b = rounds["this"][key], rounds["baseline"][key]
        ratios = [x / y for x, y in zip(a, b, strict=True)]
        r = statistics.median(ratios)
        fmt = ",.0f" if key == "rps" else ",.1f"
        lines.append(f"| {label} | {statistics.median(a):{fmt}} | {statistics.median(b):{fmt}} | "
                     f"**{r:.3f}** [{min(ratios):.3f}-{max(ratios):.3f}] |")  # fmt: skip
        # As good as the baseline within the goal: p50 at most 1/GOAL of it, req/s at least GOAL.
        ok = r >= GOAL if higher else r <= 1 / GOAL
        if key != "p99":
            verdicts.append(f"{label} {'PASS' if ok else 'FAIL'}")
    lines += [
        "",
        f"{s['rounds']} rounds, the two in alternating order: c=1 {s['requests']} V2 JSON requests on one "
        f"keep-alive connection (p50 below 1: faster), then wrk -t1 -c64 for {s['duration_s']:g} s (req/s "
        f"above 1: more). Goal: within noise of the baseline (req/s at least {GOAL}x, p50 at most "
        f"{1 / GOAL:.3f}x): {', '.join(verdicts)}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--baseline-ref", metavar="REF", help="a commit of this repository, built for the run")
    which.add_argument("--baseline", type=Path, help="another mlrt checkout, built in place")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--requests", type=int, default=300, help="c=1 requests per system per round")
    p.add_argument("--duration", type=float, default=4.0, help="c=64 seconds per system per round")
    _results.json_option(p)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mlrt-ab-") as d:
        tmp = Path(d)
        if args.baseline_ref:
            base = tmp / "baseline"
            base.mkdir()
            label = export(args.baseline_ref, base)
        else:
            base = args.baseline.resolve()
            if not (base / "runtime" / "__init__.py").exists():
                sys.exit(f"{base} is not an mlrt checkout")
            head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=base, capture_output=True,
                                  text=True)  # fmt: skip
            label = head.stdout.strip() if head.returncode == 0 else base.name
        settings = {"baseline": label, "rounds": args.rounds, "requests": args.requests,
                    "duration_s": args.duration, "concurrency": [1, 64]}  # fmt: skip
        run = _results.Run("ab", SCRIPT_VERSION, settings, argv=argv)
        results = measure(base, args.rounds, args.requests, args.duration, tmp)
        if args.baseline_ref:
            shutil.rmtree(base, ignore_errors=True)
    print(markdown(run.envelope(results)), end="")
    if args.json is not None:
        run.save(results, args.json or None)


def _timed(conn: RawHTTP, raw: bytes) -> tuple[int, float]:
    t = time.perf_counter()
    status, _ = conn.request(raw)
    return status, (time.perf_counter() - t) * 1e6


if __name__ == "__main__":
    main()
