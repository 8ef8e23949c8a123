"""The Open Inference Protocol codec: requests built as a V2 client builds them,
decoded by `decode_request`; responses encoded by `encode_response` and parsed
back as tritonclient parses them."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime.client import Client, InferenceError
from runtime.datatypes import V2_TO_NUMPY
from runtime.errors import InvalidInput
from runtime.models import Tensors, TensorSpec
from runtime.server.codec import InferRequest, InferResponse, decode_request, encode_response, select_outputs
from runtime.server.errors import Failure, failure

DATATYPES = list(V2_TO_NUMPY)
NUMERIC = [d for d in DATATYPES if d != "BYTES"]
FLOATS = ["FP16", "FP32", "FP64"]
INTS = ["UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"]
SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])


class FakeModel:
    """A model the codec can be pointed at; `fn` computes outputs from inputs."""

    platform = "fake"

    def __init__(
        self,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec] = (),
        fn: Callable[[Tensors], Tensors] | None = None,
        name: str = "fake",
        version: str = "1",
    ) -> None:
        self.name = name
        self.version = version
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self._fn = fn or (lambda t: dict(t))

    def predict(self, inputs: Tensors) -> Tensors:
        return self._fn(inputs)

    def close(self) -> None:
        pass


ANY_MODEL = FakeModel([TensorSpec("x", "FP32", (-1, 3))], [TensorSpec("y", "FP32", (-1,))])


# -- building requests as a client does ---------------------------------------------------


def bytes_payload(arr: np.ndarray) -> bytes:
    """The binary form of a BYTES tensor: each element a 4-byte LE length + bytes."""
    return b"".join(struct.pack("<I", len(v)) + v for v in arr.reshape(-1).tolist())


def tensor_bytes(datatype: str, arr: np.ndarray) -> bytes:
    if datatype == "BYTES":
        return bytes_payload(arr)
    return np.ascontiguousarray(arr, dtype=V2_TO_NUMPY[datatype]).tobytes()


def json_data(datatype: str, arr: np.ndarray, nested: bool) -> Any:
    if datatype == "BYTES":
        arr = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(arr)
    if nested and arr.ndim:
        return arr.tolist()
    return arr.reshape(-1).tolist()


def build_request(
    tensors: Mapping[str, tuple[str, np.ndarray]],
    form: str,
    **extra: Any,
) -> tuple[bytes, int | None]:
    """A request body and its Inference-Header-Content-Length (None: no header).

    form is "flat" or "nested" (JSON `data`) or "binary" (binary_data_size).
    """
    inputs, blobs = [], []
    for name, (datatype, arr) in tensors.items():
        doc: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": datatype}
        if form == "binary":
            blob = tensor_bytes(datatype, arr)
            doc["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            doc["data"] = json_data(datatype, arr, nested=form == "nested")
        inputs.append(doc)
    header = json.dumps({**extra, "inputs": inputs}).encode()
    if form != "binary":
        return header, None
    return header + b"".join(blobs), len(header)


def one_input(datatype: str, shape: list[int], **fields: Any) -> bytes:
    return json.dumps({"inputs": [{"name": "x", "datatype": datatype, "shape": shape, **fields}]}).encode()


def binary_request(
    datatype: str, shape: list[int], payload: bytes, size: int | None = None
) -> tuple[bytes, int]:
    header = one_input(
        datatype, shape, parameters={"binary_data_size": len(payload) if size is None else size}
    )
    return header + payload, len(header)


def decode(body: bytes, header_length: int | None = None, model: Any = ANY_MODEL):
    return decode_request(body, header_length, model)


def rejects(body: bytes, header_length: int | None = None, match: str = "", model=ANY_MODEL):
    with pytest.raises(InvalidInput, match=match) as info:
        decode_request(body, header_length, model)
    return str(info.value)


# -- parsing responses as tritonclient does ------------------------------------------------


def parse_bytes(blob: bytes) -> list[bytes]:
    items, pos = [], 0
    while pos < len(blob):
        (n,) = struct.unpack_from("<I", blob, pos)
        items.append(blob[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return items


def parse_response(body: bytes, header_length: int | None) -> tuple[dict, dict[str, np.ndarray]]:
    """tritonclient's InferResult: header length -> JSON; slices by binary_data_size in order."""
    if header_length is None:
        doc, rest = json.loads(body), b""
    else:
        doc, rest = json.loads(body[:header_length]), body[header_length:]
    arrays, pos = {}, 0
    for out in doc["outputs"]:
        datatype, shape = out["datatype"], out["shape"]
        size = out.get("parameters", {}).get("binary_data_size")
        if size is None:
            if datatype == "BYTES":
                data = [s.encode("utf-8") for s in out["data"]]
                arr = np.array(data + [None], dtype=object)[:-1].reshape(shape)
            else:
                arr = np.array(out["data"], dtype=V2_TO_NUMPY[datatype]).reshape(shape)
        else:
            blob = rest[pos : pos + size]
            pos += size
            if datatype == "BYTES":
                items = parse_bytes(blob)
                arr = np.array(items + [None], dtype=object)[:-1].reshape(shape)
            else:
                arr = np.frombuffer(blob, dtype=V2_TO_NUMPY[datatype]).reshape(shape)
        arrays[out["name"]] = arr
    assert pos == len(rest), "binary data left over after the last output"
    return doc, arrays


