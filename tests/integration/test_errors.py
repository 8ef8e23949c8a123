"""Bad requests over raw HTTP: each gets its status and a `{"error": ...}` body naming
the problem, never a traceback, and the server is ready afterwards."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration

MLP = "/v2/models/mlp/infer"
TWO_IO = "/v2/models/two_io/infer"


def tensor(name: str, datatype: str, shape: list[int], data: Any = None, **params: Any) -> dict:
    doc: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if params:
        doc["parameters"] = params
    else:
        doc["data"] = data
    return doc


def body(*inputs: dict, **extra: Any) -> bytes:
    return json.dumps({**extra, "inputs": list(inputs)}).encode()


def mlp_input(rows: int = 1, **overrides: Any) -> dict:
    doc = tensor("input", "FP32", [rows, 20], [0.5] * (20 * rows))
    doc.update(overrides)
    return doc


def two_io_inputs() -> list[dict]:
    return [tensor("x", "FP32", [1, 3], [1, 2, 3]), tensor("n", "INT64", [1, 1], [4])]


def binary_body(header: dict, payload: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps(header).encode()
    return head + payload, {"Inference-Header-Content-Length": str(len(head))}


def assert_error(client: httpx.Client, resp: httpx.Response, status: int, *words: str) -> str:
    """The status, a JSON {"error": msg} body naming the problem, no traceback, still ready."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json()
    assert isinstance(doc, dict) and isinstance(doc.get("error"), str), doc
    message = doc["error"]
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert "Traceback" not in resp.text and 'File "' not in resp.text
    assert client.get("/v2/health/ready").status_code == 200
    return message


# -- 400: the request does not fit the protocol or the model ------------------------------------

