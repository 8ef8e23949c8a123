"""What waiting asleep costs on this machine: the round trip to a server that works X µs.

    python -m bench.wakeup [--rounds 5] [--calls 300]

A uvloop server on a Unix socket spins for X µs (the request says how long), then answers
200 bytes. A Python client times the round trip two ways, in interleaved rounds: sleeping in
recv() until the answer comes, and polling for it with MSG_DONTWAIT (what runtime.client's
Client does first, for up to 200 µs). The table's overhead is the round trip minus X: where
it grows with X while sleeping, the thread's CPU went idle (on a VM: halted) and has to be
woken. This is the case for runtime.client's polling default (docs/formats.md).
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


def call(sock: socket.socket, work_us: int, poll: bool) -> float:
    t0 = time.perf_counter()
    sock.sendall(b"%d" % work_us)
    if poll:
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
        p50s: dict[tuple[int, bool], list[float]] = {}
        for r in range(args.rounds):
            for work_us in WORK_US:
                for poll in (r % 2 == 0, r % 2 == 1):  # which goes first alternates
                    times = [call(sock, work_us, poll) for _ in range(args.calls)]
                    p50s.setdefault((work_us, poll), []).append(float(np.median(times)) * 1e6)
        print(f"round trip to a server that works X µs; medians of {args.rounds} rounds x {args.calls} calls")
        print(f"{'X µs':>6}{'sleeping p50':>14}{'overhead':>10}{'polling p50':>13}{'overhead':>10}")
        for work_us in WORK_US:
            slept, polled = (float(np.median(p50s[(work_us, poll)])) for poll in (False, True))
            row = f"{work_us:>6}{slept:>14.1f}{slept - work_us:>10.1f}"
            print(f"{row}{polled:>13.1f}{polled - work_us:>10.1f}")
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
