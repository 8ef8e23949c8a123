"""Memory over a million requests: does the server's resident memory stay flat?

    python -m bench.soak [--requests 1000000] [--connections 64] [--chunk-s 10] [--json PATH]

One mlrt server (the bench MLP, drift monitoring on, as shipped otherwise) is driven by wrk
at `--connections` in chunks of `--chunk-s` seconds until `--requests` answers; after each
chunk the server's RSS (VmRSS of /proc/PID/status) is read. The table gives RSS after the
first chunk (warm: allocators and caches filled), after each chunk, and the growth per
100,000 requests from the first chunk to the last (least squares), which is what a leak
shows as. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from ._harness import server
from .serving import monitored_mlp, wrk


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=1_000_000)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--chunk-s", type=float, default=10.0)
    p.add_argument("--json", metavar="PATH", help="write the raw figures here")
    args = p.parse_args(argv)
    if shutil.which("wrk") is None:
        print("bench.soak needs wrk (apt install wrk)", file=sys.stderr)
        return 2
    cmd, target = monitored_mlp("mlrt-soak-")
    port = target.port
    chunks = []
    with server(cmd, port) as proc:
        done = 0
        started = time.monotonic()
        while done < args.requests:
            res = wrk(target, args.connections, args.chunk_s)
            if res["non_2xx"] or res["socket_errors"]:
                raise RuntimeError(f"errors under load: {res}")
            done += res["requests"]
            chunks.append({"requests": done, "rss_mb": rss_mb(proc.pid), "rps": res["ok_rps"]})
            print(f"# {done:,} requests, RSS {chunks[-1]['rss_mb']:.1f} MB", file=sys.stderr)
        elapsed = time.monotonic() - started
    n = np.array([c["requests"] for c in chunks], dtype=float)
    rss = np.array([c["rss_mb"] for c in chunks])
    slope = float(np.polyfit(n, rss, 1)[0] * 100_000) if len(chunks) > 2 else float("nan")
    head = f"mlrt, bench MLP with drift monitoring, wrk c={args.connections}"
    print(f"{head}, {done:,} requests in {elapsed:.0f} s")
    print(f"{'requests':>12}{'RSS MB':>10}{'req/s':>10}")
    for c in chunks:
        print(f"{c['requests']:>12,}{c['rss_mb']:>10.1f}{c['rps']:>10.0f}")
    print(
        f"RSS after the first chunk {rss[0]:.1f} MB, at the end {rss[-1]:.1f} MB, max {rss.max():.1f} MB; "
        f"growth {slope:+.2f} MB per 100,000 requests (least squares over the chunks)"
    )
    if args.json:
        command = "python -m bench.soak " + " ".join(sys.argv[1:] if argv is None else argv)
        doc = {"command": command, "connections": args.connections, "chunks": chunks,
               "mb_per_100k": slope, "seconds": elapsed}  # fmt: skip
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