BAD_INFER = [
    pytest.param(MLP, b"{not json", {}, ["malformed JSON"], id="bad-json"),
    pytest.param(MLP, b"", {}, ["malformed JSON"], id="empty-body"),
    pytest.param(MLP, b"[1, 2]", {}, ["JSON object"], id="not-an-object"),
    pytest.param(MLP, b'{"id": "x"}', {}, ["'inputs'"], id="no-inputs"),
    pytest.param(
        MLP, body(mlp_input(shape=[1, 19], data=[0.5] * 19)), {}, ["[1, 19]", "[-1, 20]"], id="wrong-shape"
    ),
    pytest.param(
        MLP, body(mlp_input(shape=[20], data=[0.5] * 20)), {}, ["[20]", "[-1, 20]"], id="wrong-rank"
    ),
    pytest.param(
        TWO_IO,
        body(tensor("x", "FP32", [1, 3], [1, 2, 3]), tensor("n", "FP64", [1, 1], [1.0])),
        {},
        ["'n'", "FP64", "INT64"],
        id="wrong-datatype",
    ),
    pytest.param(MLP, body(mlp_input(datatype="BF16")), {}, ["BF16"], id="bf16"),
    pytest.param(MLP, body(mlp_input(datatype="FLOAT")), {}, ["unknown datatype 'FLOAT'"], id="no-such-type"),
    pytest.param(MLP, body(mlp_input(data=[0.5] * 19)), {}, ["19 elements", "[1, 20]"], id="element-count"),
    pytest.param(MLP, body(mlp_input(data=[[0.5] * 20, [1.0]])), {}, ["ragged"], id="ragged"),
    pytest.param(MLP, body(mlp_input(data=["a"] * 20)), {}, ["FP32 data must be numbers"], id="strings"),
    pytest.param(MLP, body(mlp_input(data=[None] + [0.5] * 19)), {}, ["not null", "send NaN"], id="null"),
    pytest.param(
        TWO_IO,
        body(tensor("x", "FP32", [1, 3], [1, 2, 3]), tensor("n", "INT64", [1, 1], [1.5])),
        {},
        ["'n'", "INT64 data must be integers"],
        id="float-for-int",
    ),
    pytest.param(TWO_IO, body(two_io_inputs()[0]), {}, ["missing input 'n'"], id="missing-input"),
    pytest.param(
        TWO_IO,
        body(*two_io_inputs(), tensor("z", "FP32", [1], [0])),
        {},
        ["unexpected input 'z'"],
        id="unexpected-input",
    ),
    pytest.param(
        TWO_IO,
        body(tensor("x", "FP32", [2, 3], [0] * 6), tensor("n", "INT64", [1, 1], [4])),
        {},
        ["batch size"],
        id="batch-mismatch",
    ),
    pytest.param(
        TWO_IO,
        body(*two_io_inputs(), outputs=[{"name": "nope"}]),
        {},
        ["unknown output 'nope'"],
        id="unknown-output",
    ),
    pytest.param(TWO_IO, body(*two_io_inputs(), two_io_inputs()[0]), {}, ["given twice"], id="duplicate"),
    pytest.param(
        MLP,
        *binary_body({"inputs": [tensor("input", "FP32", [1, 20], binary_data_size=79)]}, b"\0" * 79),
        ["binary_data_size 79", "80 bytes"],
        id="binary-size-mismatch",
    ),
    pytest.param(
        MLP,
        *binary_body({"inputs": [tensor("input", "FP32", [1, 20], binary_data_size=80)]}, b"\0" * 40),
        ["overruns"],
        id="binary-overrun",
    ),
    pytest.param(
        MLP,
        *binary_body({"inputs": [tensor("input", "FP32", [1, 20], binary_data_size=80)]}, b"\0" * 88),
        ["8 bytes of binary data follow"],
        id="binary-trailing",
    ),
    pytest.param(
        MLP,
        body(tensor("input", "FP32", [1, 20], binary_data_size=80)),
        {},
        ["Inference-Header-Content-Length"],
        id="binary-without-header",
    ),
    pytest.param(
        MLP,
        body(mlp_input()),
        {"Inference-Header-Content-Length": "99999"},
        ["outside the body"],
        id="header-beyond-body",
    ),
    pytest.param(
        MLP,
        body(mlp_input()),
        {"Inference-Header-Content-Length": "ten"},
        ["'ten'"],
        id="header-not-a-number",
    ),
    pytest.param(
        MLP, b"\0" * 81, {"Inference-Header-Content-Length": "0"}, ["raw body of 81 bytes"], id="raw-misfit"
    ),
    pytest.param(
        MLP,
        body(mlp_input()),
        {"Content-Encoding": "br"},
        ["unsupported Content-Encoding 'br'"],
        id="unknown-encoding",
    ),
    pytest.param(MLP, b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"}, ["gzip"], id="bad-gzip"),
    pytest.param(
        MLP,
        gzip.compress(body(mlp_input()))[:-12],
        {"Content-Encoding": "gzip"},
        ["gzip"],
        id="truncated-gzip",
    ),
    # BUG: these two reach numpy/json errors the codec does not translate, so they are 500s.
    pytest.param(MLP, b"[" * 100_000, {}, ["JSON"], id="deeply-nested-json"),
    pytest.param(MLP, body(mlp_input(shape=[1] * 65, data=[0.5])), {}, ["shape"], id="65-dims"),
]


@pytest.mark.parametrize(("path", "content", "headers", "words"), BAD_INFER)
def test_bad_infer_request(
    http: httpx.Client, path: str, content: bytes, headers: dict[str, str], words: list[str]
) -> None:
    resp = http.post(path, content=content, headers=headers)
    assert_error(http, resp, 400, *words)


def test_bad_request_to_a_python_model(http: httpx.Client) -> None:
    resp = http.post("/v2/models/iris/infer", content=body(tensor("input", "FP64", [1, 3], [1, 2, 3])))
    assert_error(http, resp, 400, "[1, 3]", "[-1, 4]")


# -- 404 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/ready", "/config", "/infer"])
def test_unknown_model(http: httpx.Client, suffix: str) -> None:
    method = "POST" if suffix == "/infer" else "GET"
    resp = http.request(method, f"/v2/models/nope{suffix}", content=body(mlp_input()))
    assert_error(http, resp, 404, "unknown model 'nope'")


@pytest.mark.parametrize("suffix", ["", "/ready", "/config", "/infer"])
def test_unknown_version(http: httpx.Client, suffix: str) -> None:
    method = "POST" if suffix == "/infer" else "GET"
    resp = http.request(method, f"/v2/models/mlp/versions/9{suffix}", content=body(mlp_input()))
    assert_error(http, resp, 404, "unknown version '9'", "'mlp'")


def test_unknown_route(http: httpx.Client) -> None:
    # Starlette's bare "Not Found" named neither the path nor the usual slip.
    assert_error(http, http.get("/v2/nothing/here"), 404, "no such path: GET /v2/nothing/here")
    slash = http.post(MLP + "/", content=body(mlp_input()))
    assert_error(http, slash, 404, f"POST {MLP}/ (without the trailing '/')", "/openapi.json")


def test_wrong_method(http: httpx.Client) -> None:
    assert_error(http, http.get(MLP), 405)


# -- 413 -------------------------------------------------------------------------------------


@pytest.fixture
def small(small_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=small_server.url, timeout=30.0) as client:
        yield client


def test_body_over_the_limit(small: httpx.Client) -> None:
    content = body(mlp_input(rows=20))
    assert len(content) > 1000
    resp = small.post(MLP, content=content)
    assert_error(small, resp, 413, f"{len(content)} bytes", "limit of 1000 bytes")


def test_chunked_body_over_the_limit(small: httpx.Client) -> None:
    content = body(mlp_input(rows=20))

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(content), 300):
            yield content[i : i + 300]

    request = small.build_request("POST", MLP, content=chunks())
    assert request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in request.headers
    assert_error(small, small.send(request), 413, "limit of 1000 bytes")


