"""bench.stages puts each CPU-time sample in the stage its frames name, and the sampler inside a
real `mlrt serve` answers SIGUSR1 with what it counted while real requests ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from bench import models
from bench._harness import cpu_ns, free_port
from bench._results import ROOT
from bench.stages import ORDER, _read_dump, stage_of
from runtime._child import running_server


def _stack(*frames: tuple[str, str]) -> list[list[str]]:
    return [list(f) for f in frames]


def test_the_innermost_named_frame_decides() -> None:
    batcher = ("x/runtime/batching.py", "Batcher._run_now")
    pipeline = ("x/runtime/server/pipeline.py", "Pipeline.run")
    model = ("x/runtime/models/onnx.py", "OnnxModel.predict")
    assert stage_of(_stack(model, batcher, pipeline)) == "run (model)"
    assert stage_of(_stack(batcher, pipeline)) == "admit + batch"
    assert stage_of(_stack(pipeline)) == "admit + batch"
    assert stage_of(_stack(("x/runtime/models/base.py", "check_inputs"), pipeline)) == "decode"
    metrics = ("x/runtime/metrics/serving.py", "PlainHistogram.observe_many")
    assert stage_of(_stack(metrics, batcher)) == "metrics"
    assert stage_of(_stack(("x/runtime/server/codec.py", "encode_response"))) == "encode"
    assert stage_of(_stack(("x/runtime/server/codec.py", "encode_answer"))) == "encode"
    assert stage_of(_stack(("x/runtime/server/codec.py", "encode_document"))) == "encode"
    assert stage_of(_stack(("x/runtime/server/http.py", "plain_message"))) == "write"
    assert stage_of(_stack(("x/runtime/server/codec.py", "decode_request"))) == "decode"
    assert stage_of(_stack(("x/runtime/server/uvicorn_http.py", "DirectRequest.respond"))) == "write"
    assert stage_of(_stack(("x/runtime/server/uvicorn_http.py", "_HeldWrites.flush"))) == "write"
    respond = ("x/runtime/server/uvicorn_http.py", "DirectRequest.respond")
    assert stage_of(_stack(("x/runtime/server/uvicorn_http.py", "DirectRequest.write"), respond)) == "write"
    assert stage_of(_stack(("x/runtime/server/uvicorn_http.py", "MlrtHttpProtocol._direct_request"))) == (
        "read + parse"
    )
    parser = ("x/uvicorn/protocols/http/httptools_impl.py", "HttpToolsProtocol.data_received")
    assert stage_of(_stack(parser)) == "read + parse"
    assert stage_of(_stack(("/usr/lib/python3.11/asyncio/runners.py", "Runner.run"))) == "loop"
    assert stage_of(_stack(("x/somewhere.py", "f"))) == "other"


def test_generated_code_is_charged_to_its_caller() -> None:
    # A dataclass's __init__ is compiled from a string: what it builds is its caller's work.
    init = ("<string>", "__create_fn__.<locals>.__init__")
    assert stage_of(_stack(init, ("x/runtime/server/pipeline.py", "Pipeline.decode"))) == "decode"
    assert stage_of(_stack(init, ("x/runtime/server/http.py", "HttpWire.encode"))) == "encode"


def test_every_stage_a_rule_names_is_shown_in_order() -> None:
    from bench.stages import STAGES

    assert {stage for stage, _, _ in STAGES} | {"other"} == set(ORDER)


def test_the_sampler_counts_a_real_server(tmp_path: Path) -> None:
    model = models.mlp(tmp_path / "mlp.onnx")
    port = free_port()
    dump = tmp_path / "samples.json"
    cmd = [sys.executable, "-m", "bench.stage_sampler", str(dump), "--root", str(ROOT), "--",
           "serve", f"mlp={model}", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [0.5] * 20}]}
    with running_server(cmd, f"http://127.0.0.1:{port}/v2/health/ready", cwd=ROOT) as proc:
        _read_dump(dump, proc.pid)  # starts the count over
        before = cpu_ns(proc.pid)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            # Enough requests for the server to spend about a second of CPU: a few hundred
            # samples at the kernel's tick.
            while cpu_ns(proc.pid) - before < 1e9:
                for _ in range(100):
                    assert http.post("/v2/models/mlp/infer", json=body).status_code == 200
        doc = _read_dump(dump, proc.pid)
    assert doc["samples"] > 20
    assert sum(s["n"] for s in doc["stacks"]) == doc["samples"]
    stages = {stage_of(s["stack"]) for s in doc["stacks"]}
    assert stages & {"decode", "run (model)", "encode", "write", "read + parse"}, stages
    assert set(doc["gc"]) <= {"0", "1", "2"}
    json.dumps(doc)  # what bench.stages saves


def test_the_sampler_refuses_a_command_line_without_the_mlrt_part() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.stage_sampler", "out.json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "stage_sampler OUT.json" in done.stderr
