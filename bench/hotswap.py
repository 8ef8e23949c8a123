"""Hot swap under load (issue 6's targets).

    python -m bench.hotswap [--concurrency 32] [--duration 20] [--promotions 10] [--swaps 50] [--json [PATH]]

1. Serves `fraud@production` from a fresh filesystem registry holding two versions of
   the bench MLP (different weights), under closed-loop load from `--concurrency`
   threads (V2 JSON, one keep-alive connection each), and moves the alias back
   and forth `--promotions` times over `--duration` seconds. Every answer is checked
   against the version it names (onnxruntime run locally on the same rows).
2. Then swaps `--swaps` more times (admin API load after each alias move) and reports
   the server's resident memory (VmRSS from /proc/PID/status) after each swap; the table
   gives it after the first and the last.

A client whose connection drops or whose answer cannot be read counts an error and
reconnects; any error, any status but 200 or any value that differs from its version's
is a FAIL.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from runtime._child import mlrt_command
from runtime.registry import FilesystemRegistry

from . import _results, models
from ._harness import RawHTTP, free_port, post_request, server, v2_json_body

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1
REGISTRY_POLL_S = 0.2
RTOL, ATOL = 1e-5, 1e-6  # an answer equals its version's output within these
RSS_GROWTH_GOAL = 0.10  # issue 6: VmRSS after the last swap within 10% of that after the first


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB (KiB) -> MiB
    raise RuntimeError("no VmRSS")


def load_phase(args: argparse.Namespace, reg: FilesystemRegistry, sessions: dict[str, Any], port: int,
               proc: subprocess.Popen[bytes]) -> dict[str, Any]:  # fmt: skip
    """Closed-loop clients while the alias moves; every answer checked against its version."""
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    by_version: Counter[str] = Counter()
    mismatches = 0
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int) -> None:
        nonlocal mismatches
        rng = np.random.default_rng(seed)
        conn = None
        while not stop.is_set():
            x = rng.standard_normal((int(rng.integers(1, 5)), 20)).astype(np.float32)
            try:
                conn = conn or RawHTTP(port)
                status, body = conn.request(post_request("/v2/models/fraud/infer", v2_json_body(x)))
                if status != 200:
                    with lock:
                        statuses[str(status)] += 1
                    continue
                doc = json.loads(body)
                version = doc["model_version"]
                out = doc["outputs"][0]
                got = np.array(out["data"], np.float32).reshape(out["shape"])
                want = sessions[version].run(None, {"input": x})[0]
            except Exception as exc:  # a dropped connection or a malformed answer: counted, then go on
                with lock:
                    errors[type(exc).__name__] += 1
                if conn is not None:
                    conn.close()
                    conn = None
                time.sleep(0.01)
                continue
            ok = np.allclose(got, want, rtol=RTOL, atol=ATOL)
            with lock:
                statuses["200"] += 1
                by_version[version] += 1
                mismatches += not ok
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.concurrency)]
    for t in threads:
        t.start()
    interval = args.duration / (args.promotions + 1)
    for i in range(args.promotions):
        time.sleep(interval)
        reg.set_alias("fraud", "production", "2" if i % 2 == 0 else "1")
    time.sleep(interval)
    stop.set()
    for t in threads:
        t.join()
    return {
        "statuses": dict(statuses),
        "errors": dict(errors),
        "answers_by_version": dict(by_version),
        "mismatches": mismatches,
        "server_alive": proc.poll() is None,
    }


def swap_phase(args: argparse.Namespace, reg: FilesystemRegistry, port: int, pid: int) -> list[float]:
    """VmRSS after each of --swaps alias moves, each loaded through the admin API."""
    import httpx

    rss = []
    for i in range(args.swaps):
        reg.set_alias("fraud", "production", "1" if i % 2 == 0 else "2")
        r = httpx.post(f"http://127.0.0.1:{port}/v2/repository/models/fraud/load", timeout=60)
        r.raise_for_status()
        rss.append(rss_mb(pid))
    return rss


def markdown(saved: dict[str, Any], name: str = "hotswap") -> str:
    """A saved run's tables (bench/_results.py's layout) and the goals' verdicts, in Markdown."""
    r, s = saved["results"], saved["settings"]
    load = r["load"]
    statuses, errors, by_version = load["statuses"], load["errors"], load["answers_by_version"]
    ok = statuses.get("200", 0)
    other = {k: v for k, v in statuses.items() if k != "200"}
    answers = ok + sum(other.values())
    versions = sorted(by_version, key=lambda v: (len(v), v))
    head = ["answers", "200", "other statuses", "client errors"]
    head += [f"from version {v}" for v in versions] + ["values not equal to their version's"]
    cells = [f"{answers:,}", f"{ok:,}", _counts(other), _counts(errors)]
    cells += [f"{by_version[v]:,}" for v in versions] + [f"{load['mismatches']:,}"]
    passed = not (other or errors or load["mismatches"]) and len(versions) >= 2 and load["server_alive"]
    rss = r["memory"]["rss_mb"]
    growth = rss[-1] / rss[0] - 1
    lines = [
        "| " + " | ".join(head) + " |",
        "|---" * len(head) + "|",
        "| " + " | ".join(cells) + " |",
        "",
        f"`fraud@production` served from a filesystem registry holding two versions of the bench MLP "
        f"(different weights), under closed-loop load from {s['concurrency']} clients (V2 JSON, 1-4 rows "
        f"a request, one keep-alive connection each) for {s['duration_s']:g} s, while the alias moves "
        f"{s['promotions']} times (the server polls the registry every {s['registry_poll_s']:g} s); each "
        f"answer's values checked against onnxruntime running the version it names (rtol {s['rtol']:g}, "
        f"atol {s['atol']:g}).",
        "",
        f"{'PASS' if passed else 'FAIL'}: every answer 200 and equal to the output of the version it names, "
        "no client error, both versions answered (issue 6)",
        "",
        f"| VmRSS, MiB | after swap 1 | after swap {len(rss)} | growth | lowest-highest over the swaps |",
        "|---|---|---|---|---|",
        f"| server | {rss[0]:.1f} | {rss[-1]:.1f} | {growth:+.1%} | {min(rss):.1f}-{max(rss):.1f} |",
        "",
        f"Then {len(rss)} swaps, each an alias move and a load through the admin API "
        "(`POST /v2/repository/models/fraud/load`); the server's VmRSS (/proc/PID/status) after each.",
        "",
        f"{'PASS' if growth <= s['rss_growth_goal'] else 'FAIL'}: VmRSS after swap {len(rss)} within "
        f"{s['rss_growth_goal']:.0%} of that after the first (issue 6)",
    ]
    return "\n".join(lines) + "\n"


