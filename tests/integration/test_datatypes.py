"""Inputs sent in a datatype other than the model's, against the real server on 127.0.0.1
and its Unix socket, in every body format, and through runtime.load: one rule
(runtime/convert.py, docs/formats.md "Datatypes"), the same answers and the same errors."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import pyarrow as pa
import pytest

import runtime
from bench import models as bench_models
from runtime.client import Client, InferenceError
from runtime.errors import InvalidInput
from tests.integration.serving import REPO_ROOT, Server, start_server, stop_server

pytestmark = pytest.mark.integration

DEMO = REPO_ROOT / "runtime" / "demo"
SEEN = "tests.integration.dtype_models:seen"
FORMATS = ["json", "binary", "msgpack", "arrow"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, Path]]:
    d = tmp_path_factory.mktemp("dtypes")
    sock = d / "mlrt.sock"
    mlp = bench_models.mlp(d / "mlp.onnx")
    two = bench_models.two_io(d / "two_io.onnx")
    srv = start_server(
        [f"mlp={mlp}", f"two_io={two}", f"seen={SEEN}", f"demo={DEMO / 'model.onnx'}"],
        d,
        ["--uds", str(sock), "--profile", f"demo={DEMO / 'profile.json'}"],
    )
    yield srv, sock, two
    stop_server(srv)


@pytest.fixture
def http(served: tuple[Server, Path, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[0].url, timeout=30.0) as c:
        yield c


# -- requests built by hand, as curl or any V2/msgpack/Arrow client would build them -------


Tensors = dict[str, tuple[np.ndarray, str]]  # name -> (array, the V2 datatype it is sent as)


def post(http: httpx.Client, model: str, fmt: str, tensors: Tensors) -> httpx.Response:
    """POST one infer request with each tensor sent as the given V2 datatype."""
    url = f"/v2/models/{model}/infer"
    if fmt == "json":
        # Python's json writes NaN/Infinity, which V2 JSON readers take; curl -d sends
        # application/x-www-form-urlencoded, which the server reads as V2 JSON too.
        doc = {"inputs": [{"name": n, "datatype": dt, "shape": list(a.shape), "data": a.ravel().tolist()}
                          for n, (a, dt) in tensors.items()]}  # fmt: skip
        headers = {"content-type": "application/x-www-form-urlencoded"}
        return http.post(url, content=json.dumps(doc).encode(), headers=headers)
    if fmt == "binary":
        docs, blobs = [], []
        for n, (a, dt) in tensors.items():
            blob = np.ascontiguousarray(a).tobytes()
            docs.append({"name": n, "datatype": dt, "shape": list(a.shape),
                         "parameters": {"binary_data_size": len(blob)}})  # fmt: skip
            blobs.append(blob)
        header = json.dumps({"inputs": docs}).encode()
        headers = {"inference-header-content-length": str(len(header))}
        return http.post(url, content=header + b"".join(blobs), headers=headers)
    if fmt == "msgpack":
        doc = {"inputs": {n: {"datatype": dt, "shape": list(a.shape), "data": a.tobytes()}
                          for n, (a, dt) in tensors.items()}}  # fmt: skip
        body = msgpack.packb(doc, use_bin_type=True)
        return http.post(url, content=body, headers={"content-type": "application/msgpack"})
    columns = {}
    for n, (a, _) in tensors.items():
        col = pa.array(a.reshape(-1))
        if a.ndim == 2:
            col = pa.FixedSizeListArray.from_arrays(col, a.shape[1])
        columns[n] = col
    batch = pa.record_batch(list(columns.values()), names=list(columns))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    body = sink.getvalue().to_pybytes()
    return http.post(url, content=body, headers={"content-type": "application/vnd.apache.arrow.stream"})


def outputs(resp: httpx.Response) -> dict[str, Any]:
    """A 200 answer's outputs as {name: (datatype, values)}, whatever its format."""
    assert resp.status_code == 200, resp.text
    ctype = resp.headers["content-type"]
    if ctype.startswith("application/msgpack"):
        doc = msgpack.unpackb(resp.content)
        return {n: (o["datatype"], o["data"]) for n, o in doc["outputs"].items()}
    if ctype.startswith("application/vnd.apache.arrow"):
        table = pa.ipc.open_stream(pa.BufferReader(resp.content)).read_all()
        return {n: (str(table.column(n).type), table.column(n).to_pylist()) for n in table.schema.names}
    return {o["name"]: (o["datatype"], o["data"]) for o in resp.json()["outputs"]}


