"""Where a sidecar call's time goes: one call at a time, client and server clocks joined.

    python -m bench.timeline [--calls 3000] [--busy-poll-us 0 200] [--runs 3] [--json [PATH]]

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

Each run starts a fresh server per --busy-poll-us value (the client's busy_poll_us: 0, its
default, sleeps while it waits; 200 polls first, the opt-in), the values' order rotated from
run to run, and times --calls calls after 500 to warm up. A run's figure for a step is the
median over its calls (the total's too), in µs; the table gives the median over runs with the
lowest and highest run. The server's wrapping adds a few clock reads; the client's, a Python
call around its send, wait and read. What a sleeping thread pays to be woken depends on the
machine's idle policy (on a VM, guest halt polling): the run records it and never changes it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import _results, models
from ._harness import free_port, idle_of, idle_policy, server
from ._results import spread

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1
WARMUP = 500
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
        for _ in range(WARMUP):
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


def steps(client: np.ndarray, srv: np.ndarray) -> tuple[dict[str, float], int]:
    """Each step's median over the calls, in µs, and how many calls' marks cannot be of the
    same call: the server's read callback starting before the client's send did, or the
    client's read returning before the server's write started. (A read callback before the
    send returns, or a read returning before the write does, is no such sign: the system
    call wakes the other side, which may run first.)"""
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
    disordered = int(np.count_nonzero((arrived < send0) | (read1 < write0)))
    return {name: float(np.median(v)) * 1e6 for name, v in spans.items()}, disordered


def one_run(tmp: Path, model_path: Path, profile: Path, calls: int, busy_poll_us: float, tag: str) -> dict:
    """A fresh server, `calls` timed calls; each step's median (µs) and the checks' counts."""
    out, sock, port = tmp / f"server-{tag}.npy", tmp / f"mlrt-{tag}.sock", free_port()
    cmd = [sys.executable, "-m", "bench.timeline", "--serve", str(out), "serve", f"mlp={model_path}",
           "--profile", str(profile), "--port", str(port), "--uds", str(sock),
           "--log-level", "warning"]  # fmt: skip
    with server(cmd, port):
        client = timeline(str(sock), calls, busy_poll_us)
    # The server has stopped, and saved its marks.
    marks = np.load(out)
    srv = marks[-calls:]  # the last requests are the timed calls
    medians, disordered = steps(client, srv)
    return {"medians_us": medians, "server_requests": int(len(marks)), "out_of_order": disordered}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=3000, help="timed calls per run (3000)")
    p.add_argument("--busy-poll-us", type=float, nargs="+", default=[0, 200],
                   help="the client's busy_poll_us, one server per value per run (0 200)")  # fmt: skip
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--serve", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    _results.json_option(p)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve[0], args.serve[1:])
        return

    import onnxruntime as ort

    from runtime.monitor import Profile

    from ._results import Run

    settings = {"calls": args.calls, "warmup": WARMUP, "busy_poll_us": args.busy_poll_us, "runs": args.runs,
                "model": "bench MLP, 20 FP32 -> 64 -> 32 -> 2, one row; drift monitoring on",
                "client": "runtime.client.Client, Unix socket, msgpack", "idle": idle_policy()}  # fmt: skip
    run = Run("timeline", SCRIPT_VERSION, settings, argv=argv,
              measured=("runtime", "native", "setup.py", "bench/_harness.py", "bench/models.py"))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mlrt-bench-timeline-") as d:
        tmp = Path(d)
        model_path = models.mlp(tmp / "mlp.onnx")
        sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        ref = np.random.default_rng(1).standard_normal((20_000, 20)).astype(np.float32)
        profile = tmp / "profile.json"
        Profile.fit(ref, outputs=sess.run(None, {"input": ref})[0]).save(profile)
        polls = [f"{v:g}" for v in args.busy_poll_us]
        per_poll: dict[str, list[dict]] = {v: [] for v in polls}
        for r in range(args.runs):
            for k in range(len(polls)):
                v = polls[(r + k) % len(polls)]  # the order rotated run by run
                per_poll[v].append(one_run(tmp, model_path, profile, args.calls, float(v), f"{r}-{k}"))
            print(f"[bench.timeline] run {r + 1}/{args.runs}", file=sys.stderr, flush=True)
    results = {
        "medians_us": {v: {step: [x["medians_us"][step] for x in runs] for step in STEPS}
                       for v, runs in per_poll.items()},
        "server_requests": {v: [x["server_requests"] for x in runs] for v, runs in per_poll.items()},
        "out_of_order": {v: [x["out_of_order"] for x in runs] for v, runs in per_poll.items()},
        "idle_after": idle_policy(),
    }  # fmt: skip
    print(markdown(run.envelope(results)), end="")
    if args.json is not None:
        run.save(results, args.json or None)


def _label(poll: str) -> str:
    return "asleep (busy_poll_us 0)" if float(poll) == 0 else f"polling {poll} µs"


def markdown(saved: dict[str, Any], name: str = "timeline") -> str:
    """A saved run's table (bench/_results.py's layout) in Markdown."""
    s, r = saved["settings"], saved["results"]
    medians = r["medians_us"]
    polls = list(medians)
    lines = [f"| step | {' | '.join(_label(v) for v in polls)} |", "|---" * (1 + len(polls)) + "|"]
    for step in next(iter(medians.values())):
        lines.append(f"| {step} | {' | '.join(spread(medians[v][step], '.1f') for v in polls)} |")
    idle = idle_of(saved)
    bad = sum(sum(v) for v in r["out_of_order"].values())
    paired = ""
    for v in polls[1:]:  # each run's total over the first column's in the same run
        ratios = [a / b for a, b in zip(medians[v]["total"], medians[polls[0]]["total"], strict=True)]
        paired += (
            f" Total, {_label(v)} over {_label(polls[0])}, run by run: {statistics.median(ratios):.2f} "
            f"[{min(ratios):.2f}-{max(ratios):.2f}]."
        )
    lines += [
        "",
        f"One call at a time, {s['calls']} calls per run after {s['warmup']} to warm up, {s['runs']} runs, a "
        "fresh server per column per run, the columns' order rotated; a run's figure is a step's median over "
        "its calls, in µs (the total's too: the steps' medians need not add up to it); cells: median over "
        f"runs [lowest-highest run].{paired} Idle policy: {idle}. Calls whose client and server marks "
        f"cannot be of the same call (a read before the other side's send or write started): {bad}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