def _counts(c: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {k}" for k, n in sorted(c.items())) or "0"


def main(argv: list[str] | None = None) -> None:
    from ._results import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--promotions", type=int, default=10)
    p.add_argument("--swaps", type=int, default=50)
    _results.json_option(p)
    args = p.parse_args(argv)
    if args.swaps < 1 or args.concurrency < 1:
        p.error("--swaps and --concurrency must be >= 1")
    settings = {
        "concurrency": args.concurrency, "duration_s": args.duration, "promotions": args.promotions,
        "swaps": args.swaps, "registry_poll_s": REGISTRY_POLL_S, "rtol": RTOL, "atol": ATOL,
        "rss_growth_goal": RSS_GROWTH_GOAL,
    }  # fmt: skip
    run = Run("hotswap", SCRIPT_VERSION, settings, argv=argv,
              measured=("runtime", "native", "setup.py", "bench/models.py", "bench/_harness.py"))  # fmt: skip

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="mlrt-bench-hotswap-") as d:
        tmp = Path(d)
        reg = FilesystemRegistry(tmp / "registry")
        sessions = {}
        for seed in (1, 2):
            path = models.mlp(tmp / f"mlp{seed}.onnx", seed=seed)
            sessions[reg.register(path, "fraud")] = ort.InferenceSession(str(path))
        reg.set_alias("fraud", "production", "1")
        port = free_port()
        cmd = mlrt_command("serve", "fraud@production", "--registry", str(reg.root),
                           "--registry-poll", str(REGISTRY_POLL_S), "--port", str(port),
                           "--log-level", "warning")  # fmt: skip
        with server(cmd, port) as proc:
            load = load_phase(args, reg, sessions, port, proc)
            rss = swap_phase(args, reg, port, proc.pid)
    results = {"load": load, "memory": {"rss_mb": rss}}
    print(markdown(run.envelope(results), "hotswap"), end="")
    if args.json is not None:
        run.save(results, args.json or None)


if __name__ == "__main__":
    main()