def test_compressed_body_that_inflates_over_the_limit(small: httpx.Client) -> None:
    content = body(mlp_input(rows=20))
    packed = zlib.compress(content)
    assert len(packed) < 1000 < len(content)
    resp = small.post(MLP, content=packed, headers={"Content-Encoding": "deflate"})
    # Not "request body of 1001 bytes": decompression stops past the limit, the size is not known.
    assert_error(small, resp, 413, "request body decompressed (deflate) exceeds the limit of 1000 bytes")


def test_compressed_arrow_that_unpacks_to_too_much(http: httpx.Client) -> None:
    # A few kilobytes of ZSTD-compressed zeros that unpack to 400 MB: refused from the
    # stream's headers, before pyarrow decompresses anything.
    import pyarrow as pa

    zeros = pa.array(np.zeros(5_000_000 * 20, np.float32))
    batch = pa.record_batch([pa.FixedSizeListArray.from_arrays(zeros, 20)], names=["input"])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_batch(batch)
    packed = sink.getvalue().to_pybytes()
    assert len(packed) < 100_000
    resp = http.post(MLP, content=packed, headers={"Content-Type": "application/vnd.apache.arrow.stream"})
    assert_error(http, resp, 400, "unpacks to 400000000 bytes")


def test_body_under_the_limit(small: httpx.Client) -> None:
    resp = small.post(MLP, content=body(mlp_input()))
    assert resp.status_code == 200, resp.text


# -- 500: the model's own failure ----------------------------------------------------------------


def test_python_model_that_raises(http: httpx.Client) -> None:
    bad = body(tensor("x", "FP32", [1, 2], [1.0, -1.0]))
    resp = http.post("/v2/models/picky/infer", content=bad)
    message = assert_error(http, resp, 500, "picky model refuses negative values", "'picky'")
    assert "ValueError" in message
    good = http.post("/v2/models/picky/infer", content=body(tensor("x", "FP32", [1, 2], [1.0, 2.0])))
    assert good.status_code == 200, good.text
    assert good.json()["outputs"][0]["data"] == [2.0, 4.0]


def test_one_client_s_bad_input_fails_only_its_own_request(server: Any) -> None:
    # Concurrent requests share batches; a batch whose call raised failed all of them: most
    # of the valid requests batched with a bad one answered 500 with the bad one's error.
    from concurrent.futures import ThreadPoolExecutor

    def call(i: int) -> tuple[bool, int, Any]:
        bad = i % 4 == 0
        x = [-1.0 if bad else float(i), 2.0]
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.post("/v2/models/picky/infer", content=body(tensor("x", "FP32", [1, 2], x)))
        return bad, r.status_code, r.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(400)))
    for i, (bad, status, doc) in enumerate(answers):
        if bad:
            assert status == 500 and "refuses negative values" in doc["error"], doc
        else:
            assert status == 200, doc
            assert doc["outputs"][0]["data"] == [2.0 * i, 4.0]


def test_python_model_answering_other_than_it_declares(http: httpx.Client) -> None:
    # Text where FP32 is declared reached the encoder and answered a bare "internal server
    # error"; three columns where [-1, 2] is declared were served, unlike the metadata.
    text = http.post("/v2/models/picky/infer", content=body(tensor("x", "FP32", [1, 2], [777.0, 1.0])))
    assert_error(http, text, 500, "output 'y' is declared FP32 but the model returned text", "'picky'")
    wide = http.post("/v2/models/picky/infer", content=body(tensor("x", "FP32", [1, 2], [888.0, 1.0])))
    assert_error(http, wide, 500, "output 'y' is declared with shape [-1, 2] but the model returned [1, 3]")


# -- what is not an error -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_floats_are_accepted(http: httpx.Client, value: str) -> None:
    content = body(mlp_input()).replace(b"0.5", value.encode(), 1)
    assert value.encode() in content
    assert http.post(MLP, content=content).status_code == 200


def test_non_finite_binary_floats_are_accepted(http: httpx.Client) -> None:
    x = np.full((1, 20), np.nan, np.float32)
    content, headers = binary_body(
        {"inputs": [tensor("input", "FP32", [1, 20], binary_data_size=80)]}, x.tobytes()
    )
    resp = http.post(MLP, content=content, headers=headers)
    assert resp.status_code == 200, resp.text
    assert np.isnan(resp.json()["outputs"][0]["data"]).all()


def test_non_utf8_bytes_for_an_onnx_string_input_is_a_400(http: httpx.Client) -> None:
    import struct

    raw = b"\xff\xfe\xfa"
    blob = struct.pack("<I", len(raw)) + raw
    header = (
        b'{"inputs":[{"name":"text","shape":[1,1],"datatype":"BYTES",'
        b'"parameters":{"binary_data_size":' + str(len(blob)).encode() + b"}}]}"
    )
    resp = http.post(
        "/v2/models/strings/infer",
        content=header + blob,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert_error(http, resp, 400, "text", "UTF-8")
