"""What waiting asleep costs on this machine: the round trip to a server that works X µs.

    python -m bench.wakeup [--rounds 5] [--calls 300]

A uvloop server on a Unix socket spins for X µs (the request says how long), then answers
200 bytes. A Python client times the round trip two ways, in interleaved rounds: sleeping in
recv() until the answer comes (what runtime.client's Client does by default), and polling for
it with MSG_DONTWAIT (what Client(busy_poll_us=...) does first, an opt-in). The table's
overhead is the round trip minus X: where it grows with X while sleeping, the thread's CPU
went idle (on a VM: halted) and has to be woken; `CPU` is the calling thread's CPU time per
call. See docs/formats.md.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._harness import idle_policy

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--calls", type=int, default=300)
    p.add_argument("--serve", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve)
        return
    path = str(Path(tempfile.mkdtemp(prefix="mlrt-bench-wakeup-")) / "spin.sock")
    proc = subprocess.Popen([sys.executable, "-m", "bench.wakeup", "--serve", path], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        p50s: dict[tuple[int, str], list[float]] = {}
        cpus: dict[tuple[int, str], list[float]] = {}
        for r in range(args.rounds):
            for work_us in WORK_US:
                for mode in MODES[r % 2 :] + MODES[: r % 2]:  # which goes first alternates
                    cpu = time.thread_time()
                    times = [call(sock, work_us, mode) for _ in range(args.calls)]
                    cpus.setdefault((work_us, mode), []).append((time.thread_time() - cpu) / args.calls * 1e6)
                    p50s.setdefault((work_us, mode), []).append(float(np.median(times)) * 1e6)
        print(f"round trip to a server that works X µs; medians of {args.rounds} rounds x {args.calls} calls")
        print(idle_policy())
        print(f"{'':>6}" + "".join(f"{m:>28}" for m in MODES))
        print(f"{'X µs':>6}" + f"{'p50':>10}{'overhead':>10}{'CPU':>8}" * len(MODES))
        for work_us in WORK_US:
            row = f"{work_us:>6}"
            for mode in MODES:
                p50, cpu = (float(np.median(d[(work_us, mode)])) for d in (p50s, cpus))
                row += f"{p50:>10.1f}{p50 - work_us:>10.1f}{cpu:>8.1f}"
            print(row)
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