# -- comparing -----------------------------------------------------------------------------


def assert_same(got: np.ndarray, want: np.ndarray, datatype: str) -> None:
    """Exact equality: dtype, shape, values; NaN equals NaN and the sign of zero counts."""
    assert got.shape == want.shape
    if datatype == "BYTES":
        assert got.dtype == object
        assert got.reshape(-1).tolist() == want.reshape(-1).tolist()
        return
    assert got.dtype == V2_TO_NUMPY[datatype]
    assert np.array_equal(got, want, equal_nan=datatype in FLOATS)
    if datatype in FLOATS:  # JSON keeps the sign of zero and infinity, not of NaN
        numbers = ~np.isnan(want)
        assert np.array_equal(np.signbit(got[numbers]), np.signbit(want[numbers]))


# -- strategies ----------------------------------------------------------------------------

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


def arrays(datatype: str, json_form: bool, shape=SHAPES) -> st.SearchStrategy[np.ndarray]:
    """Arrays of one V2 datatype; BYTES hold UTF-8 text when they must travel as JSON."""
    if datatype == "BYTES":
        elements = TEXT.map(lambda s: s.encode("utf-8")) if json_form else st.binary(max_size=8)
        return hnp.arrays(object, shape, elements=elements)
    return hnp.arrays(V2_TO_NUMPY[datatype], shape)  # floats include NaN and +-inf


# -- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["flat", "nested", "binary"])
@pytest.mark.parametrize("datatype", DATATYPES)
@SETTINGS
@given(data=st.data())
def test_request_round_trip(datatype: str, form: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype, json_form=form != "binary"))
    body, header_length = build_request({"x": (datatype, arr)}, form)
    req = decode(body, header_length)
    assert list(req.inputs) == ["x"]
    assert req.datatypes == {"x": datatype}
    assert_same(req.inputs["x"], arr, datatype)


@pytest.mark.parametrize("form", ["flat", "nested", "binary"])
@SETTINGS
@given(data=st.data())
def test_request_round_trip_of_several_inputs(form: str, data: st.DataObject) -> None:
    names = data.draw(st.lists(st.sampled_from(DATATYPES), min_size=2, max_size=5))
    tensors = {
        f"in{i}": (dt, data.draw(arrays(dt, json_form=form != "binary"))) for i, dt in enumerate(names)
    }
    body, header_length = build_request(tensors, form)
    req = decode(body, header_length)
    assert list(req.inputs) == list(tensors)
    for name, (datatype, arr) in tensors.items():
        assert_same(req.inputs[name], arr, datatype)


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("datatype", DATATYPES)
@SETTINGS
@given(data=st.data())
def test_response_round_trip(datatype: str, binary: bool, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype, json_form=not binary))
    body, header_length = encode_response(
        InferResponse(
            model_name="m",
            model_version="1",
            request_id="req-1",
            outputs={"y": arr},
            selected=[("y", binary)],
            datatypes={"y": datatype},
        )
    )
    assert (header_length is not None) == binary
    doc, got = parse_response(body, header_length)
    assert doc["model_name"] == "m"
    assert doc["model_version"] == "1"
    assert doc["id"] == "req-1"
    assert doc["outputs"][0]["shape"] == list(arr.shape)
    assert doc["outputs"][0]["datatype"] == datatype
    assert_same(got["y"], arr, datatype)


