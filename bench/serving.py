"""Serving throughput and latency under concurrent load: mlrt's dynamic batcher
against a naive server, the HTTP floor, the wire floor and MLServer in three configurations.

    python -m bench.serving [--rounds 3] [--duration 5] [--concurrency 1,8,64,256]
                            [--quick] [--no-mlserver] [--json [PATH]]

Systems, each its own process on loopback, all started before the first round:
  mlrt            `mlrt serve` with batching on and its defaults, V2 JSON
  mlrt binary     the same server, V2 binary tensor extension (tritonclient's default)
  mlrt mbs=1      `mlrt serve --max-batch-size 1`: the batcher off, V2 JSON
  mlrt drift      the same model in the same `mlrt serve` process under a second name, with
                  `--profile NAME=REF.json`: drift monitoring on (every feature and output
                  counted), V2 JSON; compared with plain mlrt (one process, so the comparison
                  is free of the few percent two server processes differ by)
  naive           Starlette + onnxruntime per request (bench/naive.py), V2 JSON
  floor           a do-nothing Starlette endpoint (bench/floor.py), V2 JSON
  wire floor      a raw uvloop `asyncio.Protocol` answering a fixed JSON (bench/wire_floor.py):
                  no HTTP library, no ASGI, what a Python server on this stack cannot go
                  below; issue 24 sets mlrt's c=64 throughput against it
  nginx floor     nginx, one worker, the same fixed JSON for every request (bench/nginx_floor.py):
                  a server written in C on the same machine; only when nginx is on PATH
  mlserver default     MLServer 1.7.1 as it ships: inference in its one worker process
                       (parallel_workers 1), no adaptive batching
  mlserver inproc      inference in the server process (parallel_workers 0), no batching:
                       no hop between processes per request, its best at low concurrency
  mlserver inproc+ab   in-process with adaptive batching (max_batch_size 64, max_batch_time
                       --mlserver-batch-time-ms, default 1 ms), what batching buys it under load
                  All three V2 JSON through a small custom model class that runs onnxruntime
                  (MLServer has no ONNX runtime of its own), installed once into its own venv
                  under ~/.cache/mlrt-bench (uvloop pinned to 0.21.0: 1.7.1's worker
                  crash-loops with newer uvloop); if that fails the run says so and goes on
                  without it. "MLServer best" is, round by round, whichever of the three
                  answered the most requests in that round: mlrt is compared with MLServer at
                  its best for each load, and with its default beside it.
The payload is one row of the bench MLP (20 FP32 features).

Load generator: wrk (`apt-get install -y wrk`) with one thread (`-t1`) and
bench/wrk/post.lua, which POSTs a fixed body and prints latency percentiles as
JSON. wrk is closed-loop (each connection sends its next request
when the previous answer arrives, so concurrency = connections); it is written in C
on an epoll loop and needs a fraction of a core for tens of thousands of req/s, so on
this 2-core machine the single-process Python servers, not wrk, are the bottleneck
(a Python client would be). Being closed-loop, its latencies are those seen by
callers at that concurrency, not those of an open-loop arrival rate.

Method: for each concurrency level, `--rounds` rounds of `--duration` seconds per
system, the order rotated every round so the machine's drift hits every system
alike. The table shows medians over rounds of each round's req/s (2xx only), with the
lowest and highest round, p50 and p99; ratios are medians of the per-round ratios of
systems measured in the same round. The concurrency-1 latency target is judged by
bench.latency (a lighter client), not here.

Overload: a separate mlrt with `--max-queue-rows 256`, driven at concurrency 1024
with requests that carry the V2 parameter `"timeout"` (`--deadline-ms`, default 200
ms, sent in µs). Expected: only 200s and 503s (counted by the server's own
`mlrt_requests_total`, and checked against wrk's count of non-2xx answers), the 200s'
p99 under the deadline (wrk records latency for every response, so the script reports
an upper bound on the 200s' p99, see post.lua), and `/v2/health/ready` answering 200
afterwards. Why 200 ms: a closed loop of 1024 connections waits at least
1024 / throughput for its answers whatever the server does (the do-nothing floor
measured alongside, the control, answers at c=1024 with a p50 of ~70 ms and a p99 of
~110 ms on this machine), most of it unread in socket buffers where no server-side
deadline can see it; a deadline below that is one no server on this stack can keep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime._child import ServerStartError, mlrt_command, running_server
from runtime.monitor import Profile

from . import _results, models, nginx_floor
from ._harness import RawHTTP, cpu_ns, free_port, get_request, post_request, v2_binary_body, v2_json_body
from ._results import spread

LUA = Path(__file__).with_name("wrk") / "post.lua"
MODEL = "mlp"
INFER = f"/v2/models/{MODEL}/infer"
DRIFT_MODEL = "mlp_drift"  # the same model, monitored
MLSERVER_VERSION = "1.7.1"
MLSERVER_PINS = [f"mlserver=={MLSERVER_VERSION}", "uvloop==0.21.0", "onnxruntime", "numpy"]
OVERLOAD_CONCURRENCY = 1024
#: Raised when a change makes earlier results incomparable (bench/_results.py). 2: MLServer
#: in three configurations (default, in-process, in-process with batching) instead of one
#: with batching in its worker process; the c=1 target left to bench.latency. 4: the
#: servers' CPU per request, and the targets on it and on the c=64 tail (issue 24). 5: the
#: nginx floor, where nginx is installed.
SCRIPT_VERSION = 5
#: MLServer's systems: name -> (parallel_workers or None for its default, adaptive batching).
MLSERVER_CONFIGS = {
    "mlserver default": (None, False),
    "mlserver inproc": (0, False),
    "mlserver inproc+ab": (0, True),
}

# MLServer loads custom model classes from the model folder (`implementation` in
# model-settings.json); this one runs onnxruntime like bench/naive.py does.
MLSERVER_MODEL_PY = """\
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        uri = await get_model_uri(self._settings)
        self._sess = ort.InferenceSession(uri, opts, providers=["CPUExecutionProvider"])
        self._in = self._sess.get_inputs()[0].name
        self._out = self._sess.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        y = self._sess.run([self._out], {self._in: x})[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output(self._out, y)])
