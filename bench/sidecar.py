"""Sidecar and embedded latency at concurrency 1 (issue 7's targets).

    python -m bench.sidecar [--rounds 10] [--requests 300] [--processes 3] [--contention] [--json]

Paired rounds, order rotated, one warm connection per client; --processes servers, each
round's calls split between them (see bench/_harness.paired_rounds):
  client uds msgpack   runtime.client.Client over the Unix socket, msgpack bodies
  client uds binary    the same, V2 binary
  client tcp json      runtime.client.Client over TCP, V2 JSON
  client tcp binary    the same, V2 binary
  client uds msgpack, polling 200 µs
                       the first, with Client(busy_poll_us=200), the opt-in: the calling thread
                       polls for the answer for up to 200 µs before it sleeps (docs/formats.md)
  load().predict       runtime.load(model, profile=...) in-process, monitoring on
  session.run          bare onnxruntime on the same row
The clients run with their defaults (the calling thread sleeps while it waits) but for the
one row that says otherwise. Rows: one row of the bench MLP (20 FP32 features); `client CPU`
is the calling thread's CPU time per call (polling included). The server and the in-process
model both run with a reference profile, so drift monitoring is on everywhere.

--contention adds what polling costs where it cannot help: the default client against one
that polls for 200 µs, (a) on a Python model that takes 1 ms, slower than the polling budget
(p50 and client CPU per call, paired rounds), and (b) with 1, 2, 4 and 8 threads sharing one
client against one server (throughput, p50, p99; 2 s per run, two runs each).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import runtime
from runtime._child import mlrt_command
from runtime.client import Client
from runtime.monitor import Profile

from . import models
from ._harness import free_port, idle_policy, paired_rounds, server

POLL_US = 200
POLLING = f"client uds msgpack, polling {POLL_US} µs"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--processes", type=int, default=3, help="server processes (calls split between them)")
    p.add_argument("--contention", action="store_true", help="also a slow model and 1-8 threads")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import onnxruntime as ort

    tmp = Path(tempfile.mkdtemp(prefix="mlrt-bench-sidecar-"))
    model_path = models.mlp(tmp / "mlp.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    ref = np.random.default_rng(1).standard_normal((20_000, 20)).astype(np.float32)
    profile = tmp / "profile.json"
    Profile.fit(ref, outputs=sess.run(None, {"input": ref})[0]).save(profile)
    x = np.random.default_rng(0).standard_normal((1, 20)).astype(np.float32)

    local = runtime.load(f"mlp={model_path}", profile=str(profile))
    with contextlib.ExitStack() as stack:
        clients: dict[str, list[Client]] = {}
        for i in range(args.processes):
            port = free_port()
            sock = tmp / f"mlrt-{i}.sock"
            cmd = mlrt_command("serve", f"mlp={model_path}", "--profile", str(profile),
                               "--port", str(port), "--uds", str(sock), "--log-level", "warning")  # fmt: skip
            stack.enter_context(server(cmd, port))
            for name, url, fmt, poll in (
                ("client uds msgpack", f"unix://{sock}", "msgpack", 0),
                ("client uds binary", f"unix://{sock}", "binary", 0),
                ("client tcp json", f"http://127.0.0.1:{port}", "json", 0),
                ("client tcp binary", f"http://127.0.0.1:{port}", "binary", 0),
                (POLLING, f"unix://{sock}", "msgpack", POLL_US),
            ):
                client = Client(url, format=fmt, busy_poll_us=poll)
                clients.setdefault(name, []).append(stack.enter_context(client))
        feeds = {"input": x}
        systems: dict = {n: [lambda c=c: c.infer("mlp", feeds) for c in cs] for n, cs in clients.items()}
        systems["load().predict"] = lambda: local.predict(x)
        systems["session.run"] = lambda: sess.run(None, feeds)
        names = list(systems)
        cpu: dict[str, list[float]] = {}
        per_round = paired_rounds(systems, args.rounds, args.requests, cpu_us=cpu)
        p50s = {n: [p50 for p50, _ in v] for n, v in per_round.items()}
        p99s = {n: [p99 for _, p99 in v] for n, v in per_round.items()}
        if args.contention:
            contention = _contention(stack, tmp / "mlrt-0.sock", x, args.rounds)

    def med(xs: list[float]) -> float:
        return float(np.median(xs))

    def delta(a: str, b: str) -> float:
        return med([x - y for x, y in zip(p50s[a], p50s[b], strict=True)])

    uds_vs_tcp = delta("client uds msgpack", "client tcp json")
    embedded_cost = delta("load().predict", "session.run")
    rows = [
        {"system": n, "p50_us": med(p50s[n]), "p50_rounds_us": [min(p50s[n]), max(p50s[n])],
         "p99_us": med(p99s[n]), "client_cpu_us": med(cpu[n])}
        for n in names
    ]  # fmt: skip
    targets = [
        ("uds msgpack p50 below tcp json p50 (µs difference)", uds_vs_tcp, uds_vs_tcp < 0),
        ("uds msgpack p50 < 150 µs", med(p50s["client uds msgpack"]), med(p50s["client uds msgpack"]) < 150),
        ("load().predict p50 - session.run p50 < 10 µs", embedded_cost, embedded_cost < 10),
    ]
    if args.json:
        doc = {
            "idle_policy": idle_policy(),
            "results": rows,
            "targets": [{"target": t, "value": v, "pass": ok} for t, v, ok in targets],
        }
        if args.contention:
            doc["contention"] = contention
        print(json.dumps(doc, indent=2))
        return
    print(f"concurrency 1, bench MLP, drift monitoring on; {args.rounds} rounds x {args.requests} calls")
    print(idle_policy())
    print("p50: the median of the rounds' p50s; rounds: the lowest and highest of them")
    print(f"{'system':<34}{'p50 µs':>10}{'rounds':>14}{'p99 µs':>10}{'client CPU µs':>15}")
    for row in rows:
        lo, hi = row["p50_rounds_us"]
        print(f"{row['system']:<34}{row['p50_us']:>10.1f}{f'{lo:.0f}-{hi:.0f}':>14}"
              f"{row['p99_us']:>10.1f}{row['client_cpu_us']:>15.1f}")  # fmt: skip
    for text, value, ok in targets:
        print(f"{'PASS' if ok else 'FAIL'}  {text}: {value:.1f}")
    if args.contention:
        print(f"\npolling where it cannot help: the default client vs busy_poll_us={POLL_US}")
        print(f"{'case':<34}{'client':>10}{'req/s':>10}{'p50 µs':>10}{'p99 µs':>10}{'CPU µs':>10}")
        for r in contention:
            cpu_us = "" if r["client_cpu_us"] is None else f"{r['client_cpu_us']:.1f}"
            req_s = "" if r["req_s"] is None else f"{r['req_s']:.0f}"
            print(f"{r['case']:<34}{r['client']:>10}{req_s:>10}{r['p50_us']:>10.1f}{r['p99_us']:>10.1f}{cpu_us:>10}")


def _contention(stack: contextlib.ExitStack, mlp_sock: Path, x: np.ndarray, rounds: int) -> list[dict]:
    out: list[dict] = []
    clients = {"default": 0, "polling": POLL_US}
    port = free_port()
    slow_sock = mlp_sock.with_name("mlrt-slow.sock")
    cmd = mlrt_command("serve", "slow=bench.models:slow_sum",
                       "--port", str(port), "--uds", str(slow_sock), "--log-level", "warning")  # fmt: skip
    stack.enter_context(server(cmd, port))
    slow = {k: stack.enter_context(Client(f"unix://{slow_sock}", format="msgpack", busy_poll_us=v))
            for k, v in clients.items()}  # fmt: skip
    cpu: dict[str, list[float]] = {}
    calls = {k: lambda c=c: c.infer("slow", {"x": x}) for k, c in slow.items()}
    per_round = paired_rounds(calls, rounds, 200, warmup=50, cpu_us=cpu)
    for k, v in per_round.items():
        p50, p99 = (float(np.median([r[i] for r in v])) for i in (0, 1))
        out.append({"case": "model taking 1 ms, 1 thread", "client": k, "req_s": None,
                    "p50_us": p50, "p99_us": p99, "client_cpu_us": float(np.median(cpu[k]))})  # fmt: skip
    for threads in (1, 2, 4, 8):
        case = f"bench MLP, {threads} thread" + ("s" if threads > 1 else "")
        for _ in range(2):
            for k, poll in clients.items():
                with Client(f"unix://{mlp_sock}", format="msgpack", busy_poll_us=poll) as c:
                    req_s, p50, p99 = _threaded(c, x, threads, 2.0)
                out.append({"case": case, "client": k, "req_s": req_s,
                            "p50_us": p50, "p99_us": p99, "client_cpu_us": None})  # fmt: skip
    return out


def _threaded(client: Client, x: np.ndarray, threads: int, seconds: float) -> tuple[float, float, float]:
    latencies: list[float] = []
    feeds = {"input": x}
    for _ in range(50):
        client.infer("mlp", feeds)
    stop = time.perf_counter() + seconds

    def work() -> None:
        mine = []
        while (t0 := time.perf_counter()) < stop:
            client.infer("mlp", feeds)
            mine.append(time.perf_counter() - t0)
        latencies.extend(mine)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    us = np.array(latencies) * 1e6
    return len(us) / seconds, float(np.percentile(us, 50)), float(np.percentile(us, 99))


if __name__ == "__main__":
    main()