@SETTINGS
@given(data=st.data())
def test_response_mixes_binary_and_json_outputs_in_order(data: st.DataObject) -> None:
    datatypes = data.draw(st.lists(st.sampled_from(DATATYPES), min_size=1, max_size=5))
    flags = data.draw(st.lists(st.booleans(), min_size=len(datatypes), max_size=len(datatypes)))
    outputs = {
        f"out{i}": data.draw(arrays(dt, json_form=not flag))
        for i, (dt, flag) in enumerate(zip(datatypes, flags, strict=True))
    }
    body, header_length = encode_response(
        InferResponse(
            model_name="m",
            model_version="1",
            request_id=None,
            outputs=outputs,
            selected=list(zip(outputs, flags, strict=True)),
            datatypes={f"out{i}": dt for i, dt in enumerate(datatypes)},
        )
    )
    assert (header_length is not None) == any(flags)
    doc, got = parse_response(body, header_length)
    assert "id" not in doc
    assert [o["name"] for o in doc["outputs"]] == list(outputs)
    for (name, arr), datatype in zip(outputs.items(), datatypes, strict=True):
        assert_same(got[name], arr, datatype)


def test_json_carries_nan_and_infinity_as_python_writes_them() -> None:
    body = one_input("FP64", [4], data=[math.nan, math.inf, -math.inf, 1.5])
    assert b"[NaN, Infinity, -Infinity, 1.5]" in body
    x = decode(body).inputs["x"]
    assert np.isnan(x[0]) and x[1] == math.inf and x[2] == -math.inf and x[3] == 1.5
    out, _ = encode_response(
        InferResponse(
            model_name="m",
            model_version="1",
            request_id=None,
            outputs={"y": x.astype(np.float32)},
            selected=[("y", False)],
            datatypes={"y": "FP32"},
        )
    )
    data = json.loads(out)["outputs"][0]["data"]
    assert math.isnan(data[0]) and data[1:] == [math.inf, -math.inf, 1.5]


def test_raw_binary_request_is_the_single_input() -> None:
    model = FakeModel([TensorSpec("x", "FP32", (-1, 3))], [TensorSpec("y", "FP32", (-1,))])
    arr = np.arange(12, dtype=np.float32).reshape(4, 3)
    req = decode(arr.tobytes(), 0, model)
    assert_same(req.inputs["x"], arr, "FP32")
    assert req.outputs is None
    assert select_outputs(req, model) == [("y", True)]  # raw requests get binary outputs


def test_raw_binary_request_needs_one_input() -> None:
    model = FakeModel([TensorSpec("a", "FP32", (-1,)), TensorSpec("b", "FP32", (-1,))])
    rejects(b"\0" * 8, 0, "one input; 'fake' has 2", model)


def test_raw_binary_request_must_fit_the_shape() -> None:
    model = FakeModel([TensorSpec("x", "FP32", (-1, 3))])
    rejects(b"\0" * 10, 0, "raw body of 10 bytes does not fit shape", model)


def test_raw_binary_request_for_a_fixed_shape_must_be_exactly_one_tensor() -> None:
    # BUG: a body that is a multiple of the fixed tensor size escapes as ValueError.
    model = FakeModel([TensorSpec("x", "FP32", (3,))])
    assert_same(decode(b"\0" * 12, 0, model).inputs["x"], np.zeros(3, np.float32), "FP32")
    rejects(b"\0" * 24, 0, "24 bytes", model)


# -- outputs filter, binary flags and id ----------------------------------------------------

TWO_OUT = FakeModel(
    [TensorSpec("x", "FP32", (-1,))],
    [TensorSpec("a", "FP32", (-1,)), TensorSpec("b", "INT64", (-1,))],
)


def request_with(**extra: Any) -> bytes:
    body, _ = build_request({"x": ("FP32", np.ones(2, np.float32))}, "flat", **extra)
    return body


