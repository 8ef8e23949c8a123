"""Shared benchmark plumbing: start servers on loopback, a raw keep-alive HTTP/1.1
client with pre-encoded requests (so the client adds as little as possible), and
percentile/ratio helpers for paired rounds."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from runtime._child import free_port, running_server

__all__ = [
    "RawHTTP",
    "free_port",
    "idle_policy",
    "get_request",
    "paired_rounds",
    "percentiles_us",
    "post_request",
    "server",
    "v2_binary_body",
    "v2_json_body",
]


def idle_policy() -> str:
    """How this machine's idle CPUs wait, which sets what a sleeping thread pays to be woken.

    On a VM with the cpuidle-haltpoll driver, an idle vCPU polls for up to
    guest_halt_poll_ns before it halts (the kernel's default is 200 µs); once halted,
    waking it costs tens of µs. Concurrency-1 latency over a socket depends on it more
    than on anything mlrt does, so the benchmarks that measure it say which it was.
    """
    base = "/sys/devices/system/cpu/cpuidle/current_driver"
    try:
        with open(base) as f:
            driver = f.read().strip()
    except OSError:
        return "cpuidle: unknown"
    line = f"cpuidle driver {driver}"
    try:
        with open("/sys/module/haltpoll/parameters/guest_halt_poll_ns") as f:
            line += f", guest_halt_poll_ns {f.read().strip()}"
    except OSError:
        pass
    return line


def cpu_ns(pid: int) -> int:
    """CPU time in ns of process `pid`, every thread, and of its child processes (a server's
    workers), from /proc (schedstat: the scheduler's own count, not the tick's)."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(c) for c in f.read().split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{p}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass  # a thread that ended meanwhile
    return total


def idle_of(saved: dict) -> str:
    """A saved run's idle policy (settings "idle", taken as it started), and the one at its
    end (results "idle_after") where that differs: a run that straddles a change says so."""
    before = saved["settings"]["idle"]
    after = saved["results"].get("idle_after", before)
    return before if after == before else f"{before} (at the end: {after})"


@contextlib.contextmanager
def server(cmd: Sequence[str], port: int, timeout_s: float = 60.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server subprocess until the block ends; wait for /v2/health/ready."""
    with running_server(cmd, f"http://127.0.0.1:{port}/v2/health/ready", timeout_s=timeout_s) as proc:
        yield proc


def connect_when_listening(
    port: int, proc: subprocess.Popen, what: str, timeout_s: float = 30.0
) -> socket.socket:
    """A connection to a server just started on `port`, once it listens; fails if `proc` exits
    first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited ({proc.returncode}) before it listened") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on port {port} within {timeout_s:g} s") from None
            time.sleep(0.05)


def get_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def post_request(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class RawHTTP:
    """One keep-alive connection; sends a pre-encoded request, reads one response."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def request(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            rest += chunk
        body, self.buf = rest[:length], rest[length:]
        return status, body

    def close(self) -> None:
        self.sock.close()


def v2_json_body(x: np.ndarray, name: str = "input") -> bytes:
    return json.dumps(
        {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    ).encode()


def v2_binary_body(x: np.ndarray, name: str = "input") -> tuple[bytes, dict[str, str]]:
    """What tritonclient sends with its defaults: binary input and binary outputs."""
    raw = np.ascontiguousarray(x, np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def percentiles_us(samples_s: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(samples_s) * 1e6
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def paired_rounds(
    systems: dict[str, Callable[[], object] | Sequence[Callable[[], object]]],
    rounds: int,
    calls: int,
    warmup: int = 200,
    cpu_us: dict[str, list[float]] | None = None,
) -> dict[str, list[tuple[float, float]]]:
    """Time every system in short interleaved rounds (order rotated each round) so the
    machine's drift hits them alike; per system, each round's (p50, p99) in µs.

    A system given as several callables (one per server process) has each round's calls
    split between them, a run of consecutive calls each, and its figures taken over all
    of them: two processes of the same server can differ by 10-30% at concurrency 1 on
    this kind of machine (where the scheduler puts them, their memory layout), and one
    process's luck should not decide a system's figure.

    `cpu_us`, if given, gets per system each round's CPU time of the calling thread per
    call, in µs (what a client spends, polling included; not the server's).
    """
    groups = {n: list(f) if isinstance(f, list | tuple) else [f] for n, f in systems.items()}
    for fns in groups.values():
        for fn in fns:
            for _ in range(warmup):
                fn()
    names = list(groups)
    out: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fns = groups[name]
            per_fn = max(1, calls // len(fns))
            samples = []
            cpu0 = time.thread_time()
            for fn in fns:
                for _ in range(per_fn):
                    t0 = time.perf_counter()
                    fn()
                    samples.append(time.perf_counter() - t0)
            if cpu_us is not None:
                cpu_us.setdefault(name, []).append((time.thread_time() - cpu0) / len(samples) * 1e6)
            out[name].append(percentiles_us(samples))
    return out
