"""What waiting asleep costs on this machine: the round trip to a server that works X µs.

    python -m bench.wakeup [--rounds 15] [--calls 300] [--work-us 0 10 20 40 60 100 150] [--json [PATH]]

A uvloop server on a Unix socket spins for X µs (the request says how long), then answers
200 bytes. A Python client times the round trip two ways, in interleaved rounds: sleeping in
recv() until the answer comes (what runtime.client's Client does by default), and polling for
it with MSG_DONTWAIT (what Client(busy_poll_us=...) does first, an opt-in). The table's
overhead is the round trip minus X: where it grows with X while sleeping, the thread's CPU
went idle (on a VM: halted) and has to be woken; `CPU` is the calling thread's CPU time per
call. Per round, every X in turn, both ways (which goes first alternates from round to round);
the table gives each round's p50 and CPU as the median over rounds with the lowest and highest
round, and polling's p50 over sleeping's in the same round. What waking costs depends on the
machine's idle policy (on a VM, guest halt polling): the run records it and never changes it.
See docs/formats.md.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import _results
from ._harness import idle_of, idle_policy
from ._results import spread

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1
WORK_US = (0, 10, 20, 40, 60, 100, 150)


def serve(path: str) -> None:
    import uvloop

    class Spin(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            end = time.perf_counter() + int(data) * 1e-6
            while time.perf_counter() < end:
                pass
            self.transport.write(b"x" * 200)  # type: ignore[attr-defined]

    async def main() -> None:
        await asyncio.get_running_loop().create_unix_server(Spin, path)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


MODES = ("sleeping", "polling")


def call(sock: socket.socket, work_us: int, mode: str) -> float:
    t0 = time.perf_counter()
    sock.sendall(b"%d" % work_us)
    if mode == "polling":
        while True:
            try:
                sock.recv(65536, socket.MSG_DONTWAIT)
                break
            except BlockingIOError:
                pass
    else:
        sock.recv(65536)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=300, help="calls per X per way per round (300)")
    p.add_argument("--work-us", type=int, nargs="+", default=list(WORK_US), help="the server's work, µs")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    _results.json_option(p)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return
    from ._results import Run

    settings = {"rounds": args.rounds, "calls": args.calls, "work_us": args.work_us, "answer_bytes": 200,
                "idle": idle_policy()}  # fmt: skip
    run = Run("wakeup", SCRIPT_VERSION, settings, argv=argv, measured=())
    p50s: dict[str, dict[str, list[float]]] = {str(w): {m: [] for m in MODES} for w in args.work_us}
    cpus: dict[str, dict[str, list[float]]] = {str(w): {m: [] for m in MODES} for w in args.work_us}
    with tempfile.TemporaryDirectory(prefix="mlrt-bench-wakeup-") as d:
        path = str(Path(d) / "spin.sock")
        cmd = [sys.executable, "-m", "bench.wakeup", "--serve", path]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
                for r in range(args.rounds):
                    for work_us in args.work_us:
                        for mode in MODES[r % 2 :] + MODES[: r % 2]:  # which goes first alternates
                            cpu = time.thread_time()
                            times = [call(sock, work_us, mode) for _ in range(args.calls)]
                            cpus[str(work_us)][mode].append((time.thread_time() - cpu) / args.calls * 1e6)
                            p50s[str(work_us)][mode].append(float(np.median(times)) * 1e6)
        finally:
            proc.kill()
            proc.wait()
    results = {"p50_us": p50s, "client_cpu_us": cpus, "idle_after": idle_policy()}
    print(markdown(run.envelope(results)), end="")
    if args.json is not None:
        run.save(results, args.json or None)


def markdown(saved: dict[str, Any], name: str = "wakeup") -> str:
    """A saved run's table (bench/_results.py's layout) in Markdown."""
    s, r = saved["settings"], saved["results"]
    p50s, cpus = r["p50_us"], r["client_cpu_us"]
    modes = list(next(iter(p50s.values())))
    head = " | ".join(f"{m} p50 µs | overhead | CPU µs" for m in modes)
    lines = [f"| X µs | {head} | {modes[1]} / {modes[0]} p50, per round |"]
    lines.append("|---" * (2 + 3 * len(modes)) + "|")
    for work, by_mode in p50s.items():
        cells = []
        for m in modes:
            cells += [spread(by_mode[m], '.1f'), f"{statistics.median(by_mode[m]) - float(work):.1f}",
                      f"{statistics.median(cpus[work][m]):.1f}"]  # fmt: skip
        ratios = [a / b for a, b in zip(by_mode[modes[1]], by_mode[modes[0]], strict=True)]
        lines.append(f"| {work} | {' | '.join(cells)} | {spread(ratios, '.2f')} |")
    idle = idle_of(saved)
    lines += [
        "",
        f"Round trip over a Unix socket to a uvloop server that spins X µs, then answers {s['answer_bytes']} "
        f"bytes; {s['rounds']} rounds x {s['calls']} calls per X per way, which way goes first alternating. "
        "p50: median over rounds of each round's p50 [lowest-highest round]; overhead: that median minus X; "
        "CPU: the calling thread's CPU time per call, median over rounds; the ratio is per round. "
        f"Idle policy: {idle}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