def test_all_outputs_when_none_are_asked_for() -> None:
    req = decode(request_with())
    assert select_outputs(req, TWO_OUT) == [("a", False), ("b", False)]
    req = decode(request_with(parameters={"binary_data_output": True}))
    assert select_outputs(req, TWO_OUT) == [("a", True), ("b", True)]


def test_outputs_filter_and_per_output_binary_flag() -> None:
    req = decode(
        request_with(
            parameters={"binary_data_output": True},
            outputs=[{"name": "b", "parameters": {"binary_data": False}}],
        )
    )
    assert select_outputs(req, TWO_OUT) == [("b", False)]
    asked = [{"name": "b"}, {"name": "a", "parameters": {"binary_data": True}}]
    req = decode(request_with(outputs=asked))
    assert select_outputs(req, TWO_OUT) == [("b", False), ("a", True)]


def test_unknown_output_is_named() -> None:
    req = decode(request_with(outputs=[{"name": "nope"}]))
    with pytest.raises(InvalidInput, match="unknown output 'nope' for model 'fake'"):
        select_outputs(req, TWO_OUT)


def test_output_whose_name_mentions_classification_can_be_asked_for() -> None:
    # BUG: any request whose `outputs` text contains "classification" is refused as the
    # classification extension, even a plain output name.
    outputs = [TensorSpec("classification", "FP32", (-1,))]
    model = FakeModel([TensorSpec("x", "FP32", (-1,))], outputs)
    req = decode(request_with(outputs=[{"name": "classification"}]))
    assert select_outputs(req, model) == [("classification", False)]


def test_classification_extension_is_refused() -> None:
    rejects(
        request_with(outputs=[{"name": "a", "parameters": {"classification": 2}}]),
        match="classification extension is not supported",
    )


@pytest.mark.parametrize("rid", ["abc", "", "42"])
def test_id_is_echoed(rid: str) -> None:
    req = decode(request_with(id=rid))
    assert req.id == rid
    body, _ = encode_response(
        InferResponse(
            model_name="m",
            model_version="1",
            request_id=req.id,
            outputs={"a": np.zeros(1, np.float32)},
            selected=[("a", False)],
            datatypes={"a": "FP32"},
        )
    )
    assert json.loads(body)["id"] == rid
    assert decode(request_with()).id is None


# -- malformed requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "match"),
    [
        ("FP32", [2, 2], [[1, 2], [3]], "ragged"),
        ("INT32", [3], [1, 2], "2 elements do not fill shape \\[3\\] \\(3 expected\\)"),
        ("INT32", [2, 2], [1, 2, 3, 4, 5], "5 elements do not fill shape \\[2, 2\\]"),
        ("BYTES", [3], ["a", "b"], "2 elements for shape \\[3\\]"),
        ("FP32", [-1], [1.0], "'shape' must be a list of non-negative integers"),
        ("FP32", "3", [1.0], "'shape' must be a list of non-negative integers"),
        ("FP32", [1.5], [1.0], "'shape' must be a list of non-negative integers"),
        ("FP32", [True], [1.0], "'shape' must be a list of non-negative integers"),
        ("FP128", [1], [1.0], "unknown datatype 'FP128'"),
        ("fp32", [1], [1.0], "unknown datatype 'fp32'"),
        ("BF16", [1], [1.0], "BF16 is not supported"),
        ("INT8", [1], [128], "out of range for INT8"),
        ("INT8", [1], [-129], "out of range for INT8"),
        ("UINT8", [1], [-1], "out of range for UINT8"),
        ("UINT16", [1], [65536], "out of range for UINT16"),
        ("INT32", [1], [2**31], "out of range for INT32"),
        ("INT64", [1], [2**63], "out of range for INT64"),
        ("INT64", [2], [-1, 2**63], "out of range for INT64"),
        ("UINT64", [1], [2**64], "out of range for UINT64"),
        ("UINT64", [1], [-1], "out of range for UINT64"),
        ("INT32", [2], [1, 2.5], "INT32 data must be integers"),
        ("UINT8", [1], [1.0], "UINT8 data must be integers"),
        ("FP32", [2], [1, "2"], "FP32 data must be numbers"),
        ("INT64", [1], ["1"], "INT64 data must be integers"),
        ("FP64", [1], [None], "FP64 data must be numbers, not null; send NaN"),
        ("FP32", [2, 2], [[1.0, 2.0], [None, 4.0]], "FP32 data must be numbers, not null; send NaN"),
        ("FP32", [1], [{"a": 1}], "FP32 data must be numbers"),
        ("BOOL", [2], [1, 0], "BOOL data must be true/false"),
        ("BYTES", [2], ["a", 1], "BYTES elements must be strings"),
    ],
)
def test_bad_json_tensor(datatype: str, shape: Any, data: Any, match: str) -> None:
    message = rejects(one_input(datatype, shape, data=data), match=match)
    assert "input 'x'" in message or datatype in ("FP128", "fp32", "BF16")


