"""The Open Inference Protocol as V2 clients speak it, against the real server."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from tests.integration.serving import Server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(server.host_port, network_timeout=60.0)
    yield c
    c.close()


def onnx_reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def infer(
    client: triton.InferenceServerClient,
    model: str,
    inputs: dict[str, np.ndarray],
    *,
    binary: bool,
    outputs: Sequence[str] | None = None,
    **kwargs,
) -> triton.InferResult:
    """tritonclient.infer; binary=True uses its defaults, False sends and asks for JSON."""
    infer_inputs = []
    for name, arr in inputs.items():
        datatype = "BYTES" if arr.dtype == object else triton.np_to_triton_dtype(arr.dtype)
        i = triton.InferInput(name, list(arr.shape), datatype)
        if binary:
            i.set_data_from_numpy(arr)
        else:
            i.set_data_from_numpy(arr, binary_data=False)
        infer_inputs.append(i)
    requested = None
    if outputs is not None or not binary:
        names = outputs if outputs is not None else [o["name"] for o in metadata(client, model)]
        requested = [triton.InferRequestedOutput(n, binary_data=binary) for n in names]
    return client.infer(model, infer_inputs, outputs=requested, **kwargs)


def metadata(client: triton.InferenceServerClient, model: str) -> list[dict]:
    return client.get_model_metadata(model)["outputs"]


def output_names(result: triton.InferResult) -> list[str]:
    return [o["name"] for o in result.get_response()["outputs"]]


def is_binary(result: triton.InferResult, name: str) -> bool:
    return "binary_data_size" in result.get_output(name).get("parameters", {})


# -- health and metadata -----------------------------------------------------------------------


def test_health(client: triton.InferenceServerClient, http) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert http.get(path).status_code == 200


def test_server_metadata(client: triton.InferenceServerClient) -> None:
    meta = client.get_server_metadata()
    assert meta["name"] == "mlrt"
    assert isinstance(meta["version"], str) and meta["version"]
    assert "binary_tensor_data" in meta["extensions"]


@pytest.mark.parametrize("version", ["", "1"])
def test_model_metadata_has_variable_batch_dim(client: triton.InferenceServerClient, version: str) -> None:
    meta = client.get_model_metadata("mlp", model_version=version)
    assert meta["name"] == "mlp"
    assert meta["versions"] == ["1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 20]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 2]}]


def test_two_io_and_python_model_metadata(client: triton.InferenceServerClient) -> None:
    meta = client.get_model_metadata("two_io")
    assert meta["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "n", "datatype": "INT64", "shape": [-1, 1]},
    ]
    assert meta["outputs"] == [
        {"name": "sum", "datatype": "FP32", "shape": [-1, 1]},
        {"name": "twice", "datatype": "INT64", "shape": [-1, 1]},
    ]
    meta = client.get_model_metadata("iris")
    assert meta["platform"] == "python"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("predict", "INT64", [-1]),
        ("predict_proba", "FP64", [-1, 3]),
    ]


@pytest.mark.parametrize("model", ["mlp", "two_io", "strings", "iris", "picky"])
def test_model_ready(client: triton.InferenceServerClient, http, model: str) -> None:
    assert client.is_model_ready(model)
    assert client.is_model_ready(model, "1")
    assert http.get(f"/v2/models/{model}/versions/1/ready").status_code == 200


@pytest.mark.parametrize("version", ["", "1"])
def test_model_config(client: triton.InferenceServerClient, version: str) -> None:
    config = client.get_model_config("two_io", model_version=version)
    assert config["name"] == "two_io"
    assert config["platform"] == "onnxruntime_onnx"
    assert isinstance(config["max_batch_size"], int) and config["max_batch_size"] > 0
    # With max_batch_size > 0, Triton's dims leave out the batch dimension.
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("x", "TYPE_FP32", [3]),
        ("n", "TYPE_INT64", [1]),
    ]
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["output"]] == [
        ("sum", "TYPE_FP32", [1]),
        ("twice", "TYPE_INT64", [1]),
    ]
    strings = client.get_model_config("strings")
    assert strings["input"][0]["data_type"] == "TYPE_STRING"


# -- inference -------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 1000])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_mlp_equals_onnxruntime(
    client: triton.InferenceServerClient, model_dir: Path, rows: int, binary: bool
) -> None:
    x = np.random.default_rng(rows).standard_normal((rows, 20)).astype(np.float32)
    result = infer(client, "mlp", {"input": x}, binary=binary)
    assert is_binary(result, "output") == binary
    got = result.as_numpy("output")
    want = onnx_reference(model_dir / "mlp.onnx", {"input": x})["output"]
    assert got.dtype == np.float32 and got.shape == (rows, 2)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_versioned_infer(client: triton.InferenceServerClient, model_dir: Path, binary: bool) -> None:
    x = np.ones((3, 20), np.float32)
    result = infer(client, "mlp", {"input": x}, binary=binary, model_version="1")
    assert result.get_response()["model_version"] == "1"
    want = onnx_reference(model_dir / "mlp.onnx", {"input": x})["output"]
    np.testing.assert_array_equal(result.as_numpy("output"), want)


def two_io_inputs(rows: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "x": rng.standard_normal((rows, 3)).astype(np.float32),
        "n": rng.integers(-(2**40), 2**40, (rows, 1), dtype=np.int64),
    }


@pytest.mark.parametrize("asked", [None, ["sum"], ["twice"], ["twice", "sum"]])
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_two_inputs_of_different_datatypes(
    client: triton.InferenceServerClient,
    model_dir: Path,
    binary: bool,
    asked: list[str] | None,
) -> None:
    inputs = two_io_inputs()
    result = infer(client, "two_io", inputs, binary=binary, outputs=asked)
    want = onnx_reference(model_dir / "two_io.onnx", inputs)
    assert output_names(result) == (asked or ["sum", "twice"])
    for name in output_names(result):
        assert is_binary(result, name) == binary
        got = result.as_numpy(name)
        assert got.dtype == want[name].dtype
        np.testing.assert_array_equal(got, want[name])
    np.testing.assert_array_equal(want["twice"], inputs["n"] * 2)


def test_mixed_binary_and_json_outputs(client: triton.InferenceServerClient) -> None:
    inputs = two_io_inputs()
    x = triton.InferInput("x", [5, 3], "FP32")
    x.set_data_from_numpy(inputs["x"], binary_data=False)
    n = triton.InferInput("n", [5, 1], "INT64")
    n.set_data_from_numpy(inputs["n"], binary_data=True)
    outputs = [
        triton.InferRequestedOutput("twice", binary_data=True),
        triton.InferRequestedOutput("sum", binary_data=False),
    ]
    result = client.infer("two_io", [x, n], outputs=outputs)
    assert is_binary(result, "twice") and not is_binary(result, "sum")
    np.testing.assert_array_equal(result.as_numpy("twice"), inputs["n"] * 2)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_bytes_model(client: triton.InferenceServerClient, binary: bool) -> None:
    words = ["hello", "", "h\u00e9llo w\u00f6rld", "\u65e5\u672c"]
    text = np.array([[w.encode()] for w in words], dtype=object)
    result = infer(client, "strings", {"text": text}, binary=binary)
    echo = result.as_numpy("echo")
    assert echo.shape == (4, 1)
    assert [v.decode() if isinstance(v, bytes) else v for v in echo.reshape(-1)] == words


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_sklearn_model_answers_the_same_protocol(client: triton.InferenceServerClient, binary: bool) -> None:
    from tests.integration import pymodels

    x = np.random.default_rng(0).uniform(0, 8, (50, 4))
    result = infer(client, "iris", {"input": x}, binary=binary)
    assert output_names(result) == ["predict", "predict_proba"]
    np.testing.assert_array_equal(result.as_numpy("predict"), pymodels.iris.predict(x))
    # The server fitted its own copy at import; same data and solver, same model.
    np.testing.assert_allclose(
        result.as_numpy("predict_proba"), pymodels.iris.predict_proba(x), rtol=1e-12, atol=0
    )


def test_sklearn_model_one_output(client: triton.InferenceServerClient) -> None:
    from sklearn.datasets import load_iris

    data = load_iris()
    result = infer(client, "iris", {"input": data.data}, binary=True, outputs=["predict"])
    assert output_names(result) == ["predict"]
    assert (result.as_numpy("predict") == data.target).mean() > 0.9


def test_request_id_is_echoed(client: triton.InferenceServerClient) -> None:
    x = np.zeros((1, 20), np.float32)
    result = infer(client, "mlp", {"input": x}, binary=True, request_id="req-42")
    assert result.get_response()["id"] == "req-42"


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_responses(
    client: triton.InferenceServerClient, model_dir: Path, algorithm: str
) -> None:
    x = np.random.default_rng(1).standard_normal((1000, 20)).astype(np.float32)
    result = infer(
        client,
        "mlp",
        {"input": x},
        binary=True,
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    want = onnx_reference(model_dir / "mlp.onnx", {"input": x})["output"]
    np.testing.assert_array_equal(result.as_numpy("output"), want)


# -- raw HTTP forms --------------------------------------------------------------------------


def json_infer_body(**doc) -> bytes:
    return json.dumps(doc).encode()


def test_nested_json_data_and_outputs_filter(http, model_dir: Path) -> None:
    inputs = two_io_inputs(2)
    body = json_infer_body(
        id="nested",
        inputs=[
            {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": inputs["x"].tolist()},
            {"name": "n", "datatype": "INT64", "shape": [2, 1], "data": inputs["n"].tolist()},
        ],
        outputs=[{"name": "twice"}],
    )
    resp = http.post("/v2/models/two_io/infer", content=body)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json()
    assert doc["id"] == "nested" and doc["model_name"] == "two_io"
    assert [o["name"] for o in doc["outputs"]] == ["twice"]
    twice = doc["outputs"][0]
    assert (twice["datatype"], twice["shape"]) == ("INT64", [2, 1])
    assert np.array(twice["data"]).reshape(2, 1).tolist() == (inputs["n"] * 2).tolist()


def test_raw_binary_request(http, model_dir: Path) -> None:
    x = np.random.default_rng(2).standard_normal((4, 20)).astype(np.float32)
    resp = http.post(
        "/v2/models/mlp/infer",
        content=x.tobytes(),
        headers={"Inference-Header-Content-Length": "0"},
    )
    assert resp.status_code == 200, resp.text
    header_length = int(resp.headers["inference-header-content-length"])
    doc = json.loads(resp.content[:header_length])
    (out,) = doc["outputs"]
    assert out["shape"] == [4, 2]
    got = np.frombuffer(resp.content[header_length:], np.float32).reshape(4, 2)
    want = onnx_reference(model_dir / "mlp.onnx", {"input": x})["output"]
    np.testing.assert_array_equal(got, want)


def test_no_content_type_needed(http) -> None:
    body = json_infer_body(
        inputs=[{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": [0.5] * 20}]
    )
    request = http.build_request("POST", "/v2/models/mlp/infer", content=body)
    assert "content-type" not in request.headers
    assert http.send(request).status_code == 200


def test_gzip_request_body(http, model_dir: Path) -> None:
    x = np.random.default_rng(3).standard_normal((2, 20)).astype(np.float32)
    body = json_infer_body(
        inputs=[{"name": "input", "datatype": "FP32", "shape": [2, 20], "data": x.ravel().tolist()}]
    )
    resp = http.post(
        "/v2/models/mlp/infer", content=gzip.compress(body), headers={"Content-Encoding": "gzip"}
    )
    assert resp.status_code == 200, resp.text
    got = np.array(resp.json()["outputs"][0]["data"], np.float32).reshape(2, 2)
    np.testing.assert_array_equal(got, onnx_reference(model_dir / "mlp.onnx", {"input": x})["output"])


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_nan_and_inf_inputs_are_data(client: triton.InferenceServerClient, binary: bool) -> None:
    x = np.zeros((3, 20), np.float32)
    x[0, 0], x[1, 5], x[2, 19] = np.nan, np.inf, -np.inf
    result = infer(client, "mlp", {"input": x}, binary=binary)
    out = result.as_numpy("output")
    assert out.shape == (3, 2)
    assert np.isnan(out[0]).all()  # NaN propagates through the MLP and comes back


def test_nan_json_tokens_over_raw_http(http) -> None:
    values = [float("nan"), float("inf"), float("-inf")] + [0.0] * 17
    body = json_infer_body(inputs=[{"name": "input", "datatype": "FP32", "shape": [1, 20], "data": values}])
    assert b"NaN" in body and b"Infinity" in body
    resp = http.post("/v2/models/mlp/infer", content=body)
    assert resp.status_code == 200, resp.text
    data = json.loads(resp.content)["outputs"][0]["data"]
    assert len(data) == 2
