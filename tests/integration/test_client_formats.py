"""runtime.client in mlrt's own body formats (msgpack, Arrow) and over a Unix socket.

Needs the server side of issue 7: `.../infer` answering `application/msgpack` and
`application/vnd.apache.arrow.stream` bodies in kind, and `mlrt serve --uds PATH`.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import numpy as np
import pyarrow as pa
import pytest

from runtime.client import Client, ConnectionFailed, InferenceError
from tests.integration.serving import Server, start_server, stop_server
from tests.integration.test_client import assert_outputs_equal, model_inputs, onnx_reference

pytestmark = pytest.mark.integration

ALL_FORMATS = ["binary", "json", "msgpack", "arrow"]
OWN_FORMATS = ["msgpack", "arrow"]
MODELS = ["mlp", "two_io", "strings"]


@pytest.fixture(scope="module")
def uds_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    # AF_UNIX paths are limited to about 100 bytes: keep the socket near the root of its temp dir.
    socket_path = tmp_path_factory.mktemp("uds") / "mlrt.sock"
    srv = start_server(
        [f"{name}={model_dir / f'{name}.onnx'}" for name in MODELS], model_dir, ["--uds", str(socket_path)]
    )
    yield srv, socket_path
    stop_server(srv)
    assert not socket_path.exists(), "the socket file outlived the server"


@pytest.mark.parametrize("fmt", OWN_FORMATS)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("rows", [1, 6])
def test_outputs_equal_onnxruntime_over_tcp(
    server: Server, model_dir: Path, fmt: str, model: str, rows: int
) -> None:
    inputs = model_inputs(model, rows)
    with Client(server.url, format=fmt) as c:
        got = c.infer(model, inputs)
        assert_outputs_equal(got, onnx_reference(model_dir / f"{model}.onnx", inputs))
        got = c.infer(model, inputs, request_id="q1", timeout_us=10_000_000)
        assert_outputs_equal(got, onnx_reference(model_dir / f"{model}.onnx", inputs))


@pytest.mark.parametrize("fmt", ALL_FORMATS)
@pytest.mark.parametrize("model", MODELS)
def test_outputs_equal_onnxruntime_over_uds(
    uds_server: tuple[Server, Path], model_dir: Path, fmt: str, model: str
) -> None:
    _, socket_path = uds_server
    inputs = model_inputs(model, 4)
    with Client(f"unix://{socket_path}", format=fmt) as c:
        assert c.is_live() and c.is_ready()
        assert c.model_metadata(model)["name"] == model
        for _ in range(3):
            assert_outputs_equal(c.infer(model, inputs), onnx_reference(model_dir / f"{model}.onnx", inputs))


@pytest.mark.parametrize("fmt", ["msgpack", "binary"])
def test_a_polling_client_gets_the_same_answers(
    uds_server: tuple[Server, Path], model_dir: Path, fmt: str
) -> None:
    # The default client sleeps while it waits; this one polls for its answers first (opt-in).
    _, socket_path = uds_server
    with Client(f"unix://{socket_path}", format=fmt, busy_poll_us=200) as c:
        for model in MODELS:
            inputs = model_inputs(model, 3)
            want = onnx_reference(model_dir / f"{model}.onnx", inputs)
            for _ in range(3):
                assert_outputs_equal(c.infer(model, inputs), want)


@pytest.mark.parametrize("fmt", OWN_FORMATS)
def test_requested_outputs_in_order(server: Server, fmt: str) -> None:
    with Client(server.url, format=fmt) as c:
        got = c.infer("two_io", model_inputs("two_io"), ["twice", "sum"])
        assert list(got) == ["twice", "sum"]
        assert list(c.infer("two_io", model_inputs("two_io"), ["sum"])) == ["sum"]


@pytest.mark.parametrize("fmt", OWN_FORMATS)
def test_server_errors_carry_status_and_message(server: Server, fmt: str) -> None:
    with Client(server.url, format=fmt) as c:
        with pytest.raises(InferenceError, match="unknown model") as info:
            c.infer("no-such-model", model_inputs("mlp"))
        assert info.value.status == 404
        with pytest.raises(InferenceError, match="the model takes INT64, not FP64") as info:
            c.infer("two_io", {"x": np.zeros((1, 3), np.float32), "n": np.zeros((1, 1))})
        assert info.value.status == 400
        with pytest.raises(InferenceError, match="unknown output 'nope'") as info:
            c.infer("two_io", model_inputs("two_io"), ["nope"])
        assert info.value.status == 400


# httpcore 1.0.9's sync connect_unix_socket does not close the socket when connect() fails
# (the bug redis-py fixed in redis/redis-py#3315); it is reported when collected.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_uds_connection_refused(tmp_path: Path) -> None:
    url = f"unix://{tmp_path / 'absent.sock'}"
    with Client(url) as c, pytest.raises(ConnectionFailed) as info:
        c.is_live()
    assert info.value.url == url
    del info
    gc.collect()  # so the leaked socket is reported inside this test, under its filters


def test_msgpack_response_follows_the_documented_schema(server: Server) -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    n = np.array([[1], [2]], np.int64)
    req = {
        "id": "r1",
        "inputs": {
            "x": {"datatype": "FP32", "shape": [2, 3], "data": x.tobytes()},
            "n": {"datatype": "INT64", "shape": [2, 1], "data": n.tobytes()},
        },
        "outputs": ["twice"],
    }
    r = httpx.post(
        f"{server.url}/v2/models/two_io/infer",
        content=msgpack.packb(req, use_bin_type=True),
        headers={"content-type": "application/msgpack"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/msgpack")
    doc = msgpack.unpackb(r.content)
    assert doc["model_name"] == "two_io" and doc["id"] == "r1"
    assert list(doc["outputs"]) == ["twice"]
    twice = doc["outputs"]["twice"]
    assert (twice["datatype"], twice["shape"]) == ("INT64", [2, 1])
    assert np.frombuffer(twice["data"], np.int64).tolist() == [2, 4]


def test_arrow_response_follows_the_documented_mapping(server: Server) -> None:
    x = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 3)
    n = pa.array([1, 2], pa.int32())  # a plain int32 column for an INT64 [-1, 1] input
    schema = pa.schema([("x", x.type), ("n", n.type)], metadata={"mlrt.id": "r2"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(pa.record_batch([x, n], schema=schema))
    r = httpx.post(
        f"{server.url}/v2/models/two_io/infer",
        content=sink.getvalue().to_pybytes(),
        headers={"content-type": "application/vnd.apache.arrow.stream"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.apache.arrow.stream")
    table = pa.ipc.open_stream(pa.BufferReader(r.content)).read_all()
    assert table.schema.metadata[b"mlrt.id"] == b"r2"
    assert table.schema.metadata[b"mlrt.model_name"] == b"two_io"
    assert table.schema.names == ["sum", "twice"]
    assert table.schema.field("twice").type == pa.list_(pa.int64(), 1)
    assert table.column("twice").to_pylist() == [[2], [4]]
    assert table.column("sum").to_pylist() == [[4.0], [14.0]]


@pytest.mark.parametrize(
    ("content_type", "body", "match"),
    [
        ("application/msgpack", b"\xc1", "malformed msgpack"),
        ("application/msgpack", msgpack.packb([1, 2]), "must be a msgpack map"),
        ("application/msgpack", msgpack.packb({"inputs": {"input": {"datatype": "FP32"}}}), "'shape'"),
        ("application/vnd.apache.arrow.stream", b"not arrow", "malformed Arrow IPC stream"),
        ("application/vnd.apache.arrow.stream", b"", "malformed Arrow IPC stream"),
    ],
)
def test_malformed_bodies_are_400_and_the_server_stays_ready(
    server: Server, content_type: str, body: bytes, match: str
) -> None:
    r = httpx.post(f"{server.url}/v2/models/mlp/infer", content=body, headers={"content-type": content_type})
    assert r.status_code == 400
    error = r.json()["error"]
    assert match in error, error
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_a_nullable_pandas_frame_goes_as_numbers(server: Server, model_dir: Path, fmt: str) -> None:
    # `to_numpy()` of a frame of pandas' nullable dtypes is an object array (1.5, pd.NA): it
    # went out as BYTES, the text of each number, and every request was a 400.
    pd = pytest.importorskip("pandas")
    x = model_inputs("mlp", 5)["input"]
    frame = pd.DataFrame(x.astype(np.float64)).convert_dtypes()
    objects = frame.to_numpy()
    assert objects.dtype == object
    want = onnx_reference(model_dir / "mlp.onnx", {"input": x})
    with Client(server.url, format=fmt) as c:
        assert_outputs_equal(c.infer("mlp", {"input": objects}), want)
        frame.iloc[2, 3] = pd.NA  # a missing number goes as NaN, as the server documents
        got = c.infer("mlp", {"input": frame.to_numpy()})
        x_nan = x.copy()
        x_nan[2, 3] = np.nan
        assert_outputs_equal(got, onnx_reference(model_dir / "mlp.onnx", {"input": x_nan}))