@pytest.mark.parametrize(("datatype", "big"), [("FP16", 1e5), ("FP32", 1e39), ("FP32", -1e300)])
def test_finite_float_too_large_for_its_datatype_is_refused(datatype: str, big: float) -> None:
    # BUG: the value silently becomes +-inf (with a numpy overflow RuntimeWarning);
    # inf has its own JSON spelling, so a finite number that overflows is a client error.
    rejects(one_input(datatype, [1], data=[big]), match=f"out of range for {datatype}")


def test_json_null_in_bytes_data_is_a_missing_value() -> None:
    # Kept as None for the model to take or refuse (check_inputs asks it); text becomes bytes.
    x = decode(one_input("BYTES", [3], data=["a", None, "b"])).inputs["x"]
    assert x.dtype == object and x.tolist() == [b"a", None, b"b"]


def test_nested_data_is_flattened_in_row_major_order() -> None:
    x = decode(one_input("INT32", [2, 3], data=[[1, 2, 3], [4, 5, 6]])).inputs["x"]
    assert x.tolist() == [[1, 2, 3], [4, 5, 6]]
    x = decode(one_input("INT32", [2, 3], data=[1, 2, 3, 4, 5, 6])).inputs["x"]
    assert x.tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(
    ("datatype", "shape", "payload", "size", "match"),
    [
        ("FP32", [2], b"\0" * 4, None, "size 4 does not match shape \\[2\\] of FP32 \\(8 bytes"),
        ("INT64", [1, 2], b"\0" * 24, None, "binary_data_size 24 does not match shape"),
        ("FP32", [2], b"\0" * 8, 12, "binary_data_size 12 overruns the body \\(8 bytes left\\)"),
        ("FP32", [1], b"\0" * 8, 4, "4 bytes of binary data follow the last tensor"),
        ("BYTES", [1], b"\x05\0\0", None, "truncated BYTES length prefix"),
        ("BYTES", [1], b"\x09\0\0\0abc", None, "BYTES element of 9 bytes overruns its tensor"),
        ("BYTES", [2], b"\x01\0\0\0a", None, "1 BYTES elements for shape \\[2\\]"),
        ("BOOL", [2], b"\x01\x02", None, "BOOL bytes must be 0 or 1"),
        ("FP32", [1], b"\0" * 4, -1, "binary_data_size must be a non-negative integer"),
        ("FP32", [1], b"\0" * 4, "4", "binary_data_size must be a non-negative integer"),
        ("BF16", [1], b"\0" * 2, None, "BF16 is not supported"),
    ],
)
def test_bad_binary_tensor(datatype: str, shape: list[int], payload: bytes, size: Any, match: str) -> None:
    body, header_length = binary_request(datatype, shape, payload, size)
    rejects(body, header_length, match)


def test_binary_data_size_without_the_header() -> None:
    body = one_input("FP32", [1], parameters={"binary_data_size": 4})
    rejects(body, None, "binary_data_size but the request has no Inference-Header-Content-Length")


@pytest.mark.parametrize("header_length", [-1, 10_000])
def test_header_length_outside_the_body(header_length: int) -> None:
    body, _ = binary_request("FP32", [1], b"\0" * 4)
    rejects(body, header_length, f"Inference-Header-Content-Length {header_length} is outside")


