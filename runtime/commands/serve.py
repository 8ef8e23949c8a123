"""Serve models over the Open Inference Protocol (KServe V2 / Triton REST).

MODEL is one of:
  path/to/churn.onnx            served under the file's name without its suffix:
                                'churn', at /v2/models/churn/infer
  name=path/to/model.onnx       served as 'name'
  name=package.module:object    an in-process Python model; the current directory is
                                searched first, so ./mymodule.py needs no PYTHONPATH
  name@alias, name/version      a version from the registry given by --registry (or
                                MLRT_REGISTRY); an alias is followed: when it moves, the new
                                version is loaded, warmed up and swapped in without downtime
  models:/name@alias            the same from an MLflow registry (pip install mlflow)

Settings come from --config (TOML), then MLRT_* environment variables
(MLRT_HOST, MLRT_PORT, MLRT_UDS, MLRT_GRPC_PORT, MLRT_LOG_LEVEL, MLRT_MAX_BODY_BYTES,
MLRT_GRACEFUL_TIMEOUT, MLRT_WORKERS, MLRT_CONFIG), then flags.
"""

from __future__ import annotations

import argparse
import sys

from ..config import LOG_LEVELS

NAME = "serve"
HELP = "serve models over HTTP (Open Inference Protocol v2)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="*", metavar="MODEL", help="model to serve (see above)")
    p.add_argument("--config", help="TOML config file with [server] and [[models]]")
    p.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default 8000)")
    p.add_argument("--uds", metavar="PATH", help="also listen on this Unix domain socket")
    p.add_argument("--uds-mode", help="octal permissions of the socket file (default 600: owner only)")
    p.add_argument("--no-tcp", action="store_true", help="listen on --uds only")
    p.add_argument(
        "--grpc-port",
        type=int,
        metavar="N",
        help="also serve the V2 gRPC API (tritonclient.grpc) on port N; off by default "
        "(Triton uses 8001); needs pip install grpcio protobuf",
    )
    p.add_argument(
        "--workers",
        metavar="N",
        help="worker processes sharing the port, each with its own event loop and models; 'auto': one "
        "per core (default 1; MLRT_WORKERS). /metrics and drift count all of them (docs/deploy.md)",
    )
    p.add_argument("--log-level", choices=LOG_LEVELS, help="default info")
    p.add_argument("--max-body-bytes", type=int, help="largest request body (default 64 MiB)")
    p.add_argument(
        "--dashboard-path", metavar="PATH", help="where the dashboard is served (default /); 'off': nowhere"
    )
    c = p.add_argument_group("slow and greedy clients (docs/reliability.md)")
    c.add_argument("--header-timeout", type=float, metavar="S", help="seconds to send a header block (10)")
    c.add_argument(
        "--body-timeout", type=float, metavar="S",
        help="seconds a body may take before --min-body-rate applies (10)",
    )  # fmt: skip
    c.add_argument("--min-body-rate", type=int, metavar="B", help="body bytes/s owed after that (65536)")
    c.add_argument(
        "--keep-alive", type=float, metavar="S", help="seconds an idle keep-alive connection is kept (5)"
    )
    c.add_argument(
        "--max-connections", type=int, metavar="N",
        help="open connections past which new ones get 503 (default: the file limit less 64)",
    )  # fmt: skip
    c.add_argument(
        "--max-buffered-bytes", type=int, metavar="B",
        help="bytes of unfinished bodies held in all (default: 4 x --max-body-bytes)",
    )  # fmt: skip
    p.add_argument(
        "--graceful-timeout", type=float, help="seconds to finish in-flight work on SIGTERM (default 30)"
    )
    r = p.add_argument_group("registry and admin")
    r.add_argument("--registry", help="registry directory or URI for name@alias models (MLRT_REGISTRY)")
    r.add_argument("--registry-poll", type=float, help="seconds between alias checks (default 5)")
    r.add_argument(
        "--admin-token",
        help="require 'Authorization: Bearer TOKEN' on /v2/repository/* (better: MLRT_ADMIN_TOKEN)",
    )
    d = p.add_argument_group("drift monitoring")
    d.add_argument(
        "--profile",
        action="append",
        metavar="[NAME=]REF.json",
        help="reference profile (from `mlrt profile`) of a model: drift monitoring on; repeatable",
    )
    d.add_argument("--state-dir", help="save drift counts here periodically and at exit; restore at start")
    d.add_argument("--drift-window", type=float, help="sliding window in seconds (default 600)")
    b = p.add_argument_group("batching (applies to every model; per model in TOML)")
    b.add_argument("--max-batch-size", type=int, help="most rows per model call (default 128)")
    b.add_argument(
        "--max-queue-delay-us", type=int, help="hold a partial batch this long for company (default 0)"
    )
    b.add_argument("--instances", type=int, help="concurrent model executions (default 1)")
    b.add_argument(
        "--max-queue-rows", type=int, help="queued rows past which requests get 503 (default 8192)"
    )


def run(args: argparse.Namespace) -> int:
    from .._imports import cwd_importable
    from ..config import build_server_config
    from ..errors import MlrtError
    from ..server.run import serve

    cwd_importable()  # for name=module:object models and callable hooks
    try:
        config = build_server_config(
            config_file=args.config,
            models=args.models,
            overrides={
                "host": args.host,
                "port": args.port,
                "log_level": args.log_level,
                "max_body_bytes": args.max_body_bytes,
                "dashboard_path": args.dashboard_path,
                "header_timeout_s": args.header_timeout,
                "body_timeout_s": args.body_timeout,
                "min_body_rate": args.min_body_rate,
                "keep_alive_s": args.keep_alive,
                "max_connections": args.max_connections,
                "max_buffered_bytes": args.max_buffered_bytes,
                "graceful_timeout_s": args.graceful_timeout,
                "uds": args.uds,
                "registry": args.registry,
                "registry_poll_s": args.registry_poll,
                "admin_token": args.admin_token,
                "uds_mode": args.uds_mode,
                "tcp": False if args.no_tcp else None,
                "grpc_port": args.grpc_port,
                "workers": args.workers,
            },
            profiles=args.profile,
            monitor_overrides={"state_dir": args.state_dir, "window_s": args.drift_window},
            model_overrides={
                "max_batch_size": args.max_batch_size,
                "max_queue_delay_us": args.max_queue_delay_us,
                "instances": args.instances,
                "max_queue_rows": args.max_queue_rows,
            },
        )
        if not config.models:
            print("mlrt serve: no models given (pass MODEL or [[models]] in --config)", file=sys.stderr)
            return 2
        if config.workers > 1:  # type: ignore[operator]
            from ..server.workers import serve_workers

            return serve_workers(config)
        stopped = serve(config)
    except MlrtError as exc:
        print(f"mlrt serve: {exc}", file=sys.stderr)
        return 1
    code = 0
    if stopped.failure:
        print(f"mlrt serve: {stopped.failure}", file=sys.stderr)
        code = 1
    if stopped.left_running:
        # Python joins every worker thread at exit, and a model call stuck in one would
        # hold the process past --graceful-timeout; everything worth keeping (drift
        # state, logs) is written by now.
        import logging
        import os

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
