"""Latency at concurrency 1: what mlrt adds on top of the model and of HTTP itself.

    python -m bench.latency [--rounds 15] [--requests 300] [--processes 3] [--json]

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
The table reports the median over rounds of each round's p50/p99, and the median of
the per-round ratio to the floor's p50.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from runtime._child import mlrt_command
from runtime.monitor import Profile

from . import models
from ._harness import (
    RawHTTP,
    free_port,
    paired_rounds,
    post_request,
    server,
    v2_binary_body,
    v2_json_body,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--requests", type=int, default=300, help="per system per round")
    p.add_argument(
        "--processes", type=int, default=3, help="server processes per HTTP system"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args()

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
        conns: dict[str, list[RawHTTP]] = {}
        for kind, command in commands.items():
            for _ in range(args.processes):
                port = free_port()
                stack.enter_context(server(command(port), port))
                conns.setdefault(kind, []).append(RawHTTP(port))
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

    floor_p50 = np.array([p50 for p50, _ in per_round["http floor"]])
    rows = []
    for name, vals in per_round.items():
        p50s = np.array([v[0] for v in vals])
        p99s = np.array([v[1] for v in vals])
        rows.append(
            {
                "system": name,
                "p50_us": float(np.median(p50s)),
                "p99_us": float(np.median(p99s)),
                "p50_vs_floor": float(np.median(p50s / floor_p50)),
            }
        )
    on = np.array([v[0] for v in per_round["mlrt + drift"]])
    off = np.array([v[0] for v in per_round["mlrt v2 binary"]])
    drift_cost_us = float(np.median(on - off))
    if args.json:
        doc = {
            "rounds": args.rounds,
            "requests": args.requests,
            "results": rows,
            "drift_p50_cost_us": drift_cost_us,
        }
        print(json.dumps(doc, indent=2))
        return
    print(f"concurrency 1, bench MLP (20 FP32 -> 2), {args.rounds} rounds x {args.requests} requests")
    print(f"{'system':<16}{'p50 µs':>10}{'p99 µs':>10}{'p50 / floor':>13}")
    for row in rows:
        print(f"{row['system']:<16}{row['p50_us']:>10.1f}{row['p99_us']:>10.1f}{row['p50_vs_floor']:>13.2f}")
    print(f"drift monitoring on vs off (V2 binary): p50 {drift_cost_us:+.1f} µs (median of per-round deltas)")


def _grpc_request(x: np.ndarray):  # type: ignore[no-untyped-def]
    """A maker of ModelInfer calls on a port, each sending the same pre-serialized request
    (None without grpcio): the gRPC counterpart of the pre-encoded HTTP requests."""
    try:
        import grpc

        from runtime.server.grpc_proto import Messages
    except ImportError:
        print("mlrt grpc: skipped (pip install 'mlrt[grpc]')", file=sys.stderr)
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