def test_header_length_that_cuts_the_json_short() -> None:
    body, header_length = binary_request("FP32", [1], b"\0" * 4)
    rejects(body, header_length - 3, "malformed JSON in request")


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "malformed JSON"),
        (b"{", "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"inputs"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b"{}", "needs a non-empty 'inputs' list"),
        (b'{"inputs": []}', "needs a non-empty 'inputs' list"),
        (b'{"inputs": {"name": "x"}}', "needs a non-empty 'inputs' list"),
        (b'{"inputs": [5]}', "inputs\\[0\\] must be an object"),
        (b'{"inputs": [{"shape": [1]}]}', "inputs\\[0\\] needs a string 'name'"),
        (b'{"inputs": [{"name": "x", "shape": [1]}]}', "input 'x' needs a string 'datatype'"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}', "neither 'data' nor"),
        (b'{"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}', "'shape' must be"),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1], "parameters": 3}]}',
            "'parameters' must be an object",
        ),
        (request_with(parameters=[1]), "request: 'parameters' must be an object"),
        (request_with(outputs={"name": "a"}), "'outputs' must be a list"),
        (request_with(outputs=[{"parameters": {}}]), "outputs\\[0\\] needs a string 'name'"),
    ],
)
def test_bad_document(body: bytes, match: str) -> None:
    rejects(body, match=match)


def test_duplicate_input() -> None:
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}] * 2}
    rejects(json.dumps(doc).encode(), match="input 'x' is given twice")


def test_deeply_nested_json_is_invalid_input() -> None:
    # BUG: orjson refuses it, then json.loads raises RecursionError (a 500 on the server).
    rejects(b"[" * 100_000, match="malformed JSON")
    rejects(one_input("FP32", [1], data=None).replace(b"null", b"[" * 100_000), match="JSON")


def test_shape_with_more_dims_than_numpy_supports() -> None:
    # BUG: numpy's ValueError ("maximum supported dimension ... 64") escapes.
    rejects(one_input("FP32", [1] * 65, data=[1.0]), match="shape")
    body, header_length = binary_request("FP32", [1] * 65, b"\0" * 4)
    rejects(body, header_length, "shape")


@pytest.mark.parametrize("datatype", ["FP32", "BYTES"])
def test_empty_shape_with_huge_dims(datatype: str) -> None:
    # BUG: zero elements, but np.zeros/reshape raise ValueError "array is too big".
    rejects(one_input(datatype, [0, 2**62, 2**62], data=[]), match="shape")
    body, header_length = binary_request(datatype, [0, 2**62, 2**62], b"")
    rejects(body, header_length, "shape")


# -- fuzzing: a body is decoded into what it declares, or refused as a client's mistake ----

FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=list(HealthCheck))
MESSAGE_MAX = 500  # characters: a refusal is a sentence or two, whatever the body held
# What a message must not hold: Python's words for a traceback or for an object's repr.
LEAKS = ("Traceback", 'File "', "<built-in", "<function ", "<class '", "<module ", "object at 0x")


def assert_refusal(exc: BaseException) -> str:
    """A refused body: InvalidInput itself (no subclass) with one str, a short message with
    nothing of the interpreter in it, answered with 400 (runtime/server/errors.py)."""
    assert type(exc) is InvalidInput, f"{type(exc).__name__}: {exc}"
    (message,) = exc.args
    assert isinstance(message, str) and str(exc) == message
    assert 0 < len(message) <= MESSAGE_MAX, message
    assert not [leak for leak in LEAKS if leak in message], message
    assert failure(exc) == Failure(400, message)
    return message


def assert_decoded(req: InferRequest, sent: Mapping[str, tuple[str, Sequence[int]]]) -> None:
    """A decoded request holds the inputs sent (name -> (datatype, shape)), in order, each an
    array of its datatype's numpy dtype in its shape; BYTES elements are bytes."""
    assert list(req.inputs) == list(sent)
    assert req.datatypes == {name: datatype for name, (datatype, _) in sent.items()}
    for name, (datatype, shape) in sent.items():
        arr = req.inputs[name]
        assert isinstance(arr, np.ndarray)
        assert arr.dtype == V2_TO_NUMPY[datatype]
        assert arr.shape == tuple(shape)
        if datatype == "BYTES":
            assert all(type(v) is bytes for v in arr.reshape(-1).tolist())


