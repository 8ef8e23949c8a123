"""Where a sidecar call's time goes: one call at a time, client and server clocks joined.

    python -m bench.timeline [--calls 3000] [--busy-poll-us 0]

One mlrt server (the bench MLP, drift monitoring on) over a Unix socket, and
runtime.client.Client with msgpack bodies, as `python -m bench.sidecar`'s first row. The
server runs with its HTTP protocol wrapped to note when each request's bytes arrive and
when its answer's write starts and ends; the client notes when its send starts and ends
and when it wakes up. Both read time.perf_counter (CLOCK_MONOTONIC: one clock for every
process on Linux), so each call's steps line up across the two processes:

  client build            call start -> send start: the request built, in Python
  client send             the send system call (it wakes the server's thread)
  server wake             send end -> the server's read callback starts
  server before write     read callback -> answer write starts (parse, decode, model, encode)
  server write            the write system call (it wakes the client's thread)
  client wake and read    write end -> the read that brings the answer returns: the client's
                          thread woken (a sleeping client waits inside that read, so the
                          wake-up and the copy cannot be told apart) and the bytes copied
  client parse            read end -> call end: the answer taken apart, in Python
  total                   call start -> call end

Figures are medians over the calls (the total's too), in µs. The server's wrapping adds
a few clock reads; the client's, a Python call around its send, wait and read.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import models
from ._harness import free_port, idle_policy, server

STEPS = (
    "client build",
    "client send",
    "server wake",
    "server before write",
    "server write",
    "client wake and read",
    "client parse",
    "total",
)


def serve(out: str, argv: list[str]) -> None:
    """mlrt serve ARGV, noting per request: read callback, write start, write end."""
    from runtime.server import uvicorn_http as protocol

    clock = time.perf_counter
    marks = np.zeros((200_000, 3))
    count = [0]
    write_marks = [0.0, 0.0]

    class Noting:
        def __init__(self, transport: object) -> None:
            self._transport = transport

        def write(self, data: bytes) -> None:
            write_marks[0] = clock()
            self._transport.write(data)  # type: ignore[attr-defined]
            write_marks[1] = clock()

        def __getattr__(self, name: str) -> object:
            return getattr(self._transport, name)

    made, received = protocol.MlrtHttpProtocol.connection_made, protocol.MlrtHttpProtocol.data_received

    def connection_made(self: protocol.MlrtHttpProtocol, transport: object) -> None:
        made(self, transport)  # type: ignore[arg-type]
        self.raw_transport = Noting(transport)  # type: ignore[assignment]

    def data_received(self: protocol.MlrtHttpProtocol, data: bytes) -> None:
        start = clock()
        received(self, data)
        if count[0] < len(marks):
            marks[count[0]] = (start, *write_marks)
            count[0] += 1

    protocol.MlrtHttpProtocol.connection_made = connection_made  # type: ignore[method-assign]
    protocol.MlrtHttpProtocol.data_received = data_received  # type: ignore[method-assign]
    from runtime.cli import main

    sys.argv = ["mlrt", *argv]
    try:
        code = main()  # until SIGTERM
    finally:
        np.save(out, marks[: count[0]])
    sys.exit(code)


def timeline(sock_path: str, calls: int, busy_poll_us: float) -> np.ndarray:
    """Per call: start, send start, send end, answer read start and end, end."""
    from runtime.client import Client

    clock = time.perf_counter
    x = np.random.default_rng(0).standard_normal((1, 20)).astype(np.float32)
    feeds = {"input": x}
    marks = np.zeros((calls, 6))
    row = [0]
    with Client(f"unix://{sock_path}", format="msgpack", busy_poll_us=busy_poll_us) as c:
        for _ in range(500):
            c.infer("mlp", feeds)
        conn = c._fast._local.conn  # type: ignore[union-attr]
        real = conn.sock

        class Noting:
            family = real.family

            def sendall(self, data: bytes) -> None:
                marks[row[0], 1] = clock()
                real.sendall(data)
                marks[row[0], 2] = clock()

            def recv(self, *args: int) -> bytes:
                started = clock()
                chunk = real.recv(*args)  # BlockingIOError while a polling client finds nothing
                marks[row[0], 3:5] = (started, clock())  # the read that brought the answer
                return chunk

            def fileno(self) -> int:
                return real.fileno()

            def close(self) -> None:
                real.close()

        conn.sock = Noting()
        for i in range(calls):
            row[0] = i
            marks[i, 0] = clock()
            c.infer("mlp", feeds)
            marks[i, 5] = clock()
    return marks


def steps(client: np.ndarray, srv: np.ndarray) -> dict[str, float]:
    start, send0, send1, _read0, read1, end = client.T
    arrived, write0, write1 = srv.T
    spans = {
        "client build": send0 - start,
        "client send": send1 - send0,
        "server wake": arrived - send1,
        "server before write": write0 - arrived,
        "server write": write1 - write0,
        "client wake and read": read1 - write1,
        "client parse": end - read1,
        "total": end - start,
    }
    return {name: float(np.median(v)) * 1e6 for name, v in spans.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--busy-poll-us", type=float, default=0, help="the client's busy_poll_us (default 0)")
    p.add_argument("--serve", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1:])
        return

    import onnxruntime as ort

    from runtime.monitor import Profile

    tmp = Path(tempfile.mkdtemp(prefix="mlrt-bench-timeline-"))
    model_path = models.mlp(tmp / "mlp.onnx")
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    ref = np.random.default_rng(1).standard_normal((20_000, 20)).astype(np.float32)
    profile = tmp / "profile.json"
    Profile.fit(ref, outputs=sess.run(None, {"input": ref})[0]).save(profile)
    out, sock, port = tmp / "server.npy", tmp / "mlrt.sock", free_port()
    cmd = [sys.executable, "-m", "bench.timeline", "--serve", str(out), "serve", f"mlp={model_path}",
           "--profile", str(profile), "--port", str(port), "--uds", str(sock),
           "--log-level", "warning"]  # fmt: skip
    with server(cmd, port):
        client = timeline(str(sock), args.calls, args.busy_poll_us)
    # The server has stopped, and saved its marks.
    srv = np.load(out)[-args.calls :]  # the last requests are the timed calls
    figures = steps(client, srv)
    print(f"one call at a time, {args.calls} calls, busy_poll_us={args.busy_poll_us:g}; medians, µs")
    print(idle_policy())
    for name in STEPS:
        print(f"  {name:<24}{figures[name]:>8.1f}")


if __name__ == "__main__":
    main()