"""


@dataclass
class Target:
    """One thing wrk drives: a server port plus the body and headers sent to it."""

    name: str
    port: int
    body: Path
    headers: list[str] = field(default_factory=list)
    path: str = INFER


# -- processes -----------------------------------------------------------------------------------


def monitored_mlp(prefix: str) -> tuple[list[str], Target]:
    """The bench MLP served with drift monitoring on (a float32 profile of 20,000 rows), one
    binary V2 row to send it, and its command line: what bench.soak and bench.dashboard_cost
    drive with wrk."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    model = models.mlp(tmp / "mlp.onnx")
    ref = np.random.default_rng(1).standard_normal((20_000, 20)).astype(np.float32)
    Profile.fit(ref, dtypes="float32").save(tmp / "profile.json")
    x = np.random.default_rng(0).standard_normal((1, 20)).astype(np.float32)
    body, headers = v2_binary_body(x)
    (tmp / "body.bin").write_bytes(body)
    port = free_port()
    cmd = mlrt_command(
        "serve", f"mlp={model}", "--profile", str(tmp / "profile.json"),
        "--port", str(port), "--log-level", "warning",
    )  # fmt: skip
    return cmd, Target("mlrt", port, tmp / "body.bin", [f"{k}: {v}" for k, v in headers.items()], INFER)