def output_names(req: InferRequest) -> list[str] | None:
    return None if req.outputs is None else [name for name, _ in req.outputs]


def sent_by_client(form: str, req: InferRequest) -> httpx.Request:
    """The infer request runtime.client sends, in `form`, for a decoded request's inputs,
    outputs and id."""
    sent: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503, json={"error": "only the request is wanted"})

    with Client("http://mlrt", format=form, transport=httpx.MockTransport(handle)) as c:
        with pytest.raises(InferenceError):
            c.infer("fake", req.inputs, output_names(req), request_id=req.id)
    return sent[0]


def assert_same_request(again: InferRequest, req: InferRequest) -> None:
    """The same inputs (names in order, datatypes), id and outputs asked for (by name)."""
    assert list(again.inputs) == list(req.inputs)
    assert again.datatypes == req.datatypes
    assert again.id == req.id
    assert output_names(again) == output_names(req)


def assert_bitwise(got: np.ndarray, want: np.ndarray, datatype: str) -> None:
    """Equal as binary tensors carry them: the same bytes (NaN payloads, signed zeros)."""
    assert got.shape == want.shape
    assert got.dtype == want.dtype == V2_TO_NUMPY[datatype]
    if datatype == "BYTES":
        assert got.reshape(-1).tolist() == want.reshape(-1).tolist()
    else:
        assert got.tobytes() == want.tobytes()


def is_text(arr: np.ndarray) -> bool:
    try:
        for v in arr.reshape(-1).tolist():
            v.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def assert_round_trip(req: InferRequest, model: Any) -> None:
    """runtime.client's V2 bodies for a decoded request decode back into it: bit for bit with
    binary tensors; in JSON (where BYTES are UTF-8) NaN-aware, as JSON numbers carry them."""
    text = all(is_text(arr) for name, arr in req.inputs.items() if req.datatypes[name] == "BYTES")
    for form in ("binary", "json") if text else ("binary",):
        request = sent_by_client(form, req)
        header_length = request.headers.get("inference-header-content-length")
        again = decode_request(request.content, None if header_length is None else int(header_length), model)
        assert_same_request(again, req)
        for name, datatype in req.datatypes.items():
            if form == "binary":
                assert_bitwise(again.inputs[name], req.inputs[name], datatype)
            else:
                assert_same(again.inputs[name], req.inputs[name], datatype)


