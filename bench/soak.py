"""Memory over a million requests: does the server's resident memory stay flat?

    python -m bench.soak [--requests 1000000] [--connections 64] [--chunk-s 10] [--json [PATH]]

One mlrt server (the bench MLP, drift monitoring on, as shipped otherwise) is driven by wrk
at `--connections` in chunks of `--chunk-s` seconds until `--requests` answers; after each
chunk the server's RSS (VmRSS of /proc/PID/status) is read (and once before the first, idle).
The table gives RSS after the first chunk (warm: allocators and caches filled), after each
chunk, and the growth per 100,000 requests from the first chunk to the last (least squares),
which is what a leak shows as. Any non-2xx answer or socket error stops the run. Linux only
(/proc).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import _results
from ._harness import server
from .serving import monitored_mlp, wrk

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def growth_per_100k(chunks: list[dict[str, Any]]) -> float | None:
    """MB per 100,000 requests, least squares over the chunks (None with fewer than 3)."""
    if len(chunks) < 3:
        return None
    n = np.array([c["requests"] for c in chunks], dtype=float)
    rss = np.array([c["rss_mb"] for c in chunks], dtype=float)
    return float(np.polyfit(n, rss, 1)[0] * 100_000)


#: The goal: RSS flat over the run, read as least-squares growth under this.
LEAK_MB_PER_100K = 0.5


def markdown(saved: dict[str, Any], name: str = "soak") -> str:
    """A saved run's table (bench/_results.py's layout) in Markdown."""
    r, s = saved["results"], saved["settings"]
    chunks = r["chunks"]
    rss = [c["rss_mb"] for c in chunks]
    lines = ["| requests | RSS MB | req/s | p99 ms |", "|---|---|---|---|"]
    lines.append(f"| 0 (started, idle) | {r['rss_idle_mb']:.1f} | | |")
    lines += [
        f"| {c['requests']:,} | {c['rss_mb']:.1f} | {c['rps']:,.0f} | {c['p99_us'] / 1e3:.2f} |"
        for c in chunks
    ]
    slope = growth_per_100k(chunks)
    growth = "n/a (fewer than 3 chunks)" if slope is None else f"{slope:+.2f} MB per 100,000 requests"
    lines += [
        "",
        f"The bench MLP with drift monitoring, wrk -t1 -c{s['connections']} in chunks of {s['chunk_s']:g} s "
        f"until {s['requests']:,} answers: {chunks[-1]['requests']:,} in {r['seconds']:.0f} s, every one a "
        f"2xx, no socket errors, {sum(c['timeouts'] for c in chunks)} wrk timeouts; RSS (VmRSS) after "
        "each chunk, requests counted from the start. "
        f"RSS after the first chunk {rss[0]:.1f} MB, at the end {rss[-1]:.1f} MB, max {max(rss):.1f} MB "
        f"({max(rss) - rss[0]:+.1f} MB over the first chunk's); growth {growth} (least squares over "
        "the chunks, the first to the last).",
    ]
    if slope is not None:
        # 0.5 MB per 100,000 requests is 5 bytes a request: a leak of one small object per
        # request or more shows; allocator noise (tenths of a MB over the run) does not.
        verdict = "PASS" if slope < LEAK_MB_PER_100K else "FAIL"
        lines.append(f"\n{verdict}: growth under {LEAK_MB_PER_100K} MB per 100,000 requests (goal).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from ._results import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1_000_000)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--chunk-s", type=float, default=10.0)
    _results.json_option(p)
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench.soak needs wrk (apt install wrk)", file=sys.stderr)
        return 2
    settings = {
        "requests": args.requests, "connections": args.connections, "chunk_s": args.chunk_s,
        "model": "bench MLP, 20 FP32 -> 64 -> 32 -> 2, drift monitoring on, one row per V2 binary request",
        "load_generator": "wrk -t1 + bench/wrk/post.lua (closed loop, keep-alive)",
    }  # fmt: skip
    run = Run("soak", SCRIPT_VERSION, settings, argv=argv, measured=("runtime", "native", "setup.py",
              "bench/models.py", "bench/serving.py", "bench/wrk"))  # fmt: skip
    cmd, target = monitored_mlp("mlrt-soak-")
    chunks = []
    with server(cmd, target.port) as proc:
        idle = rss_mb(proc.pid)
        done = 0
        started = time.monotonic()
        while done < args.requests:
            res = wrk(target, args.connections, args.chunk_s)
            if res["non_2xx"] or res["socket_errors"]:
                raise RuntimeError(f"errors under load: {res}")
            done += res["requests"]
            chunks.append({"requests": done, "rss_mb": rss_mb(proc.pid), "rps": float(res["ok_rps"]),
                           "p99_us": float(res["p99_us"]), "timeouts": res["timeouts"]})  # fmt: skip
            print(f"[bench.soak] {done:,} requests, RSS {chunks[-1]['rss_mb']:.1f} MB", file=sys.stderr)
        elapsed = time.monotonic() - started
    results = {"rss_idle_mb": idle, "chunks": chunks, "seconds": elapsed}
    print(markdown(run.envelope(results)), end="")
    if args.json is not None:
        run.save(results, args.json or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