def error(resp: httpx.Response) -> str:
    assert resp.status_code == 400, resp.text
    message = resp.json()["error"]
    assert isinstance(message, str)
    return message


X64 = np.random.default_rng(15).random((3, 20)) * 10  # float64, as numpy makes it


@pytest.mark.parametrize("fmt", FORMATS)
def test_fp64_into_an_fp32_model_answers_as_fp32_would(http: httpx.Client, fmt: str) -> None:
    got = outputs(post(http, "mlp", fmt, {"input": (X64, "FP64")}))
    want = outputs(post(http, "mlp", fmt, {"input": (X64.astype(np.float32), "FP32")}))
    assert got == want  # the same answer, in the model's output datatypes
    if fmt == "json":
        assert got["output"][0] == "FP32"


@pytest.mark.parametrize("fmt", FORMATS)
def test_int64_into_an_fp32_model(http: httpx.Client, fmt: str) -> None:
    ints = np.arange(-30, 30, dtype=np.int64).reshape(3, 20)
    got = outputs(post(http, "mlp", fmt, {"input": (ints, "INT64")}))
    assert got == outputs(post(http, "mlp", fmt, {"input": (ints.astype(np.float32), "FP32")}))


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_model_is_called_with_its_own_datatype(http: httpx.Client, fmt: str) -> None:
    x = np.array([[0.1, 2.5], [-3.0, 1e30]])
    got = outputs(post(http, "seen", fmt, {"x": (x, "FP64")}))
    dtype_values = got["dtype"][1]
    if fmt == "arrow":
        dtype_values = [v for row in dtype_values for v in row]
    assert {v.decode() if isinstance(v, bytes) else v for v in np.ravel(dtype_values)} == {"<f4"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_float_into_an_int64_input_is_refused_naming_both(http: httpx.Client, fmt: str) -> None:
    x, n = np.zeros((1, 3), np.float32), np.array([[1.5]], np.float32)
    message = error(post(http, "two_io", fmt, {"x": (x, "FP32"), "n": (n, "FP32")}))
    assert message.startswith("input 'n': the model takes INT64, not FP32")
    assert "send INT64 or one that converts to it (UINT8, UINT16, UINT32, INT8, INT16, INT32)" in message
    assert http.get("/v2/health/ready").status_code == 200


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_finite_value_out_of_fp32_range_is_refused(http: httpx.Client, fmt: str) -> None:
    x = np.array([[0.5, 1e39]])
    message = error(post(http, "seen", fmt, {"x": (x, "FP64")}))
    assert "input 'x'" in message and "1e+39" in message and "FP32" in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_nan_and_infinities_are_data(http: httpx.Client, fmt: str) -> None:
    x = np.array([[math.nan, math.inf], [-math.inf, 0.25]])
    got = outputs(post(http, "seen", fmt, {"x": (x, "FP64")}))
    y = got["y"][1]  # raw bytes in msgpack; numbers (NaN, Infinity) in JSON; lists in Arrow
    flat = np.frombuffer(y, "<f4") if fmt == "msgpack" else np.array(y, np.float64).reshape(-1)
    assert np.isnan(flat[0]) and flat[1] == math.inf and flat[2] == -math.inf and flat[3] == 0.25


def rounding_row() -> tuple[np.ndarray, str, int]:
    """A float64 demo row whose first feature lies just below one of its bin edges while
    its float32 rounding does not: (row, feature name, index of the float32's bin)."""
    profile = json.loads((DEMO / "profile.json").read_text())
    feature = profile["features"][0]
    for i, edge in enumerate(feature["edges"]):
        below = float(np.nextafter(edge, -np.inf))
        if float(np.float32(below)) >= edge:
            row = np.full((1, len(profile["features"])), 1.0)
            row[0, 0] = below
            return row, feature["name"], i + 1  # the float64 value itself lies in bin i
    raise AssertionError("no edge of the demo profile rounds that way")


def test_the_drift_monitor_counts_the_converted_values(http: httpx.Client) -> None:
    # The monitor is fed the FP32 tensor the model gets, not the FP64 one sent.
    row, name, bin_index = rounding_row()
    assert post(http, "demo", "msgpack", {"features": (row, "FP64")}).status_code == 200
    report = http.get("/v2/models/demo/drift").json()
    shares = next(f for f in report["features"] if f["name"] == name)["current_share"]
    assert shares[bin_index] == 1.0, shares


# -- runtime.client over TCP and the Unix socket: arrays go in their own dtype --------------


@pytest.mark.parametrize("transport", ["tcp", "uds"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_client_sends_float64_and_gets_the_fp32_answer(
    served: tuple[Server, Path, Path], transport: str, fmt: str
) -> None:
    srv, sock, _ = served
    url = srv.url if transport == "tcp" else f"unix://{sock}"
    with Client(url, format=fmt) as c:
        got = c.infer("mlp", {"input": X64})
        want = c.infer("mlp", {"input": X64.astype(np.float32)})
        np.testing.assert_array_equal(got["output"], want["output"])
        assert got["output"].dtype == np.float32
        with pytest.raises(InferenceError, match="input 'n': the model takes INT64, not FP64") as info:
            c.infer("two_io", {"x": np.zeros((1, 3)), "n": np.array([[1.0]])})
        assert info.value.status == 400


# -- runtime.load: the same rule and the same messages in-process --------------------------


def test_in_process_predict_takes_float64_and_refuses_as_the_server_does(
    served: tuple[Server, Path, Path], http: httpx.Client
) -> None:
    two = served[2]
    m = runtime.load(f"two_io={two}")
    x, n = np.random.default_rng(1).random((2, 3)), np.array([[1], [2]], np.int32)
    got = m.predict({"x": x, "n": n})  # FP64 -> FP32 and INT32 -> INT64, as the server converts
    want = m.predict({"x": x.astype(np.float32), "n": n.astype(np.int64)})
    np.testing.assert_array_equal(got["sum"], want["sum"])
    np.testing.assert_array_equal(got["twice"], want["twice"])
    over_http = outputs(post(http, "two_io", "json", {"x": (x, "FP64"), "n": (n, "INT32")}))
    np.testing.assert_array_equal(np.array(over_http["sum"][1], np.float32), got["sum"].ravel())

    bad_n = np.array([[1.5], [2.0]], np.float32)
    with pytest.raises(InvalidInput) as info:
        m.predict({"x": x, "n": bad_n})
    for fmt in FORMATS:
        assert error(post(http, "two_io", fmt, {"x": (x, "FP64"), "n": (bad_n, "FP32")})) == str(info.value)
    with pytest.raises(InvalidInput) as info:
        m.predict({"x": np.array([[0.0, 1e39, 0.0], [0.0, 0.0, 0.0]]), "n": n})
    big = {"x": (np.array([[0.0, 1e39, 0.0], [0.0, 0.0, 0.0]]), "FP64"), "n": (n, "INT32")}
    assert error(post(http, "two_io", "msgpack", big)) == str(info.value)
    m.close()


def test_in_process_monitor_counts_the_converted_values() -> None:
    row, name, bin_index = rounding_row()
    with runtime.load(str(DEMO / "model.onnx"), profile=str(DEMO / "profile.json")) as m:
        m.predict(row)
        shares = next(f for f in m.drift()["features"] if f["name"] == name)["current_share"]
    assert shares[bin_index] == 1.0, shares
