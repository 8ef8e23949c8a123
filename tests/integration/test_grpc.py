"""The V2 gRPC API of a real `mlrt serve --grpc-port` on 127.0.0.1, driven by
tritonclient.grpc unchanged: the same answers, errors, drift counts and metrics as over
HTTP, since both transports run the one infer pipeline."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from runtime.server.grpc_proto import MESSAGES, Messages
from tests.integration.drift_client import bin_totals, gauge
from tests.integration.serving import REPO_ROOT, Server, free_port, start_server, stop_server

grpc = pytest.importorskip("grpc")
tg = pytest.importorskip("tritonclient.grpc")
service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")

pytestmark = pytest.mark.integration

DEMO = REPO_ROOT / "runtime" / "demo"


def test_messages_match_tritonclients_wire_format() -> None:
    """Field numbers, types and repetition of every message, nested ones included,
    against tritonclient's generated descriptors: the wire format is what clients see."""
    mine = Messages()

    def fields(desc, path=""):
        out = {}
        for f in desc.fields:
            key = path + f.name
            out[key] = (f.number, f.type, f.is_repeated)
            if f.message_type is not None and not f.message_type.GetOptions().map_entry:
                out.update(fields(f.message_type, key + "."))
            elif f.message_type is not None:
                out.update(fields(f.message_type, key + "{}."))
        return out

    for name in MESSAGES:
        theirs = service_pb2.DESCRIPTOR.message_types_by_name[name]
        assert fields(mine.descriptors[name]) == fields(theirs), name


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    tmp = tmp_path_factory.mktemp("grpc")
    port = free_port()
    srv = start_server(
        [f"demo={DEMO / 'model.onnx'}"],
        tmp,
        ["--profile", f"demo={DEMO / 'profile.json'}", "--grpc-port", str(port)],
    )
    try:
        yield srv, port
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    with np.load(DEMO / "data.npz") as d:
        return d["features"]