@contextlib.contextmanager
def serve(
    name: str, cmd: Sequence[str], port: int, logdir: Path, *, cwd: Path | None = None, timeout_s: float = 60
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server until the block ends, waiting for GET /v2/health/ready == 200; its
    output goes to a log file in `logdir`."""
    log = logdir / f"{name.replace(' ', '_').replace('=', '')}.log"
    try:
        with running_server(
            cmd, f"http://127.0.0.1:{port}/v2/health/ready", log=log, cwd=cwd, timeout_s=timeout_s
        ) as proc:
            yield proc
    except ServerStartError as exc:
        raise RuntimeError(f"{name}: {exc}") from None


def ready(port: int) -> bool:
    try:
        c = RawHTTP(port)
        try:
            status, _ = c.request(get_request("/v2/health/ready"))
        finally:
            c.close()
    except OSError:
        return False
    return status == 200


def tail(path: Path, n: int = 20) -> str:
    lines = path.read_text(errors="replace").splitlines()
    return "\n".join(lines[-n:])


def raise_fd_limit(need: int) -> str | None:
    """wrk and the server each hold one socket per connection; children inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if hard != resource.RLIM_INFINITY and hard < need:
        return f"open-file limit {hard} is below {need}; concurrency {OVERLOAD_CONCURRENCY} may fail"
    return None


# -- MLServer ------------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlrt-bench"


def ensure_mlserver(venv: Path, say) -> tuple[Path | None, str]:
    """Install MLServer into its own venv once; return (mlserver executable, note)."""
    exe = venv / "bin" / "mlserver"
    stamp = venv / ".mlrt-bench-ok"
    if stamp.exists() and exe.exists():
        return exe, f"MLServer {MLSERVER_VERSION} (its own venv)"
    say(f"installing MLServer {MLSERVER_VERSION} into {venv} (once; takes a minute or so) ...")
    venv.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
        py = str(venv / "bin" / "python")
        subprocess.run(
            [py, "-m", "pip", "install", "-q", *MLSERVER_PINS], check=True, capture_output=True, timeout=1200
        )
        subprocess.run(
            [py, "-c", "import mlserver, onnxruntime, uvloop"], check=True, capture_output=True, timeout=120
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        err = getattr(exc, "stderr", None) or b""
        if isinstance(err, bytes):
            err = err.decode(errors="replace")
        last = " | ".join(err.strip().splitlines()[-3:])
        return None, f"MLServer could not be installed ({type(exc).__name__}: {last or exc}); skipped"
    stamp.write_text(" ".join(MLSERVER_PINS) + "\n")
    return exe, f"MLServer {MLSERVER_VERSION} (its own venv, installed by this run)"


def mlserver_repo(
    root: Path, model_path: Path, batch_size: int, batch_time_s: float, parallel_workers: int | None
) -> tuple[Path, int]:
    """A MLServer model repository for the bench MLP; returns (root, http port). A batch size
    of 0 leaves adaptive batching off (MLServer's default), parallel_workers None its default."""
    port = free_port()
    mdir = root / MODEL
    mdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(model_path, mdir / "mlp.onnx")
    (mdir / "onnx_model.py").write_text(MLSERVER_MODEL_PY)
    model_settings: dict[str, object] = {
        "name": MODEL,
        "implementation": "onnx_model.OnnxModel",
        "parameters": {"uri": "./mlp.onnx"},
    }
    if batch_size:
        model_settings.update(max_batch_size=batch_size, max_batch_time=batch_time_s)
    (mdir / "model-settings.json").write_text(json.dumps(model_settings))
    settings: dict[str, object] = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "debug": False,  # no access log per request
    }
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers
    (root / "settings.json").write_text(json.dumps(settings))
    return root, port


# -- load ----------------------------------------------------------------------------------------


def wrk(target: Target, connections: int, duration_s: float) -> dict:
    """One wrk run; returns post.lua's JSON summary plus ok_rps (2xx answers per second)."""
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{target.port}{target.path}",
        "--",
        str(target.body),
        *target.headers,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    for line in out.stdout.splitlines():
        if line.startswith("MLRT_WRK "):
            res = json.loads(line[len("MLRT_WRK ") :])
            break
    else:
        raise RuntimeError(f"wrk gave no summary (rc {out.returncode}): {out.stderr.strip() or out.stdout}")
    secs = res["duration_us"] / 1e6
    res["ok_rps"] = (res["requests"] - res["non_2xx"]) / secs
    res["socket_errors"] = res["connect_errors"] + res["read_errors"] + res["write_errors"]
    return res


def check_answer(target: Target) -> None:
    """One request by hand before timing anything: a system that errors is not measured."""
    body = target.body.read_bytes()
    headers = dict(h.split(": ", 1) for h in target.headers)
    c = RawHTTP(target.port)
    try:
        status, resp = c.request(post_request(target.path, body, headers))
    finally:
        c.close()
    if status != 200:
        raise RuntimeError(f"{target.name}: status {status}: {resp[:300]!r}")


# -- report --------------------------------------------------------------------------------------


def med(xs: Sequence[float]) -> float:
    return float(np.median(xs)) if len(xs) else float("nan")


def ratio(per_round: dict[int, dict[str, list[dict]]], c: int, a: str, b: str, key: str) -> float | None:
    """Median over rounds of a's figure / b's figure, both from the same round."""
    runs = per_round.get(c, {})
    if a not in runs or b not in runs:
        return None
    vals = [x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True) if y[key] > 0]
    return med(vals) if vals else None


def delta(per_round: dict[int, dict[str, list[dict]]], c: int, a: str, b: str, key: str) -> float | None:
    """Median over rounds of a[key] - b[key], both measured in the same round."""
    runs_a, runs_b = per_round.get(c, {}).get(a), per_round.get(c, {}).get(b)
    if not runs_a or not runs_b:
        return None
    return med([x[key] - y[key] for x, y in zip(runs_a, runs_b, strict=False)])


def metrics_text(port: int) -> str:
    """The server's /metrics page, over one raw connection."""
    c = RawHTTP(port)
    try:
        status, body = c.request(get_request("/metrics"))
    finally:
        c.close()
    if status != 200:
        raise RuntimeError(f"GET /metrics answered {status}")
    return body.decode()


