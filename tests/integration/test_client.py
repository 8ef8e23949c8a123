"""runtime.client against the real server over TCP, in the V2 formats every V2 server speaks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from runtime.client import AsyncClient, Client, ConnectionFailed, InferenceError
from tests.integration.serving import REPO_ROOT, Server, free_port

pytestmark = pytest.mark.integration

V2_FORMATS = ["binary", "json"]


def onnx_reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def model_inputs(name: str, rows: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rows)
    if name == "mlp":
        return {"input": rng.standard_normal((rows, 20)).astype(np.float32)}
    if name == "two_io":
        return {
            "x": rng.standard_normal((rows, 3)).astype(np.float32),
            "n": rng.integers(-(2**40), 2**40, (rows, 1)),
        }
    texts = np.array([f"row {i} é" for i in range(rows)], dtype=object).reshape(rows, 1)
    return {"text": texts}


def assert_outputs_equal(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, arr in want.items():
        assert got[name].shape == arr.shape, name
        if arr.dtype == object:
            expected = [v.encode() if isinstance(v, str) else v for v in arr.reshape(-1).tolist()]
            assert got[name].reshape(-1).tolist() == expected
        else:
            assert got[name].dtype == arr.dtype, name
            np.testing.assert_array_equal(got[name], arr)


@pytest.fixture(params=V2_FORMATS)
def client(request: pytest.FixtureRequest, server: Server) -> Iterator[Client]:
    with Client(server.url, format=request.param) as c:
        yield c


@pytest.mark.parametrize("model", ["mlp", "two_io", "strings"])
@pytest.mark.parametrize("rows", [1, 7])
def test_outputs_equal_onnxruntime(client: Client, model_dir: Path, model: str, rows: int) -> None:
    inputs = model_inputs(model, rows)
    got = client.infer(model, inputs)
    assert_outputs_equal(got, onnx_reference(model_dir / f"{model}.onnx", inputs))


def test_connection_is_reused(client: Client, model_dir: Path) -> None:
    inputs = model_inputs("mlp", 3)
    want = onnx_reference(model_dir / "mlp.onnx", inputs)
    for _ in range(20):
        assert_outputs_equal(client.infer("mlp", inputs), want)


def test_requested_outputs_in_order(client: Client, model_dir: Path) -> None:
    inputs = model_inputs("two_io")
    want = onnx_reference(model_dir / "two_io.onnx", inputs)
    got = client.infer("two_io", inputs, ["twice", "sum"])
    assert list(got) == ["twice", "sum"]
    got = client.infer("two_io", inputs, outputs=["twice"], request_id="abc", timeout_us=10_000_000)
    assert list(got) == ["twice"]
    np.testing.assert_array_equal(got["twice"], want["twice"])


def test_version_and_metadata(client: Client) -> None:
    meta = client.model_metadata("mlp")
    assert meta["name"] == "mlp"
    assert [i["name"] for i in meta["inputs"]] == ["input"]
    version = meta["versions"][0]
    assert client.model_metadata("mlp", version)["name"] == "mlp"
    out = client.infer("mlp", model_inputs("mlp", 2), version=version)
    assert out["output"].shape == (2, 2)


def test_health(client: Client) -> None:
    assert client.is_live()
    assert client.is_ready()
    assert client.is_model_ready("mlp")
    assert not client.is_model_ready("no-such-model")
    assert "name" in client.server_metadata()


def test_inputs_are_sent_in_their_own_datatype(client: Client) -> None:
    # A float64 array is sent as FP64 and the server converts it to the model's FP32
    # (runtime/convert.py); a float for an integer input is refused by name.
    x = np.random.default_rng(3).random((2, 20))
    got = client.infer("mlp", {"input": x})
    want = client.infer("mlp", {"input": x.astype(np.float32)})
    np.testing.assert_array_equal(got["output"], want["output"])
    with pytest.raises(InferenceError) as info:
        client.infer("two_io", {"x": np.zeros((1, 3), np.float32), "n": np.zeros((1, 1), np.float32)})
    assert info.value.status == 400
    assert "'n'" in info.value.message and "FP32" in info.value.message and "INT64" in info.value.message


def test_str_arrays_are_bytes(client: Client) -> None:
    got = client.infer("strings", {"text": np.array([["a"], ["bé"]])})
    assert got["echo"].tolist() == [[b"a"], ["bé".encode()]]


@pytest.mark.parametrize(
    ("model", "inputs", "status", "match"),
    [
        ("no-such-model", {"input": np.zeros((1, 20), np.float32)}, 404, "unknown model 'no-such-model'"),
        ("mlp", {"input": np.zeros((1, 3), np.float32)}, 400, "shape \\[1, 3\\]"),
        ("mlp", {"wrong": np.zeros((1, 20), np.float32)}, 400, "unexpected input 'wrong'"),
        ("picky", {"x": -np.ones((1, 2), np.float32)}, 500, "picky model refuses negative values"),
    ],
)
def test_server_errors_carry_status_and_message(
    client: Client, model: str, inputs: dict[str, np.ndarray], status: int, match: str
) -> None:
    with pytest.raises(InferenceError, match=match) as info:
        client.infer(model, inputs)
    assert info.value.status == status
    assert "Traceback" not in info.value.message


def test_unknown_output(client: Client) -> None:
    with pytest.raises(InferenceError, match="unknown output 'nope'") as info:
        client.infer("two_io", model_inputs("two_io"), ["nope"])
    assert info.value.status == 400


def test_metadata_of_unknown_model(client: Client) -> None:
    with pytest.raises(InferenceError) as info:
        client.model_metadata("no-such-model")
    assert info.value.status == 404


@pytest.mark.parametrize("fmt", V2_FORMATS)
def test_connection_refused(fmt: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, format=fmt, timeout_s=5.0) as c:
        with pytest.raises(ConnectionFailed) as info:
            c.infer("mlp", {"input": np.zeros((1, 20), np.float32)})
        assert isinstance(info.value, ConnectionError)
        assert info.value.url == url and url in str(info.value)
        with pytest.raises(ConnectionFailed):
            c.is_live()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        Client("http://127.0.0.1:1", format="xml")
    with pytest.raises(ValueError, match="unsupported URL"):
        Client("ftp://host")
    with Client("http://127.0.0.1:1") as c, pytest.raises(ValueError, match="at least one input"):
        c.infer("mlp", {})


def test_json_refuses_bytes_that_are_not_utf8(server: Server) -> None:
    with Client(server.url, format="json") as c, pytest.raises(ValueError, match="format='binary'"):
        c.infer("strings", {"text": np.array([[b"\xff"]], dtype=object)})


def test_non_finite_floats(server: Server) -> None:
    x = np.array([[np.nan, np.inf, 1.0]], np.float32)
    n = np.ones((1, 1), np.int64)
    for fmt in V2_FORMATS:
        with Client(server.url, format=fmt) as c:
            got = c.infer("two_io", {"x": x, "n": n}, ["sum"])
            assert np.isnan(got["sum"]).all()


@pytest.mark.parametrize("fmt", V2_FORMATS)
def test_async_client(server: Server, model_dir: Path, fmt: str) -> None:
    async def main() -> None:
        async with AsyncClient(server.url, format=fmt) as c:
            assert await c.is_live() and await c.is_ready()
            assert (await c.model_metadata("two_io"))["name"] == "two_io"
            batches = [model_inputs("two_io", rows) for rows in (1, 2, 3, 4)]
            results = await asyncio.gather(*(c.infer("two_io", b) for b in batches))
            for inputs, got in zip(batches, results, strict=True):
                assert_outputs_equal(got, onnx_reference(model_dir / "two_io.onnx", inputs))
            with pytest.raises(InferenceError, match="unknown model") as info:
                await c.infer("no-such-model", batches[0])
            assert info.value.status == 404

    asyncio.run(main())


def test_async_connection_refused() -> None:
    async def main() -> None:
        async with AsyncClient(f"http://127.0.0.1:{free_port()}") as c:
            with pytest.raises(ConnectionFailed):
                await c.infer("mlp", {"input": np.zeros((1, 20), np.float32)})

    asyncio.run(main())


def test_client_imports_no_server_or_model_runtime() -> None:
    heavy = "{'starlette', 'uvicorn', 'onnxruntime', 'pyarrow'}"
    code = f"import sys, runtime.client; print(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy}))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert out.stdout.strip() == "[]"
