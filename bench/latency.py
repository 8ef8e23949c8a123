"""Latency at concurrency 1: what mlrt adds on top of the model and of HTTP itself.

    python -m bench.latency [--rounds 15] [--requests 300] [--processes 3] [--json [PATH]]

Systems, measured in interleaved rounds (order rotated each round) so the
machine's drift hits all of them alike:
  onnxruntime     session.run on one row, in-process (the model's own cost)
  http floor      a do-nothing Starlette endpoint on uvicorn+uvloop+httptools
  mlrt v2 json    POST .../infer, V2 JSON, one row of the bench MLP (20 FP32)
  mlrt v2 binary  the same with the binary tensor extension (tritonclient's default)
  naive server    Starlette + onnxruntime per request on the same stack (bench/naive.py),
                  for reference: what the model call costs inside a real server
  mlrt + drift    mlrt V2 binary with a reference profile: every feature and output counted
  grpc floor      a do-nothing grpc.aio ModelInfer on the same loop (bench/floor.py)
  mlrt grpc       the same request over V2 gRPC (--grpc-port), raw contents, from a grpcio
                  channel sending a pre-serialized ModelInferRequest (both skipped without grpcio)
HTTP systems run as --processes server processes each (two processes of one server
differ by 10-30% here, see bench/_harness.paired_rounds), one keep-alive connection
and pre-encoded requests per process; each round's requests are split between them.
The table reports the median over rounds of each round's p50/p99 with the lowest and
highest round, and the median of the per-round ratio to the floor's p50.

The concurrency-1 target is judged here and nowhere else: mlrt's p50 at most 1.3 times the
HTTP floor's, per round, for V2 JSON and V2 binary alike (bench.serving's c=1 row, through
wrk, is a throughput figure, not a verdict on it).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from runtime._child import mlrt_command
from runtime.monitor import Profile

from . import _results, models
from ._harness import (
    RawHTTP,
    free_port,
    paired_rounds,
    post_request,
    server,
    v2_binary_body,
    v2_json_body,
)
from ._results import spread

#: Raised when a change makes earlier results incomparable (bench/_results.py).
SCRIPT_VERSION = 1
#: mlrt's c=1 p50 over the HTTP floor's, per round: the target (median of the rounds).
C1_TARGET = 1.3


def main(argv: list[str] | None = None) -> None:
    from ._harness import idle_policy
    from ._results import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--requests", type=int, default=300, help="per system per round")
    p.add_argument(
        "--processes", type=int, default=3, help="server processes per HTTP system"
    )
    _results.json_option(p)
    args = p.parse_args(argv)
    settings = {"rounds": args.rounds, "requests": args.requests, "processes": args.processes,
                "model": "bench MLP, 20 FP32 -> 64 -> 32 -> 2, one row", "idle": idle_policy()}  # fmt: skip
    run = Run("latency", SCRIPT_VERSION, settings, argv=argv, measured=("runtime", "native", "setup.py",
              "bench/_harness.py", "bench/floor.py", "bench/naive.py", "bench/models.py"))  # fmt: skip

    import onnxruntime as ort

    tmp = Path(tempfile.mkdtemp(prefix="mlrt-bench-"))
    model_path = models.mlp(tmp / "mlp.onnx")
    x = np.random.default_rng(0).standard_normal((1, 20)).astype(np.float32)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])

    profile_path = tmp / "profile.json"
    ref = np.random.default_rng(1).standard_normal((20_000, 20)).astype(np.float32)
    Profile.fit(ref, outputs=sess.run(None, {"input": ref})[0]).save(profile_path)

    def mlrt_cmd(port: int, *extra: str) -> list[str]:
        return mlrt_command("serve", f"mlp={model_path}", *extra,
                            "--port", str(port), "--log-level", "warning")  # fmt: skip

    commands = {
        "floor": lambda port: [sys.executable, "-m", "bench.floor", "--port", str(port)],
        "mlrt": mlrt_cmd,
        "naive": lambda port: [sys.executable, "-m", "bench.naive", str(model_path), "--port", str(port)],
        "drift": lambda port: mlrt_cmd(port, "--profile", str(profile_path)),
    }

    json_req = post_request("/v2/models/mlp/infer", v2_json_body(x))
    bin_body, bin_headers = v2_binary_body(x)
    bin_req = post_request("/v2/models/mlp/infer", bin_body, bin_headers)
    floor_req = post_request("/v2/models/mlp/infer", v2_json_body(x))

    grpc_calls = _grpc_request(x)
    with contextlib.ExitStack() as stack:
        ports: dict[str, list[int]] = {}
        for kind, command in commands.items():
            for _ in range(args.processes):
                port = free_port()
                stack.enter_context(server(command(port), port))
                ports.setdefault(kind, []).append(port)
        grpc_systems: dict[str, list] = {}
        if grpc_calls is not None:
            grpc_servers = {
                "grpc floor": lambda port, gport: [*commands["floor"](port), "--grpc-port", str(gport)],
                "mlrt grpc": lambda port, gport: mlrt_cmd(port, "--grpc-port", str(gport)),
            }
            for name, command in grpc_servers.items():
                for _ in range(args.processes):
                    port, gport = free_port(), free_port()
                    stack.enter_context(server(command(port, gport), port))
                    grpc_systems.setdefault(name, []).append(grpc_calls(gport, stack))

        # Connected once every server is up: mlrt answers a connection that sends nothing
        # for its header_timeout_s with 408 and closes it, and starting the rest takes longer.
        conns = {kind: [RawHTTP(port) for port in kind_ports] for kind, kind_ports in ports.items()}

        def http(kind: str, raw: bytes) -> list:
            def once(conn: RawHTTP) -> None:
                status, _ = conn.request(raw)
                if status != 200:
                    raise RuntimeError(f"status {status}")

            return [lambda c=c: once(c) for c in conns[kind]]

        systems = {
            "onnxruntime": lambda: sess.run(None, {"input": x}),
            "http floor": http("floor", floor_req),
            "mlrt v2 json": http("mlrt", json_req),
            "mlrt v2 binary": http("mlrt", bin_req),
            "naive server": http("naive", floor_req),
            "mlrt + drift": http("drift", bin_req),
        }
        systems.update(grpc_systems)
        per_round = paired_rounds(systems, args.rounds, args.requests)

    results = {"per_round_p50_p99_us": {name: [[float(v[0]), float(v[1])] for v in vals]
                                        for name, vals in per_round.items()}}  # fmt: skip
    print(markdown(run.envelope(results)), end="")
    if args.json is not None:
        run.save(results, args.json or None)


def markdown(saved: dict, name: str = "latency") -> str:
    """A saved run's table, the drift monitor's cost and the c=1 verdict, in Markdown."""
    per_round = saved["results"]["per_round_p50_p99_us"]
    floor = np.array([p50 for p50, _ in per_round["http floor"]])

    lines = ["| system | p50 µs | p99 µs | p50 / HTTP floor, per round |", "|---|---|---|---|"]
    for system, vals in per_round.items():
        p50s, p99s = np.array([v[0] for v in vals]), np.array([v[1] for v in vals])
        lines.append(f"| {system} | {spread(p50s)} | {spread(p99s)} | {spread(p50s / floor, '.2f')} |")
    on = np.array([v[0] for v in per_round["mlrt + drift"]])
    off = np.array([v[0] for v in per_round["mlrt v2 binary"]])
    s = saved["settings"]
    lines += [
        "",
        f"Concurrency 1, {s['rounds']} rounds x {s['requests']} requests per system, order rotated; "
        f"{s['processes']} server processes per HTTP system; median [lowest-highest round]; {s['idle']}. "
        f"Drift monitoring on minus off (V2 binary), median of per-round p50 differences: "
        f"{statistics.median(on - off):+.1f} µs.",
        "",
        f"| c=1 target: mlrt p50 / HTTP floor p50 <= {C1_TARGET} | per round, median [range] | verdict |",
        "|---|---|---|",
    ]
    for system in ("mlrt v2 json", "mlrt v2 binary"):
        r = np.array([v[0] for v in per_round[system]]) / floor
        verdict = "PASS" if np.median(r) <= C1_TARGET else "FAIL"
        lines.append(f"| {system} | {spread(r, '.2f')} | {verdict} |")
    return "\n".join(lines) + "\n"


def _grpc_request(x: np.ndarray):  # type: ignore[no-untyped-def]
    """A maker of ModelInfer calls on a port, each sending the same pre-serialized request
    (None without grpcio): the gRPC counterpart of the pre-encoded HTTP requests."""
    try:
        import grpc

        from runtime.server.grpc_proto import Messages
    except ImportError:
        print("mlrt grpc: skipped (pip install grpcio protobuf)", file=sys.stderr)
        return None
    m = Messages()
    req = m.ModelInferRequest(model_name="mlp")
    req.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    payload = req.SerializeToString()

    def calls(port: int, stack: contextlib.ExitStack):  # type: ignore[no-untyped-def]
        channel = stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{port}"))
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes in, bytes out
        return lambda: infer(payload, timeout=10)

    return calls


if __name__ == "__main__":
    main()
