"""Hot swap under load (issue 6's targets).

    python -m bench.hotswap [--concurrency 32] [--duration 20] [--promotions 10] [--swaps 50]

1. Serves `fraud@production` from a fresh filesystem registry holding two versions of
   the bench MLP (different weights), under closed-loop load from `--concurrency`
   threads (V2 JSON, one keep-alive connection each), and moves the alias back
   and forth `--promotions` times over `--duration` seconds. Every answer is checked
   against the version it names (onnxruntime run locally on the same rows).
2. Then swaps `--swaps` more times (admin API load after each alias move) and reports
   the server's resident memory (VmRSS from /proc/PID/status) after the first and the
   last swap.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from runtime._child import mlrt_command
from runtime.registry import FilesystemRegistry

from . import models
from ._harness import RawHTTP, free_port, post_request, server, v2_json_body


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--promotions", type=int, default=10)
    p.add_argument("--swaps", type=int, default=50)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import onnxruntime as ort

    tmp = Path(tempfile.mkdtemp(prefix="mlrt-bench-hotswap-"))
    reg = FilesystemRegistry(tmp / "registry")
    sessions = {}
    for seed in (1, 2):
        path = models.mlp(tmp / f"mlp{seed}.onnx", seed=seed)
        sessions[reg.register(path, "fraud")] = ort.InferenceSession(str(path))
    reg.set_alias("fraud", "production", "1")

    port = free_port()
    cmd = mlrt_command("serve", "fraud@production", "--registry", str(reg.root),
                       "--registry-poll", "0.2", "--port", str(port), "--log-level", "warning")  # fmt: skip
    statuses: Counter[str] = Counter()
    mismatches = 0
    by_version: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int) -> None:
        nonlocal mismatches
        rng = np.random.default_rng(seed)
        conn = RawHTTP(port)
        try:
            while not stop.is_set():
                x = rng.standard_normal((int(rng.integers(1, 5)), 20)).astype(np.float32)
                status, body = conn.request(post_request("/v2/models/fraud/infer", v2_json_body(x)))
                if status != 200:
                    with lock:
                        statuses[str(status)] += 1
                    continue
                doc = json.loads(body)
                version = doc["model_version"]
                got = np.array(doc["outputs"][0]["data"], np.float32).reshape(doc["outputs"][0]["shape"])
                ok = np.allclose(got, sessions[version].run(None, {"input": x})[0], rtol=1e-5, atol=1e-6)
                with lock:
                    statuses["200"] += 1
                    by_version[version] += 1
                    mismatches += not ok
        finally:
            conn.close()

    with server(cmd, port) as proc:
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

        import httpx

        rss = []
        for i in range(args.swaps):
            reg.set_alias("fraud", "production", "1" if i % 2 == 0 else "2")
            r = httpx.post(f"http://127.0.0.1:{port}/v2/repository/models/fraud/load", timeout=60)
            r.raise_for_status()
            rss.append(rss_mb(proc.pid))
    result = {
        "load": {"concurrency": args.concurrency, "duration_s": args.duration, "promotions": args.promotions,
                 "statuses": dict(statuses), "answers_by_version": dict(by_version),
                 "mismatches": mismatches},
        "memory": {"swaps": args.swaps, "rss_mb_after_first": rss[0], "rss_mb_after_last": rss[-1],
                   "growth": rss[-1] / rss[0] - 1},
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    non200 = sum(v for k, v in statuses.items() if k != "200")
    print(f"load: {args.concurrency} clients, {args.duration:g} s, {args.promotions} promotions")
    print(f"  answers: {dict(statuses)}; by version: {dict(by_version)}; mismatched values: {mismatches}")
    print(f"  {'PASS' if non200 == 0 and mismatches == 0 else 'FAIL'}  zero non-200 and every value matches")
    g = result["memory"]["growth"]
    print(f"memory: VmRSS after swap 1 {rss[0]:.1f} MB, after swap {args.swaps} {rss[-1]:.1f} MB ({g:+.1%})")
    print(f"  {'PASS' if g <= 0.10 else 'FAIL'}  within 10%")


if __name__ == "__main__":
    main()
