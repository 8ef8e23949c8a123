"""Load-test any Open Inference Protocol (KServe V2) server and report latency percentiles
and throughput, without coordinated omission.

TARGET is a server URL (http://host:port: mlrt, Triton, MLServer, KServe) or a model to
serve (path.onnx or name=path.onnx: mlrt serve starts on a free loopback port for the
run and stops after it).

Modes:
  --concurrency C       closed loop: C connections, each sending as soon as it is answered
  --rate R              open loop: R requests/s (--arrivals constant|poisson), latency from
                        each request's scheduled time, so server stalls are not hidden
  --sweep               open-loop steps of rising rate until p99 > --slo-ms or errors
                        exceed --max-error-rate; reports the highest sustainable rate

Examples:
  mlrt bench http://127.0.0.1:8000 --model mlp --concurrency 8 --duration 10
  mlrt bench model.onnx --rate 2000 --arrivals poisson --encoding binary --json
  mlrt bench http://127.0.0.1:8000 --sweep --slo-ms 5 --plot sweep.png

docs/bench.md explains every field of the output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

NAME = "bench"
HELP = "load-test a V2 inference server (open or closed loop, sweep) and report latency"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="server URL (http://host:port) or a model file to serve")
    p.add_argument("--model", help="model name (default: the server's only model)")
    p.add_argument("--model-version", help="model version (default: the server's choice)")
    m = p.add_argument_group("load")
    mode = m.add_mutually_exclusive_group()
    mode.add_argument("--concurrency", type=int, help="closed loop with C connections (default 1)")
    mode.add_argument("--rate", type=float, help="open loop at R requests/s (with --sweep: the step)")
    m.add_argument("--sweep", action="store_true", help="raise the open-loop rate until --slo-ms is missed")
    m.add_argument(
        "--arrivals", choices=("constant", "poisson"), default="constant", help="open loop spacing"
    )
    m.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    m.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before (default 2)")
    m.add_argument("--slo-ms", type=float, default=5.0, help="sweep: p99 latency target in ms (default 5)")
    m.add_argument(
        "--max-error-rate", type=float, default=0.001, help="sweep: tolerated error fraction (default 0.001)"
    )
    m.add_argument("--sweep-steps", type=int, default=20, help="sweep: most rate steps (default 20)")
    m.add_argument(
        "--processes", type=int, default=1, help="generator processes sharing the load (default 1)"
    )
    m.add_argument("--connections", type=int, default=8, help="open loop: connections opened up front")
    m.add_argument(
        "--max-connections", type=int, default=512, help="open loop: most connections when all are busy"
    )
    m.add_argument("--timeout", type=float, default=30.0, help="seconds before a request counts as timed out")
    d = p.add_argument_group("requests")
    d.add_argument(
        "--encoding",
        choices=("json", "binary", "msgpack"),
        default="json",
        help="V2 JSON, V2 binary tensors, or msgpack (mlrt only); default json",
    )
    d.add_argument("--batch-size", type=int, default=1, help="rows per request (default 1)")
    d.add_argument(
        "--data", metavar="FILE", help="rows from .parquet/.csv/.npy/.npz instead of random inputs"
    )
    d.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME=D,D",
        help="shape of an input with variable inner dims; repeatable",
    )
    d.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME:DATATYPE:D,D",
        help="describe an input instead of reading the model metadata (e.g. input:FP32:-1,20); repeatable",
    )
    d.add_argument("--seed", type=int, default=0, help="random inputs and Poisson arrivals")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    o.add_argument("--plot", metavar="FILE.png", help="latency-percentile and throughput-latency plot")
    o.add_argument("--quiet", action="store_true", help="no live progress line")
    o.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the mlrt serve started for a model file; repeatable",
    )


class BenchError(Exception):
    pass


def _fail(msg: str) -> int:
    print(f"mlrt bench: {msg}", file=sys.stderr)
    return 1


@contextlib.contextmanager
def _local_server(spec: str, extra: list[str]) -> Iterator[str]:
    """`mlrt serve spec` on a free loopback port for the block; yields its URL."""
    from .._child import ServerStartError, free_port, mlrt_command, running_server

    port = free_port()
    cmd = mlrt_command("serve", spec, "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning")
    cmd += extra
    url = f"http://127.0.0.1:{port}"
    try:
        with running_server(cmd, f"{url}/v2/health/ready"):
            yield url
    except ServerStartError as exc:
        raise BenchError(f"mlrt serve {spec}: {exc}") from None


def _parse_shapes(items: list[str]) -> dict[str, tuple[int, ...]]:
    out = {}
    for item in items:
        name, sep, dims = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name] = tuple(int(x) for x in dims.split(","))
        except ValueError:
            raise BenchError(f"--shape wants NAME=D,D,..., got {item!r}") from None
    return out


def _parse_inputs(items: list[str]) -> list[Any]:
    from ..loadgen.payload import InputSpec

    out = []
    for item in items:
        parts = item.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            out.append(InputSpec(parts[0], parts[1].upper(), tuple(int(x) for x in parts[2].split(","))))
        except ValueError:
            raise BenchError(f"--input wants NAME:DATATYPE:D,D,..., got {item!r}") from None
    return out


def _discover_model(client: Any, url: str) -> str:
    r = client.post(f"{url}/v2/repository/index", json={})
    if r.status_code == 200:
        names = sorted({m.get("name") for m in r.json() if isinstance(m, dict) and m.get("name")})
        if len(names) == 1:
            return str(names[0])
        if names:
            raise BenchError(f"the server has several models ({', '.join(names)}); pick one with --model")
    raise BenchError("the server does not list its models; give --model")


def _prepare(args: argparse.Namespace, url: str) -> dict[str, Any]:
    """Model name, metadata, the pre-encoded requests, and one checked answer."""
    import httpx

    from ..loadgen import payload
    from ..loadgen.connection import request_bytes

    split = urlsplit(url)
    if split.scheme != "http" or not split.hostname:
        raise BenchError(
            f"TARGET must be an http:// URL or a model file, got {url!r} (https is not supported)"
        )
    host, port = split.hostname, split.port or 80
    base = url.rstrip("/")
    with httpx.Client(timeout=30.0) as client:
        try:
            model = args.model or _discover_model(client, base)
            mpath = f"/v2/models/{quote(model, safe='')}"
            if args.model_version:
                mpath += f"/versions/{quote(args.model_version, safe='')}"
            r = None if args.input else client.get(base + mpath)
        except httpx.HTTPError as exc:
            raise BenchError(f"cannot reach {base}: {exc}") from None
        if r is None:
            specs = _parse_inputs(args.input)
        elif r.status_code != 200:
            raise BenchError(f"GET {mpath} answered {r.status_code}: {r.text[:300]}")
        else:
            specs = payload.input_specs(r.json())
        if args.data:
            batches = payload.file_batches(args.data, specs, args.batch_size)
        else:
            n = 1 if args.batch_size * sum(1 for _ in specs) > 100_000 else 64
            batches = payload.random_batches(specs, args.batch_size, n, _parse_shapes(args.shape), args.seed)
        datatypes = {s.name: s.datatype for s in specs}
        bodies = [payload.encode_body(b, datatypes, args.encoding) for b in batches]
        prefix = split.path.rstrip("/")
        infer = f"{prefix}{mpath}/infer"
        body, headers = bodies[0]
        try:
            check = client.post(base + f"{mpath}/infer", content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise BenchError(f"the first request failed: {exc}") from None
        if not 200 <= check.status_code < 300:
            raise BenchError(
                f"the server refused the first request ({args.encoding}): "
                f"{check.status_code} {check.text[:300]}"
            )
    hostport = f"{host}:{port}" if split.port else host
    requests = tuple(request_bytes("POST", infer, hostport, b, h) for b, h in bodies)
    return {"host": host, "port": port, "model": model, "requests": requests, "inputs": specs}


def _check_args(args: argparse.Namespace) -> None:
    for name in ("duration", "timeout"):
        if getattr(args, name) <= 0:
            raise BenchError(f"--{name} must be > 0, got {getattr(args, name)}")
    if args.warmup < 0:
        raise BenchError(f"--warmup must be >= 0, got {args.warmup}")
    for name in ("batch_size", "processes", "connections", "max_connections", "sweep_steps"):
        if getattr(args, name) < 1:
            raise BenchError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.sweep and args.concurrency is not None:
        raise BenchError("--sweep is open loop: give --rate (the step) or nothing, not --concurrency")
    if args.concurrency is not None and args.concurrency < args.processes:
        raise BenchError(f"--concurrency {args.concurrency} is less than --processes {args.processes}")


def run(args: argparse.Namespace) -> int:
    try:
        _check_args(args)
        if args.plot:
            from ..loadgen.plot import _pyplot

            _pyplot()  # fail now, not after the run
        if args.target.startswith(("http://", "https://")):
            return _bench(args, args.target)
        spec = args.target
        path = spec.split("=", 1)[1] if "=" in spec and not Path(spec).exists() else spec
        if ":" not in path and not Path(path).exists():
            raise BenchError(f"TARGET {spec!r} is neither an http:// URL nor an existing model file")
        with _local_server(spec, args.serve_arg) as url:
            return _bench(args, url)
    except BenchError as exc:
        return _fail(str(exc))
    except Exception as exc:
        from ..loadgen.payload import PayloadError
        from ..loadgen.plot import MissingMatplotlib

        if isinstance(exc, PayloadError | MissingMatplotlib | ValueError):
            return _fail(str(exc))
        raise


def _bench(args: argparse.Namespace, url: str) -> int:
    from rich.console import Console

    from .. import __version__
    from ..loadgen import LoadSpec, report, run_load, sweep

    prep = _prepare(args, url)
    err = Console(stderr=True)
    out = Console()
    spec = (
        LoadSpec(
            host=prep["host"],
            port=prep["port"],
            requests=prep["requests"],
            duration_s=args.duration,
            warmup_s=args.warmup,
            concurrency=None if (args.rate is not None or args.sweep) else (args.concurrency or 1),
            rate=None if args.sweep else args.rate,
            arrivals=args.arrivals,
            connections=args.connections,
            max_connections=args.max_connections,
            timeout_s=args.timeout,
            seed=args.seed,
        )
        if not args.sweep
        else None
    )
    doc: dict[str, Any] = {
        "schema": "mlrt.bench/1",
        "mlrt_version": __version__,
        "target": url,
        "model": prep["model"],
        "encoding": args.encoding,
        "batch_size": args.batch_size,
        "data": args.data or "random",
        "arrivals": args.arrivals,
        "processes": args.processes,
        "mode": "sweep" if args.sweep else ("open" if args.rate is not None else "closed"),
        "result": None,
        "sweep": None,
    }
    where = url if args.target.startswith(("http://", "https://")) else f"mlrt serve {Path(args.target).name}"
    title = f"mlrt bench: model {prep['model']} on {where} ({args.encoding}, batch {args.batch_size})"
    with report.Progress(err, enabled=not args.quiet) as progress:
        if args.sweep:
            base = LoadSpec(
                host=prep["host"],
                port=prep["port"],
                requests=prep["requests"],
                duration_s=args.duration,
                warmup_s=args.warmup,
                rate=args.rate or 1.0,
                arrivals=args.arrivals,
                connections=args.connections,
                max_connections=args.max_connections,
                timeout_s=args.timeout,
                seed=args.seed,
            )

            def on_step(rate: float, r: Any, ok: bool) -> None:
                s = r.summary(args.batch_size, curve=False)
                if not args.quiet:
                    err.print(
                        f"  {rate:9,.0f} req/s offered: {s['ok_rps']:9,.0f} ok/s, p99 "
                        f"{s['latency_ms']['p99']:.3f} ms, errors {s['error_count']:,} -> "
                        + ("ok" if ok else "over")
                    )

            sw = sweep(
                base,
                slo_ms=args.slo_ms,
                max_error_rate=args.max_error_rate,
                step_rps=args.rate,
                max_steps=args.sweep_steps,
                processes=args.processes,
                progress=progress.update,
                on_step=on_step,
            )
            doc["sweep"] = report.sweep_summary(sw, args.batch_size)
        else:
            assert spec is not None
            result = run_load(spec, args.processes, progress.update)
            doc["result"] = result.summary(args.batch_size)
    if args.json:
        print(json.dumps(doc, indent=2))
    elif args.sweep:
        report.print_sweep(out, sw, args.batch_size)
    else:
        report.print_result(out, title, doc["result"])
    if args.plot:
        from ..loadgen.plot import plot_runs

        if args.sweep:
            runs = doc["sweep"]["steps"]
            plot_runs(
                args.plot,
                runs,
                title=title,
                slo_ms=args.slo_ms,
                sustainable_rps=doc["sweep"]["sustainable_rps"],
            )
        else:
            plot_runs(args.plot, [doc["result"]], title=title)
        if not args.json:
            out.print(f"plot written to {args.plot}")
    ok = doc["result"]["ok"] if doc["result"] else sum(s["ok"] for s in doc["sweep"]["steps"])
    return 0 if ok > 0 else 1