def sent_request(body: bytes, header_length: int | None, model: Any) -> tuple[dict[str, Any], Any, Any]:
    """What a body that was decoded declares, read with json: its inputs (name -> (datatype,
    shape)), id and the names of the outputs it asks for."""
    if header_length == 0:  # raw: the model's one input, its variable dim as long as the body
        (spec,) = model.inputs
        fixed = math.prod(d for d in spec.shape if d != -1) * V2_TO_NUMPY[spec.datatype].itemsize
        shape = [len(body) // fixed if d == -1 else d for d in spec.shape]
        return {spec.name: (spec.datatype, shape)}, None, None
    doc = json.loads(body if header_length is None else body[:header_length])
    inputs = {item["name"]: (item["datatype"], item["shape"]) for item in doc["inputs"]}
    outputs = doc.get("outputs")
    return inputs, doc.get("id"), None if outputs is None else [item["name"] for item in outputs]


def decoded(body: bytes, header_length: int | None, model: Any) -> InferRequest | None:
    """The request a body declares (each input's name, datatype and shape, the id, the outputs
    asked for), or None where it is refused as assert_refusal says."""
    try:
        req = decode_request(body, header_length, model)
    except InvalidInput as exc:
        assert_refusal(exc)
        return None
    inputs, rid, outputs = sent_request(body, header_length, model)
    assert_decoded(req, inputs)
    assert req.id == rid
    assert output_names(req) == outputs
    return req


def decodes_or_rejects(body: bytes, header_length: int | None, model: Any = ANY_MODEL) -> None:
    """Refused, or decoded into what the body declares, which runtime.client sends back as the
    same request."""
    req = decoded(body, header_length, model)
    if req is not None:
        assert_round_trip(req, model)


V2_BODY = {
    "x": ("FP32", np.array([[-0.0, np.nan, np.inf]], np.float32)),
    "s": ("BYTES", np.array([b"\xff", b""], dtype=object)),
    "b": ("BOOL", np.array(True)),
}


@FUZZ
@given(body=st.binary(max_size=200), header_length=st.none() | st.integers(-5, 250))
@example(*build_request(V2_BODY, "binary", id="r"))  # decoded, and so checked
def test_fuzz_arbitrary_bytes(body: bytes, header_length: int | None) -> None:
    decodes_or_rejects(body, header_length)


@FUZZ
@given(body=st.binary(max_size=64), shape=st.lists(st.integers(-1, 4), max_size=3))
@example(b"\1\0\1\1", [-1, 2])
def test_fuzz_raw_binary(body: bytes, shape: list[int]) -> None:
    model = FakeModel([TensorSpec("x", "BOOL", tuple(shape))])
    req = decoded(body, 0, model)
    if req is not None:
        assert_round_trip(req, model)


def test_raw_binary_bool_bytes_must_be_0_or_1() -> None:
    model = FakeModel([TensorSpec("x", "BOOL", (-1,))])
    rejects(b"\1\2", 0, "BOOL bytes must be 0 or 1", model)


@pytest.mark.parametrize(
    "body",
    [
        one_input("BYTES", [1], data=["\ud800"]),
        one_input("FP32", [1], data=[1.0]).replace(b"{", b'{"id": "\\ud800", ', 1),
        one_input("FP32", [1], data=[1.0]).replace(b'"x"', b'"\\udc00"'),
    ],
    ids=["bytes", "id", "name"],
)
def test_lone_surrogates_in_json_are_refused(body: bytes) -> None:
    decodes_or_rejects(body, None)


@pytest.mark.parametrize(
    "body",
    [
        one_input("FP32", "3" * 600, data=[1.0]),
        one_input("FP32", [1], data=[1.0]).replace(b"{", b'{"id": [' + b"0, " * 200 + b"0], ", 1),
    ],
    ids=["shape", "id"],
)
def test_refusal_message_is_short_whatever_the_body_holds(body: bytes) -> None:
    decodes_or_rejects(body, None)


JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)
DIMS = st.lists(st.integers(-2, 5) | JSON_SCALARS, max_size=4)
FUZZ_INPUT = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["x", "y"]) | JSON_SCALARS,
        "datatype": st.sampled_from([*DATATYPES, "BF16", "FP8"]) | JSON_SCALARS,
        "shape": DIMS | JSON_VALUES,
        "data": JSON_VALUES,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-2, 40) | JSON_SCALARS}
        )
        | JSON_VALUES,
    },
)
FUZZ_DOC = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON_VALUES,
        "inputs": st.lists(FUZZ_INPUT, max_size=3) | JSON_VALUES,
        "outputs": st.lists(
            st.fixed_dictionaries({}, optional={"name": JSON_SCALARS, "parameters": JSON_VALUES})
        )
        | JSON_VALUES,
        "parameters": JSON_VALUES,
    },
)

# Documents the strategies above next to never build whole.
DECODED_DOCS = [
    {"id": "r", "inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [math.nan, -0.0]}]},
    {
        "inputs": [
            {"name": "y", "datatype": "INT8", "shape": [1, 1], "data": [[-128]]},
            {"name": "x", "datatype": "UINT16", "shape": [2], "parameters": {"binary_data_size": 4}},
        ],
        "outputs": [{"name": "y"}],
    },
]


@FUZZ
@given(doc=FUZZ_DOC | JSON_VALUES, binary=st.binary(max_size=48), with_header=st.booleans())
@example(DECODED_DOCS[0], b"", False)  # decoded, and so checked, in every run
@example(DECODED_DOCS[1], b"\1\2\3\4", True)
def test_fuzz_json_documents(doc: Any, binary: bytes, with_header: bool) -> None:
    header = json.dumps(doc).encode()
    if with_header:
        decodes_or_rejects(header + binary, len(header))
    else:
        decodes_or_rejects(header, None)