def server_counts(port: int) -> dict:
    """mlrt's own counters: mlrt_request_duration_seconds buckets (upper bound ->
    cumulative count) and mlrt_requests_total by status code."""
    buckets: dict[float, float] = {}
    codes: dict[int, float] = {}
    for line in metrics_text(port).splitlines():
        if line.startswith("mlrt_request_duration_seconds_bucket{"):
            le = float(line.split('le="', 1)[1].split('"', 1)[0])
            buckets[le] = buckets.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("mlrt_requests_total{"):
            code = int(line.split('code="', 1)[1].split('"', 1)[0])
            codes[code] = codes.get(code, 0.0) + float(line.rsplit(" ", 1)[1])
    return {"buckets": buckets, "codes": codes}


def counts_delta(before: dict, after: dict) -> dict:
    """Server-side answers during a run: by status code, the share within each duration
    bound, and the smallest bucket bound holding 99% of them (arrival to answer)."""
    counts = {le: after["buckets"][le] - before["buckets"].get(le, 0.0) for le in sorted(after["buckets"])}
    total = counts.get(float("inf"), 0.0)
    p99_bound = next((le for le, n in counts.items() if total and n >= 0.99 * total), None)
    codes = {code: int(n - before["codes"].get(code, 0.0)) for code, n in sorted(after["codes"].items())}
    return {
        "answers": total,
        "cumulative": counts,
        "p99_bound_s": p99_bound,
        "codes": {code: n for code, n in codes.items() if n},
    }