def test_tritonclient_grpc_works_unchanged(server, rows: np.ndarray) -> None:
    srv, port = server
    client = tg.InferenceServerClient(f"127.0.0.1:{port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("demo")
    assert not client.is_model_ready("nosuch")
    meta = client.get_model_metadata("demo")
    assert meta.name == "demo" and [t.name for t in meta.inputs] == ["features"]
    assert list(meta.inputs[0].shape) == [-1, 30]
    assert client.get_server_metadata().name == "mlrt"

    x = rows[:7]
    inp = tg.InferInput("features", x.shape, "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer("demo", [inp], request_id="abc")
    session = ort.InferenceSession(str(DEMO / "model.onnx"), providers=["CPUExecutionProvider"])
    want_p, want_label = session.run(None, {"features": x})
    np.testing.assert_array_equal(result.as_numpy("probabilities"), want_p)
    np.testing.assert_array_equal(result.as_numpy("label"), want_label)
    response = result.get_response()
    assert response.id == "abc" and response.model_version == "1"

    # One output asked for, float64 rows (converted by the one datatype rule).
    inp64 = tg.InferInput("features", x.shape, "FP64")
    inp64.set_data_from_numpy(x.astype(np.float64))
    only = client.infer("demo", [inp64], outputs=[tg.InferRequestedOutput("label")])
    np.testing.assert_array_equal(only.as_numpy("label"), want_label)
    assert only.as_numpy("probabilities") is None


def test_errors_map_to_grpc_status_codes(server) -> None:
    srv, port = server
    client = tg.InferenceServerClient(f"127.0.0.1:{port}")
    good = tg.InferInput("features", [1, 30], "FP32")
    good.set_data_from_numpy(np.zeros((1, 30), np.float32))
    with pytest.raises(tg.InferenceServerException) as unknown:
        client.infer("nosuch", [good])
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert "models served: 'demo'" in unknown.value.message()
    bad = tg.InferInput("features", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(tg.InferenceServerException) as shape:
        client.infer("demo", [bad])
    assert shape.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "shape [1, 3]" in shape.value.message()
    with pytest.raises(tg.InferenceServerException) as version:
        client.infer("demo", [good], model_version="9")
    assert version.value.status() == "StatusCode.NOT_FOUND"
    # The server is still serving, over both transports.
    assert client.is_server_ready()
    assert httpx.get(f"{srv.url}/v2/health/ready").status_code == 200


def test_typed_contents_and_malformed_requests(server) -> None:
    """Requests tritonclient does not send but the protocol allows: values in typed
    contents fields; and raw contents that do not fit."""
    srv, port = server
    m = Messages()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    infer = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=m.ModelInferRequest.SerializeToString,
        response_deserializer=m.ModelInferResponse.FromString,
    )
    req = m.ModelInferRequest(model_name="demo")
    t = req.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    t.contents.fp32_contents.extend([0.5] * 30)
    out = infer(req, timeout=10)
    assert [o.name for o in out.outputs] == ["probabilities", "label"]
    assert len(out.raw_output_contents[0]) == 2 * 4 and len(out.raw_output_contents[1]) == 8

    short = m.ModelInferRequest(model_name="demo")
    short.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    short.raw_input_contents.append(b"\0" * 8)
    with pytest.raises(grpc.RpcError) as err:
        infer(short, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "8 bytes of raw data" in err.value.details()
    channel.close()


def test_grpc_traffic_is_batched_monitored_and_counted(server, rows: np.ndarray) -> None:
    srv, port = server
    before = httpx.get(f"{srv.url}/metrics").text
    sent_before = bin_totals(before, "demo")["mean radius"].sum()

    def call(i: int) -> np.ndarray:
        client = tg.InferenceServerClient(f"127.0.0.1:{port}")
        x = rows[i : i + 1]
        inp = tg.InferInput("features", x.shape, "FP32")
        inp.set_data_from_numpy(x)
        return client.infer("demo", [inp]).as_numpy("label")

    with ThreadPoolExecutor(8) as pool:
        labels = list(pool.map(call, range(200)))
    assert len(labels) == 200
    after = httpx.get(f"{srv.url}/metrics").text
    # Every row reached the drift monitor, as HTTP rows do.
    assert bin_totals(after, "demo")["mean radius"].sum() - sent_before == 200
    assert gauge(after, "mlrt_requests_total", model="demo", code="200") >= 200
    drift = httpx.get(f"{srv.url}/v2/models/demo/drift").json()
    assert drift["window"]["rows"] >= 200


def test_taken_grpc_port_stops_startup(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "runtime", "serve", f"demo={DEMO / 'model.onnx'}", "--port",
             str(free_port()), "--grpc-port", str(port)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == f"mlrt serve: 127.0.0.1:{port} is already in use; pick another --grpc-port"


def test_without_grpcio_the_flag_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from runtime.errors import ConfigError
    from runtime.server import grpc_server

    real_import = builtins.__import__

    def no_grpc(name, *args, **kwargs):
        if name == "grpc" or name.startswith("grpc."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_grpc)
    with pytest.raises(ConfigError, match="pip install grpcio protobuf"):
        grpc_server._grpc()


def test_sigterm_finishes_calls_in_flight_without_waiting_for_idle_connections(tmp_path: Path) -> None:
    """Shutdown keeps the grace for calls, not connections: a call in flight at SIGTERM
    gets its answer, and a client that holds an idle connection and never answers GOAWAY
    (what a closed channel's pooled subchannel does) does not hold the server for the
    whole --graceful-timeout."""
    import time

    from tests.integration.serving import PYMODELS, terminate

    port = free_port()
    srv = start_server(
        [f"sleepy={PYMODELS}:sleepy"], tmp_path, ["--grpc-port", str(port), "--graceful-timeout", "20"]
    )
    idle = socket.create_connection(("127.0.0.1", port))
    try:
        # The HTTP/2 preface and an empty SETTINGS frame, then silence.
        idle.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        client = tg.InferenceServerClient(f"127.0.0.1:{port}")
        inp = tg.InferInput("input", [1, 4], "FP64")
        inp.set_data_from_numpy(np.ones((1, 4)))
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(client.infer, "sleepy", [inp])
            time.sleep(0.4)  # the call is in the model's one-second sleep
            began = time.monotonic()
            assert terminate(srv) == 0, srv.stderr()
            took = time.monotonic() - began
            assert answer.result(timeout=5).as_numpy("predict").shape == (1,)
        client.close()
        assert took < 10, f"shutdown took {took:.1f} s of a 20 s grace with one call in flight"
    finally:
        idle.close()
        if srv.process.poll() is None:
            stop_server(srv)


def test_an_endpoint_answers_metadata_and_readiness_over_grpc(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "ep.toml"
    model = DEMO / "model.onnx"
    cfg.write_text(
        f'[[models]]\nname = "v1"\nsource = "{model}"\n[[models]]\nname = "v2"\nsource = "{model}"\n'
        '[[endpoints]]\nname = "ep"\n'
        'variants = [{ model = "v1", weight = 0 }, { model = "v2", weight = 1 }]\n'
    )
    srv = start_server([], tmp_path, ["--config", str(cfg), "--grpc-port", str(port)])
    try:
        client = tg.InferenceServerClient(f"127.0.0.1:{port}")
        assert client.is_model_ready("ep")
        meta = client.get_model_metadata("ep")
        assert meta.name == "ep" and list(meta.versions) == []
        assert [t.name for t in meta.inputs] == ["features"]
    finally:
        stop_server(srv)
