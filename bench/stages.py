"""Where the server's CPU goes, stage by stage, at concurrency 1 and 64 (issue 24).

    python -m bench.stages [--rounds 8] [--seconds 5] [--concurrency 1,64]
                           [--baseline-ref REF | --baseline DIR] [--json [PATH]]

`mlrt serve` runs the bench MLP (20 FP32 features, V2 JSON, its defaults) under
bench/stage_sampler.py, a sampler driven by the process's CPU time, while wrk (one thread,
bench/wrk/post.lua) drives it at each concurrency for --rounds rounds of --seconds. Per
round the script reads the server's CPU time (every thread, from /proc/PID/task/*/schedstat)
and the answers, so "CPU µs per request" is the whole process's; each sample is then put in
one stage by the innermost frame that names one (STAGES below), and a stage's µs per request
is its share of the samples times that CPU per request. Garbage collection is timed on its
own (gc.callbacks) and shown beside the stages it interrupted.

With --baseline-ref (a commit, built in a temporary folder as bench.ab does) or --baseline
(a checkout built in place), the same is measured of that code in the same run, rounds
interleaved, so a change's effect is shown stage by stage.

What a stage holds, and what the sampler cannot split (bench/stage_sampler.py says why):
time in uvloop's C code between callbacks (epoll, the socket read, httptools' parser) is
charged to the first Python frame after it: uvicorn's data_received (in "read + parse") or
the loop itself ("loop"); the socket write is in "write", onnxruntime's call in "run".
`perf record` splits the kernel's part further; docs/performance.md gives one such split.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime._child import running_server

from . import _harness, _results, models
from ._harness import cpu_ns, free_port, v2_json_body
from .serving import Target, wrk

#: Raised when a change makes earlier results incomparable (bench/_results.py). 2: the direct
#: path's DirectRequest.write (held answers are written from it) counts as "write". 3: the
#: answer's encode_answer and encode_document count as "encode" (encode_document counted as
#: "decode" before), and the head's head_block and plain_message as "write".
SCRIPT_VERSION = 3

#: (stage, file suffix, function names or None for all): the first rule matching a frame,
#: innermost frame first, names its sample's stage. Frames of generated code (dataclass
#: __init__) are passed over to their caller.
_CODEC_ENCODE = (
    "InferResponse.", "tensor_bytes", "_json_bytes_data",
    "encode_response", "encode_answer", "encode_document",
)
STAGES: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("write", "runtime/server/uvicorn_http.py",
     ("DirectRequest.respond", "DirectRequest.write", "_default_head")),
    ("write", "runtime/server/uvicorn_http.py", ("_CoalescingTransport.", "_HeldWrites.")),
    ("write", "runtime/server/http.py", ("head_lines", "head_block", "plain_message", "send_answer")),
    ("encode", "runtime/server/codec.py", _CODEC_ENCODE),
    ("encode", "runtime/server/http.py", ("HttpWire.encode",)),
    ("encode", "runtime/server/pipeline.py", ("Call.response",)),
    ("encode", "runtime/server/body.py", ("compress",)),
    ("decode", "runtime/server/codec.py", None),
    ("decode", "runtime/server/http.py", ("HttpWire.decode", "_format_of", "_header_length")),
    ("decode", "runtime/server/pipeline.py", ("Pipeline.decode",)),
    ("decode", "runtime/models/base.py", None),
    ("decode", "runtime/convert.py", None),
    ("decode", "runtime/datatypes.py", None),
    ("monitor", "runtime/monitor/", None),
    ("metrics", "runtime/metrics/", None),
    ("metrics", "runtime/loading.py", None),  # the batcher's on_batch, into the metrics
    ("run (model)", "runtime/models/", None),
    ("admit + batch", "runtime/batching.py", None),
    ("admit + batch", "runtime/server/pipeline.py", ("Pipeline.run", "timeout_s", "Pipeline._alone")),
    ("resolve", "runtime/server/pipeline.py", ("Pipeline.resolve", "Pipeline._endpoint")),
    ("resolve", "runtime/repository.py", None),
    ("resolve", "runtime/traffic/", None),
    ("pipeline (begin, answer, count)", "runtime/server/pipeline.py", None),
    ("connection", "runtime/server/uvicorn_http.py", ("MlrtHttpProtocol.direct_done",
                                                      "MlrtHttpProtocol.on_response_complete")),
    ("connection", "runtime/server/limits.py", None),
    ("read + parse", "runtime/server/uvicorn_http.py", None),
    ("read + parse", "uvicorn/protocols/http/httptools_impl.py",
     ("HttpToolsProtocol.data_received", "HttpToolsProtocol.on_")),
    ("connection", "uvicorn/protocols/http/httptools_impl.py", None),
    ("loop", "asyncio/runners.py", ("Runner.run",)),
)  # fmt: skip
ORDER = (
    "read + parse", "resolve", "decode", "admit + batch", "run (model)", "monitor", "encode", "write",
    "pipeline (begin, answer, count)", "metrics", "connection", "loop", "other",
)  # fmt: skip


def stage_of(stack: list[list[str]]) -> str:
    """The stage of one sample, from its stack of (file, function), innermost first."""
    for filename, func in stack:
        if filename.startswith("<"):
            continue  # generated code (a dataclass's __init__): its caller says what it is for
        path = filename.replace(os.sep, "/")
        for stage, suffix, names in STAGES:
            if suffix in path and (names is None or any(func.startswith(n) for n in names)):
                return stage
    return "other"


def _read_dump(path: Path, pid: int, timeout_s: float = 10.0) -> dict[str, Any]:
    """Ask the sampler for its counts so far (SIGUSR1) and read them."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.02)
    raise RuntimeError(f"the sampler in process {pid} wrote nothing to {path}")