def reference_outputs(model_path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def targets_table(per_round, concurrency: Sequence[int], overload: dict | None) -> list[dict]:
    rows: list[dict] = []

    def add(what: str, value: float | None, goal: str, ok: bool | None, fmt: str = "{:.2f}") -> None:
        shown = "n/a" if value is None else fmt.format(value)
        verdict = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        rows.append({"target": what, "measured": value, "shown": shown, "goal": goal, "verdict": verdict})

    c1 = per_round.get(1, {}).get("mlrt")
    p50 = med([r["p50_us"] / 1e3 for r in c1]) if c1 else None
    add("c=1    mlrt p50 (ms)", p50, "< 1 ms", None if p50 is None else p50 < 1.0, "{:.3f}")
    cpu = med([r["cpu_us_per_request"] for r in c1]) if c1 and "cpu_us_per_request" in c1[0] else None
    add("c=1    mlrt server CPU per request (µs)", cpu, "<= 70", None if cpu is None else cpu <= 70, "{:.1f}")
    c64 = per_round.get(64, {}).get("mlrt")
    tail = med([r["p99_us"] / r["p50_us"] for r in c64 if r["p50_us"] > 0]) if c64 else None
    add("c=64   mlrt p99 / p50", tail, "<= 4", None if tail is None else tail <= 4.0)
    r = ratio(per_round, 64, "mlrt", "naive", "ok_rps")
    add("c=64   mlrt req/s / naive req/s", r, ">= 2", None if r is None else r >= 2.0)
    r = ratio(per_round, 64, "mlrt", "floor", "ok_rps")
    add("c=64   mlrt req/s / floor req/s", r, ">= 0.9", None if r is None else r >= 0.9)
    r = ratio(per_round, 64, "mlrt", "wire floor", "ok_rps")
    add("c=64   mlrt req/s / wire floor req/s", r, ">= 0.4", None if r is None else r >= 0.4)
    r = ratio(per_round, 64, "mlrt drift", "mlrt", "ok_rps")
    add("c=64   drift on / off req/s", r, ">= 0.97", None if r is None else r >= 0.97)
    d = delta(per_round, 1, "mlrt drift", "mlrt", "p50_us")
    add("c=1    drift on - off p50 (µs)", d, "< 5 µs", None if d is None else d < 5.0, "{:+.1f}")
    for c in concurrency:
        r = ratio(per_round, c, "mlrt", "mlserver best", "ok_rps")
        add(f"c={c:<4} mlrt req/s / MLServer best req/s", r, ">= 10", None if r is None else r >= 10.0)
    if overload is not None:
        res = overload["wrk"]
        codes = overload["server_side"]["codes"]
        # wrk stops mid-flight, so the server may have answered a few more than wrk counted.
        non_200 = sum(n for code, n in codes.items() if code != 200)
        agree = non_200 >= res["non_2xx"] and sum(codes.values()) >= res["requests"]
        clean = set(codes) <= {200, 503} and agree and res["socket_errors"] == 0 and res["timeouts"] == 0
        shown = " ".join(f"{k}:{v}" for k, v in sorted(codes.items()))
        if res["socket_errors"] or res["timeouts"]:
            shown += f" sock-err:{res['socket_errors']} timeouts:{res['timeouts']}"
        rows.append(
            {
                "target": f"c={OVERLOAD_CONCURRENCY} statuses (only 200/503)",
                "measured": codes,
                "shown": shown,
                "goal": "200, 503 only",
                "verdict": "PASS" if clean else "FAIL",
            }
        )
        bound = res["p99_2xx_bound_us"] / 1e3 if res["p99_2xx_bound_us"] >= 0 else None
        dl = overload["deadline_ms"]
        add(
            f"c={OVERLOAD_CONCURRENCY} p99 of 200s, ms (upper bound)",
            bound,
            f"< {dl:g} ms",
            None if bound is None else bound < dl,
            "{:.1f}",
        )
        fl = overload["floor"]["p99_us"] / 1e3
        add(f"c={OVERLOAD_CONCURRENCY} HTTP floor p99, ms (control)", fl, "(same stack)", None, "{:.1f}")
        srv = overload["server_side"]["p99_bound_s"]
        srv_ms = None if srv is None else srv * 1e3
        add(
            f"c={OVERLOAD_CONCURRENCY} p99 in the server, ms (bound)",
            srv_ms,
            f"<= {dl:g} ms",  # a bucket bound: the histogram cannot say finer
            None if srv_ms is None else srv_ms <= dl,
            "{:g}",
        )
        ok = overload["ready_after"]
        rows.append(
            {
                "target": f"c={OVERLOAD_CONCURRENCY} /v2/health/ready afterwards",
                "measured": ok,
                "shown": "200" if ok else "not ready",
                "goal": "200",
                "verdict": "PASS" if ok else "FAIL",
            }
        )
    return rows


def with_mlserver_best(per_round: dict[int, dict[str, list[dict]]]) -> dict[int, dict[str, list[dict]]]:
    """`per_round` plus "mlserver best": in each round, the MLServer configuration that
    answered the most (its run, with "config" naming it)."""
    out: dict[int, dict[str, list[dict]]] = {}
    for c, systems in per_round.items():
        out[c] = dict(systems)
        configs = [name for name in MLSERVER_CONFIGS if systems.get(name)]
        if configs:
            best = []
            for runs in zip(*(systems[name] for name in configs), strict=True):
                i = max(range(len(runs)), key=lambda k: runs[k]["ok_rps"])
                best.append({**runs[i], "config": configs[i]})
            out[c]["mlserver best"] = best
    return out


def markdown(saved: dict, name: str = "serving") -> str:
    """A saved run's tables (bench/_results.py's layout) in Markdown."""
    res = saved["results"]
    per_round = with_mlserver_best({int(c): v for c, v in res["per_round"].items()})
    concurrency = sorted(per_round)
    overload = res.get("overload")
    if overload is not None:  # JSON made the status codes strings
        codes = {int(k): v for k, v in overload["server_side"]["codes"].items()}
        overload = {**overload, "server_side": {**overload["server_side"], "codes": codes}}
    s = saved["settings"]
    lines = [
        "| c | system | 2xx/s [lowest-highest round] | p50 ms | p99 ms | server CPU µs/request | "
        "non-2xx, socket errors | / wire floor | / floor | / naive | / MLServer best | / MLServer default |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in concurrency:
        for system, runs in per_round[c].items():
            if not runs:
                continue
            rps = [r["ok_rps"] for r in runs]
            cells = []
            for other in ("wire floor", "floor", "naive", "mlserver best", "mlserver default"):
                mine = system == other or (other == "mlserver best" and system in MLSERVER_CONFIGS)
                r = None if mine else ratio(per_round, c, system, other, "ok_rps")
                cells.append("" if r is None else f"{r:.2f}")
            label = system
            if system == "mlserver best":
                won = sorted({r["config"] for r in runs})
                label = f"mlserver best ({', '.join(won)})"
            errors = sum(r["non_2xx"] for r in runs), sum(r["socket_errors"] + r["timeouts"] for r in runs)
            p50 = med([r["p50_us"] / 1e3 for r in runs])
            p99 = med([r["p99_us"] / 1e3 for r in runs])
            cpu = [r["cpu_us_per_request"] for r in runs if "cpu_us_per_request" in r]
            cpu_cell = spread(cpu, ".1f") if cpu else "n/a"
            lines.append(
                f"| {c} | {label} | {med(rps):,.0f} [{min(rps):,.0f}-{max(rps):,.0f}] | {p50:.3f} "
                f"| {p99:.2f} | {cpu_cell} | {errors[0]}, {errors[1]} | {' | '.join(cells)} |"
            )
    lines += [
        "",
        f"wrk -t1, {s['rounds']} rounds x {s['duration_s']:g} s per system per concurrency, order rotated; "
        "medians of per-round figures; ratio columns: medians of per-round req/s ratios. "
        f"{res.get('mlserver_note', '')}. nginx floor: {s.get('nginx') or 'nginx not installed, not run'}.",
    ]
    if overload is not None:
        w, srv, fl = overload["wrk"], overload["server_side"], overload["floor"]
        dl_s = overload["deadline_ms"] / 1e3
        within = next((n for le, n in sorted((float(k), v) for k, v in srv["cumulative"].items())
                       if le >= dl_s), 0.0)  # fmt: skip
        bound = srv["p99_bound_s"]
        lines += [
            "",
            f"Overload: mlrt `--max-queue-rows {overload['max_queue_rows']}`, c={OVERLOAD_CONCURRENCY}, "
            f"every request with a {overload['deadline_ms']:g} ms V2 `timeout`, "
            f"{overload['duration_s']:g} s: "
            f"{w['requests']:,} answers seen by wrk, the server counted {srv['codes']} (by status), "
            f"{w['ok_rps']:,.0f} 200s/s, p50 {w['p50_us'] / 1e3:.1f} ms, p99 of all answers "
            f"{w['p99_us'] / 1e3:.1f} ms, slowest {w['max_us'] / 1e3:.1f} ms; mlrt's own request-duration "
            f"histogram: {100 * within / max(srv['answers'], 1):.2f}% within the deadline, p99 <= "
            f"{'n/a' if bound is None else f'{bound * 1e3:g} ms'}; ready afterwards: "
            f"{'yes' if overload['ready_after'] else 'NO'}. Control, the do-nothing floor at the same "
            f"load: {fl['ok_rps']:,.0f} req/s, p50 {fl['p50_us'] / 1e3:.1f} ms, "
            f"p99 {fl['p99_us'] / 1e3:.1f} ms, slowest {fl['max_us'] / 1e3:.1f} ms.",
        ]
    lines += ["", "| target | measured | goal | verdict |", "|---|---|---|---|"]
    for row in targets_table(per_round, concurrency, overload):
        lines.append(f"| {row['target'].strip()} | {row['shown']} | {row['goal']} | {row['verdict']} |")
    return "\n".join(lines) + "\n"


# -- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    from ._results import Run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per system per round")
    p.add_argument("--concurrency", default="1,8,64,256", help="comma-separated connection counts")
    p.add_argument("--overload-duration", type=float, default=10.0)
    p.add_argument("--overload-queue-rows", type=int, default=256)
    p.add_argument("--deadline-ms", type=float, default=200.0, help="V2 'timeout' sent in the overload run")
    p.add_argument("--no-overload", action="store_true")
    p.add_argument("--no-mlserver", action="store_true")
    p.add_argument("--mlserver-venv", type=Path, default=None, help=f"default: {cache_dir()}/mlserver-*")
    p.add_argument("--mlserver-batch-size", type=int, default=64, help="for mlserver inproc+ab")
    p.add_argument("--mlserver-batch-time-ms", type=float, default=1.0, help="for mlserver inproc+ab")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round x 1 s, c=1,64, 3 s overload")
    _results.json_option(p)
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.concurrency, args.overload_duration = 1, 1.0, "1,64", 3.0
    concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    settings = {
        "rounds": args.rounds, "duration_s": args.duration, "concurrency": concurrency,
        "overload": None if args.no_overload else {"duration_s": args.overload_duration,
                                                   "queue_rows": args.overload_queue_rows,
                                                   "deadline_ms": args.deadline_ms},
        "mlserver": None if args.no_mlserver else {"version": MLSERVER_VERSION,
                                                   "batch_size": args.mlserver_batch_size,
                                                   "batch_time_ms": args.mlserver_batch_time_ms},
        "load_generator": "wrk -t1 + bench/wrk/post.lua (closed loop, keep-alive)",
        "payload": "one row of the bench MLP (20 FP32 -> 64 -> 32 -> 2), V2 JSON unless said",
        "nginx": nginx_floor.available(),  # its version line, or None: no nginx floor
    }  # fmt: skip
    measured = ("runtime", "native", "setup.py", "bench/floor.py", "bench/wire_floor.py", "bench/naive.py",
                "bench/nginx_floor.py", "bench/models.py", "bench/wrk")  # fmt: skip
    run = Run("serving", SCRIPT_VERSION, settings, argv=argv, measured=measured)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if shutil.which("wrk") is None:
        sys.exit("wrk is not on PATH; install it with `apt-get install -y wrk` (Debian/Ubuntu)")
    fd_note = raise_fd_limit(max(4096, 2 * OVERLOAD_CONCURRENCY + 256))
    if fd_note:
        say(fd_note)

    tmp = Path(tempfile.mkdtemp(prefix="mlrt-bench-serving-"))
    model_path = models.mlp(tmp / "mlp.onnx")
    x = np.random.default_rng(0).standard_normal((1, 20)).astype(np.float32)
    json_body = tmp / "v2.json"
    json_body.write_bytes(v2_json_body(x))
    bin_bytes, bin_headers = v2_binary_body(x)
    bin_body = tmp / "v2.bin"
    bin_body.write_bytes(bin_bytes)
    deadline_us = int(args.deadline_ms * 1000)
    doc = json.loads(json_body.read_bytes())
    doc["parameters"] = {"timeout": deadline_us}
    deadline_body = tmp / "v2_deadline.json"
    deadline_body.write_bytes(json.dumps(doc).encode())
    jh = ["Content-Type: application/json"]
    bh = ["Content-Type: application/octet-stream", *(f"{k}: {v}" for k, v in bin_headers.items())]

    py = sys.executable
    mlrt = mlrt_command("serve", f"{MODEL}={model_path}", "--log-level", "warning", "--port")
    profile_path = tmp / "profile.json"
    ref = np.random.default_rng(1).standard_normal((20_000, 20)).astype(np.float32)
    Profile.fit(ref, outputs=reference_outputs(model_path, ref)).save(profile_path)
    ports = {k: free_port() for k in ("mlrt", "mlrt mbs=1", "naive", "floor", "wire floor")}
    cmds = {
        # The same process serves the model twice, once with monitoring: on and off compare
        # within one process, free of the few percent two processes differ by.
        "mlrt": [*mlrt, str(ports["mlrt"]), f"{DRIFT_MODEL}={model_path}", "--profile",
                 f"{DRIFT_MODEL}={profile_path}"],  # fmt: skip
        "mlrt mbs=1": [*mlrt, str(ports["mlrt mbs=1"]), "--max-batch-size", "1"],
        "naive": [py, "-m", "bench.naive", str(model_path), "--port", str(ports["naive"])],
        "floor": [py, "-m", "bench.floor", "--port", str(ports["floor"])],
        "wire floor": [py, "-m", "bench.wire_floor", "--port", str(ports["wire floor"])],
    }
    nginx = settings["nginx"]
    if nginx is not None:
        ports["nginx floor"] = free_port()
        cmds["nginx floor"] = nginx_floor.command(tmp / "nginx", ports["nginx floor"])
    else:
        say("nginx is not on PATH: no nginx floor in this run (Debian: apt-get install nginx-light)")
    # (name, command, port, working directory, seconds to become ready)
    servers: list[tuple[str, list[str], int, Path | None, float]] = [
        (name, cmd, ports[name], None, 60) for name, cmd in cmds.items()
    ]
    targets = [
        Target("mlrt", ports["mlrt"], json_body, jh),
        Target("mlrt binary", ports["mlrt"], bin_body, bh),
        Target("mlrt mbs=1", ports["mlrt mbs=1"], json_body, jh),
        Target("mlrt drift", ports["mlrt"], json_body, jh, path=f"/v2/models/{DRIFT_MODEL}/infer"),
        Target("naive", ports["naive"], json_body, jh),
        Target("floor", ports["floor"], json_body, jh),
        Target("wire floor", ports["wire floor"], json_body, jh),
        *([Target("nginx floor", ports["nginx floor"], json_body, jh)] if nginx is not None else []),
    ]

    mlserver_note = "MLServer: skipped (--no-mlserver)"
    if not args.no_mlserver:
        venv = args.mlserver_venv or cache_dir() / f"mlserver-{MLSERVER_VERSION}"
        exe, mlserver_note = ensure_mlserver(venv, say)
        if exe is not None:
            for name, (workers, batching) in MLSERVER_CONFIGS.items():
                root, mport = mlserver_repo(
                    tmp / name.replace(" ", "_").replace("+", "_"), model_path,
                    args.mlserver_batch_size if batching else 0, args.mlserver_batch_time_ms / 1e3, workers,
                )  # fmt: skip
                servers.append((name, [str(exe), "start", str(root)], mport, root, 180))
                targets.append(Target(name, mport, json_body, jh))
            mlserver_note += (
                f"; mlserver inproc+ab: adaptive batching max_batch_size {args.mlserver_batch_size}, "
                f"max_batch_time {args.mlserver_batch_time_ms:g} ms"
            )
    say(mlserver_note)

    per_round: dict[int, dict[str, list[dict]]] = {c: {t.name: [] for t in targets} for c in concurrency}
    pids: dict[int, int] = {}  # port -> the server's process
    with contextlib.ExitStack() as stack:
        for name, cmd, port, cwd, timeout_s in servers:
            say(f"starting {name} on port {port}")
            try:
                proc = stack.enter_context(serve(name, cmd, port, tmp, cwd=cwd, timeout_s=timeout_s))
                pids[port] = proc.pid
            except RuntimeError as exc:
                if name not in MLSERVER_CONFIGS:
                    raise
                mlserver_note += f"; {name} failed to start, skipped: {exc}"
                say(mlserver_note)
                targets = [t for t in targets if t.name != name]
                for c in concurrency:
                    per_round[c].pop(name, None)
        for t in targets:
            check_answer(t)
            wrk(t, 8, 1.0)  # warm up every path
        names = [t.name for t in targets]
        by_name = {t.name: t for t in targets}
        total = len(concurrency) * args.rounds * len(targets) * args.duration
        say(f"measuring: about {total / 60:.1f} min")
        for ci, c in enumerate(concurrency):
            for r in range(args.rounds):
                k = (r + ci) % len(names)
                for name in names[k:] + names[:k]:
                    pid = pids[by_name[name].port]
                    cpu = cpu_ns(pid)
                    res = wrk(by_name[name], c, args.duration)
                    # The server's CPU (all threads, its workers too) per request answered.
                    res["cpu_us_per_request"] = (cpu_ns(pid) - cpu) / 1e3 / max(1, res["requests"])
                    per_round[c][name].append(res)
                    say(
                        f"c={c} round {r + 1}/{args.rounds} {name}: {res['ok_rps']:,.0f} req/s, "
                        f"p50 {res['p50_us'] / 1e3:.3f} ms, p99 {res['p99_us'] / 1e3:.2f} ms, "
                        f"server CPU {res['cpu_us_per_request']:.1f} µs/request"
                        + (f", non-2xx {res['non_2xx']}" if res["non_2xx"] else "")
                        + (f", socket errors {res['socket_errors']}" if res["socket_errors"] else "")
                    )

    overload = None
    if not args.no_overload:
        port = free_port()
        cmd = [*mlrt, str(port), "--max-queue-rows", str(args.overload_queue_rows)]
        say(f"overload: c={OVERLOAD_CONCURRENCY} against mlrt --max-queue-rows {args.overload_queue_rows}")
        with serve("mlrt overload", cmd, port, tmp) as proc:
            t = Target("mlrt overload", port, deadline_body, jh)
            check_answer(t)
            before = server_counts(port)
            res = wrk(t, OVERLOAD_CONCURRENCY, args.overload_duration)
            server_side = counts_delta(before, server_counts(port))
            ready_after = proc.poll() is None and ready(port)
            try:
                check_answer(t)  # and it still answers
            except (OSError, RuntimeError) as exc:
                say(f"overload: mlrt does not answer afterwards: {exc}")
                ready_after = False
        # The same load on the do-nothing floor: what the HTTP stack alone does at this
        # concurrency (a closed loop's latency is at least connections / throughput).
        fport = free_port()
        say(f"overload control: c={OVERLOAD_CONCURRENCY} against the HTTP floor")
        with serve("floor overload", [py, "-m", "bench.floor", "--port", str(fport)], fport, tmp):
            floor_t = Target("floor", fport, deadline_body, jh)
            floor_res = wrk(floor_t, OVERLOAD_CONCURRENCY, args.overload_duration)
        overload = {
            "max_queue_rows": args.overload_queue_rows,
            "deadline_ms": args.deadline_ms,
            "duration_s": args.overload_duration,
            "wrk": res,
            "server_side": server_side,
            "floor": floor_res,
            "ready_after": ready_after,
        }

    results = {
        "per_round": {str(c): v for c, v in per_round.items()},
        "overload": overload,
        "mlserver_note": mlserver_note,
    }
    results = json.loads(json.dumps(results, default=str))  # as saved: JSON's types, read back
    print(markdown(run.envelope(results)), end="")
    say(textwrap.shorten(f"server logs: {tmp}", 200))
    if args.json is not None:
        run.save(results, args.json or None)


if __name__ == "__main__":
    main()