def measure(roots: dict[str, Path], concurrency: list[int], rounds: int, seconds: float, tmp: Path) -> dict:
    model = models.mlp(tmp / "mlp.onnx")
    x = np.random.default_rng(0).standard_normal((1, 20)).astype(np.float32)
    (tmp / "body.json").write_bytes(v2_json_body(x))
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        servers: dict[str, tuple[Target, int, Path]] = {}
        for name, root in roots.items():
            port = free_port()
            dump = tmp / f"{name}-samples.json"
            cmd = [sys.executable, "-m", "bench.stage_sampler", str(dump), "--root", str(root), "--",
                   "serve", f"mlp={model}", "--port", str(port), "--log-level", "warning"]  # fmt: skip
            ready = f"http://127.0.0.1:{port}/v2/health/ready"
            proc = stack.enter_context(running_server(cmd, ready, cwd=_results.ROOT))
            target = Target(name, port, tmp / "body.json", ["content-type: application/json"])
            wrk(target, 1, 1)  # warm-up: first-request imports and caches
            servers[name] = (target, proc.pid, dump)
        names = list(servers)
        for c in concurrency:
            per: dict[str, dict[str, Any]] = {
                n: {"rounds": [], "stages": {}, "gc": {}, "samples": 0} for n in names
            }
            for r in range(rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    target, pid, dump = servers[name]
                    _read_dump(dump, pid)  # starts the count over
                    before = cpu_ns(pid)
                    res = wrk(target, c, seconds)
                    cpu = cpu_ns(pid) - before
                    doc = _read_dump(dump, pid)
                    row = per[name]
                    row["rounds"].append({
                        "requests": res["requests"], "ok_rps": res["ok_rps"], "non_2xx": res["non_2xx"],
                        "p50_us": res["p50_us"], "p99_us": res["p99_us"], "cpu_us_per_request":
                        cpu / 1e3 / max(1, res["requests"]), "samples": doc["samples"],
                    })  # fmt: skip
                    row["samples"] += doc["samples"]
                    for s in doc["stacks"]:
                        stage = stage_of(s["stack"])
                        row["stages"][stage] = row["stages"].get(stage, 0) + s["n"]
                    for gen, g in doc["gc"].items():
                        acc = row["gc"].setdefault(gen, {"count": 0, "seconds": 0.0, "longest_s": 0.0})
                        acc["count"] += g["count"]
                        acc["seconds"] += g["seconds"]
                        acc["longest_s"] = max(acc["longest_s"], g["longest_s"])
                    print(f"[stages] c={c} {name} round {r + 1}: {res['ok_rps']:,.0f} req/s, "
                          f"{row['rounds'][-1]['cpu_us_per_request']:.1f} CPU µs/request", file=sys.stderr,
                          flush=True)  # fmt: skip
            out[str(c)] = per
    return out


def markdown(saved: dict[str, Any], name: str = "stages") -> str:
    res = saved["results"]
    s = saved["settings"]
    systems = s["systems"]
    lines: list[str] = []
    for c, per in res.items():
        cpu = {n: float(np.median([r["cpu_us_per_request"] for r in per[n]["rounds"]])) for n in systems}
        head = " | ".join(f"{n}: share | {n}: µs/request" for n in systems)
        lines += [f"**c={c}**", "", f"| stage | {head} |", "|---|" + "---|---|" * len(systems)]
        for stage in ORDER:
            cells = []
            shown = False
            for n in systems:
                total = per[n]["samples"] or 1
                share = per[n]["stages"].get(stage, 0) / total
                shown = shown or share > 0
                cells.append(f"{100 * share:.1f}% | {share * cpu[n]:.1f}")
            if shown:
                lines.append(f"| {stage} | {' | '.join(cells)} |")
        for label, cell in _summary_rows(per).items():
            lines.append(f"| {label} | " + " | ".join(f"| {cell(n)}" for n in systems) + " |")
        lines.append("")
    lines += [
        f"{s['rounds']} rounds of {s['seconds']:g} s per system and concurrency, systems interleaved; "
        "wrk -t1, V2 JSON, one row of the bench MLP. A stage's µs per request: its share of the CPU-time "
        "samples (bench/stage_sampler.py) times the process's CPU per request, the median over rounds. "
        f"Systems: {', '.join(f'{n} ({systems[n]})' for n in systems)}. Idle policy: {s['idle_policy']}.",
    ]
    return "\n".join(lines) + "\n"


def _summary_rows(per: dict[str, Any]) -> dict[str, Any]:
    """The rows under the stages: label -> the cell for a system."""

    def median(n: str, key: str) -> float:
        return float(np.median([r[key] for r in per[n]["rounds"]]))

    return {
        "CPU µs per request (all threads) [lowest-highest round]":
            lambda n: _results.spread([r["cpu_us_per_request"] for r in per[n]["rounds"]], ".1f"),
        "req/s": lambda n: _results.spread([r["ok_rps"] for r in per[n]["rounds"]], ",.0f"),
        "p50 / p99 ms (wrk)": lambda n: f"{median(n, 'p50_us') / 1e3:.3f} / {median(n, 'p99_us') / 1e3:.2f}",
        "garbage collection: µs per request, longest pause ms": lambda n: _gc_cell(per[n]),
        "samples": lambda n: f"{per[n]['samples']:,}",
    }  # fmt: skip


def _gc_cell(row: dict[str, Any]) -> str:
    requests = sum(r["requests"] for r in row["rounds"]) or 1
    seconds = sum(g["seconds"] for g in row["gc"].values())
    longest = max((g["longest_s"] for g in row["gc"].values()), default=0.0)
    return f"{seconds / requests * 1e6:.2f}, {longest * 1e3:.2f}"


def main(argv: list[str] | None = None) -> None:
    from .ab import export

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0, help="wrk seconds per system, concurrency and round")
    p.add_argument("--concurrency", default="1,64")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--baseline-ref", metavar="REF", help="also measure this commit, built for the run")
    which.add_argument("--baseline", type=Path, help="also measure this mlrt checkout, built in place")
    _results.json_option(p)
    args = p.parse_args(argv)
    if shutil.which("wrk") is None or not Path("/proc/self/task").exists():
        sys.exit("bench.stages needs wrk (apt-get install -y wrk) and Linux's /proc")
    concurrency = [int(c) for c in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="mlrt-stages-") as d:
        tmp = Path(d)
        head = _results.git("rev-parse", "--short=7", "HEAD") or "this checkout"
        roots: dict[str, Path] = {"this": _results.ROOT}
        systems = {"this": head}
        if args.baseline_ref:
            base = tmp / "baseline"
            base.mkdir()
            systems["baseline"] = export(args.baseline_ref, base)
            roots["baseline"] = base
        elif args.baseline:
            roots["baseline"] = args.baseline.resolve()
            systems["baseline"] = args.baseline.name
        settings = {
            "rounds": args.rounds, "seconds": args.seconds, "concurrency": concurrency, "systems": systems,
            "idle_policy": _harness.idle_policy(),
        }  # fmt: skip
        run = _results.Run("stages", SCRIPT_VERSION, settings, argv=argv,
                           measured=("runtime", "native", "setup.py", "bench/stage_sampler.py"))  # fmt: skip
        results = measure(roots, concurrency, args.rounds, args.seconds, tmp)
    print(markdown(run.envelope(results)), end="")
    if args.json is not None:
        run.save(results, args.json or None)


if __name__ == "__main__":
    main()
