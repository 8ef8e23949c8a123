"""The msgpack body format: requests built from the documented schema with the msgpack
package alone, decoded by `codec_msgpack.decode`; responses encoded by `encode` and
read back by the schema."""

from __future__ import annotations

from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime.client import Client
from runtime.datatypes import V2_TO_NUMPY
from runtime.errors import InvalidInput
from runtime.models import TensorSpec, check_inputs
from runtime.server import codec_msgpack
from runtime.server.codec import InferResponse, select_outputs
from tests.unit.test_codec import (
    FakeModel,
    assert_decoded,
    assert_refusal,
    assert_same_request,
    output_names,
    sent_by_client,
)

DATATYPES = list(V2_TO_NUMPY)
SETTINGS = settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=list(HealthCheck))
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
MODEL = FakeModel([TensorSpec("x", "FP32", (-1, 3))], [TensorSpec("y", "FP32", (-1,))])


def arrays(datatype: str) -> st.SearchStrategy[np.ndarray]:
    if datatype == "BYTES":
        return hnp.arrays(np.dtype(object), SHAPES, elements=st.binary(max_size=8))
    return hnp.arrays(V2_TO_NUMPY[datatype], SHAPES)


def packed(arr: np.ndarray, datatype: str) -> dict[str, Any]:
    """One tensor as the schema says: raw LE bytes, or one bin per BYTES element."""
    if datatype == "BYTES":
        data: Any = list(arr.reshape(-1))
    else:
        data = np.ascontiguousarray(arr, V2_TO_NUMPY[datatype]).tobytes()
    return {"datatype": datatype, "shape": list(arr.shape), "data": data}


def body(doc: Any) -> bytes:
    return msgpack.packb(doc, use_bin_type=True)


def rejects(raw: bytes, match: str | None = None) -> str:
    with pytest.raises(InvalidInput, match=match) as info:
        codec_msgpack.decode(raw, MODEL)
    return str(info.value)


def assert_same(got: np.ndarray, want: np.ndarray, datatype: str) -> None:
    assert got.shape == want.shape
    if datatype == "BYTES":
        assert got.dtype == object
        assert got.reshape(-1).tolist() == want.reshape(-1).tolist()
    else:
        assert got.dtype == V2_TO_NUMPY[datatype]
        # Bit for bit: NaN payloads and the sign of zero survive raw bytes.
        assert got.tobytes() == np.ascontiguousarray(want, V2_TO_NUMPY[datatype]).tobytes()


def unpack_response(raw: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    doc = msgpack.unpackb(raw, raw=False)
    out = {}
    for name, t in doc["outputs"].items():
        if t["datatype"] == "BYTES":
            arr = np.empty(len(t["data"]), dtype=object)
            arr[:] = t["data"]
            out[name] = arr.reshape(t["shape"])
        else:
            out[name] = np.frombuffer(t["data"], V2_TO_NUMPY[t["datatype"]]).reshape(t["shape"])
    return doc, out


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", DATATYPES)
@SETTINGS
@given(data=st.data())
def test_request_round_trip(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype))
    as_list = data.draw(st.booleans())
    tensor = packed(arr, datatype)
    inputs: Any = [{"name": "x", **tensor}] if as_list else {"x": tensor}
    req = codec_msgpack.decode(body({"id": "r1", "inputs": inputs, "outputs": ["y"]}), MODEL)
    assert req.datatypes == {"x": datatype}
    assert_same(req.inputs["x"], arr, datatype)
    assert req.id == "r1"
    assert req.outputs == [("y", True)]


@pytest.mark.parametrize("datatype", DATATYPES)
@SETTINGS
@given(data=st.data())
def test_response_round_trip(datatype: str, data: st.DataObject) -> None:
    a, b = data.draw(arrays(datatype)), data.draw(arrays(datatype))
    raw = codec_msgpack.encode(
        InferResponse(
            model_name="m",
            model_version="3",
            request_id=data.draw(st.none() | st.text(max_size=5)),
            outputs={"a": a, "b": b},
            selected=[("b", True), ("a", False)],
            datatypes={"a": datatype, "b": datatype},
        )
    )
    doc, out = unpack_response(raw)
    assert (doc["model_name"], doc["model_version"]) == ("m", "3")
    assert list(out) == ["b", "a"]
    assert_same(out["a"], a, datatype)
    assert_same(out["b"], b, datatype)


def test_response_converts_outputs_to_their_datatype() -> None:
    raw = codec_msgpack.encode(
        InferResponse(
            model_name="m",
            model_version="1",
            request_id="q",
            outputs={"y": np.array([1.5, 2.5]), "s": np.array(["é", "b"])},
            selected=[("y", True), ("s", True)],
            datatypes={"y": "FP32", "s": "BYTES"},
        )
    )
    doc, out = unpack_response(raw)
    assert doc["id"] == "q"
    assert out["y"].dtype == np.float32 and out["y"].tolist() == [1.5, 2.5]
    assert out["s"].tolist() == ["é".encode(), b"b"]


@pytest.mark.parametrize("datatype", DATATYPES)
@SETTINGS
@given(data=st.data())
def test_responses_are_the_bytes_msgpack_packs_of_the_schema(datatype: str, data: st.DataObject) -> None:
    # encode joins kept heads with the outputs' bytes where it can: the same bytes as the
    # general encoder, whatever the arrays' layout or dtype, every time.
    a = data.draw(arrays(datatype))
    if data.draw(st.booleans()) and a.ndim > 1:
        a = a.T  # not C-contiguous
    if datatype != "BYTES" and data.draw(st.booleans()):
        a = a.astype(a.dtype.newbyteorder(">"))  # not the datatype's own dtype: converted
    request_id = data.draw(st.none() | st.text(max_size=5))
    doc: dict[str, Any] = {"model_name": "m", "model_version": "3"}
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = {"a": packed(np.asarray(a, dtype=V2_TO_NUMPY[datatype]), datatype)}
    for _ in range(2):  # the second from what the first kept
        raw = codec_msgpack.encode(
            InferResponse(
                model_name="m",
                model_version="3",
                request_id=request_id,
                outputs={"a": a},
                selected=[("a", True)],
                datatypes={"a": datatype},
            )
        )
        assert raw == msgpack.packb(doc, use_bin_type=True)


def test_id_is_left_out_when_absent() -> None:
    raw = codec_msgpack.encode(
        InferResponse(
            model_name="m", model_version="1", request_id=None, outputs={}, selected=[], datatypes={}
        )
    )
    assert "id" not in msgpack.unpackb(raw)


def test_defaults_and_parameters() -> None:
    x = np.zeros((1, 3), np.float32)
    raw = body({"inputs": {"x": packed(x, "FP32")}, "parameters": {"timeout": 5}})
    req = codec_msgpack.decode(raw, MODEL)
    assert req.id is None and req.outputs is None and req.parameters == {"timeout": 5}
    assert [name for name, _ in select_outputs(req, MODEL)] == ["y"]


def test_bytes_elements_may_be_str() -> None:
    t = {"datatype": "BYTES", "shape": [2], "data": ["é", b"\xff"]}
    req = codec_msgpack.decode(body({"inputs": {"s": t}}), MODEL)
    assert req.inputs["s"].tolist() == ["é".encode(), b"\xff"]


def test_a_nil_bytes_element_is_a_missing_value() -> None:
    # Kept as None; check_inputs lets a model that takes missing text have it, refuses it for others.
    t = {"datatype": "BYTES", "shape": [2], "data": ["a", None]}
    assert codec_msgpack.decode(body({"inputs": {"s": t}}), MODEL).inputs["s"].tolist() == [b"a", None]


def test_decoded_tensors_feed_the_model_checks() -> None:
    # The decoder keeps the datatype sent; check_inputs converts it by the shared rule
    # (float64 to FP32 is taken since issue 15: numpy's default dtype) or refuses it.
    x = np.arange(6, dtype=np.float64).reshape(2, 3) / 3
    req = codec_msgpack.decode(body({"inputs": {"x": packed(x, "FP64")}}), MODEL)
    assert req.datatypes == {"x": "FP64"}
    taken = check_inputs(MODEL, req.inputs, req.datatypes)
    assert taken["x"].dtype == np.float32 and taken["x"].tobytes() == x.astype(np.float32).tobytes()
    req = codec_msgpack.decode(body({"inputs": {"x": packed(np.zeros((2, 3), "<U1"), "BYTES")}}), MODEL)
    with pytest.raises(InvalidInput, match="the model takes FP32, not BYTES"):
        check_inputs(MODEL, req.inputs, req.datatypes)


# -- malformed bodies -----------------------------------------------------------------------

X = {"datatype": "FP32", "shape": [1, 3], "data": b"\0" * 12}


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "malformed msgpack in request"),
        (b"\xc1", "malformed msgpack in request: FormatError: a byte that starts no msgpack value"),
        (body({"inputs": {}}) + b"\x00", "malformed msgpack"),
        (b"\x81\xa1", "malformed msgpack"),  # truncated
        (b"\xde\xff\xff", "malformed msgpack"),  # map of 65535 entries in 3 bytes
        (b"\x91" * 5000 + b"\xc0", "malformed msgpack"),  # nested too deeply
        (body({1: 2}), "malformed msgpack"),  # int map key
        (b"\x81\xa1\xff\x01", "malformed msgpack"),  # str key that is not UTF-8
        (body([1, 2]), "must be a msgpack map, got list"),
        (body(None), "must be a msgpack map"),
        (body({}), "needs 'inputs'"),
        (body({"inputs": {}}), "'inputs' is empty"),
        (body({"inputs": []}), "'inputs' is empty"),
        (body({"inputs": 3}), "'inputs' must be a map"),
        (body({"inputs": [3]}), "inputs\\[0\\] must be a map"),
        (body({"inputs": [dict(X)]}), "inputs\\[0\\] needs a string name"),
        (body({"inputs": {b"x": X}}), "inputs\\[0\\] needs a string name"),
        (body({"inputs": [{"name": "x", **X}, {"name": "x", **X}]}), "input 'x' is given twice"),
        (body({"inputs": {"x": 5}}), "input 'x' must be a map"),
        (body({"inputs": {"x": {**X, "datatype": 3}}}), "input 'x' needs a string 'datatype'"),
        (body({"inputs": {"x": {**X, "datatype": "FP128"}}}), "unknown datatype 'FP128'"),
        (body({"inputs": {"x": {**X, "datatype": "BF16"}}}), "BF16 is not supported"),
        (body({"inputs": {"x": {**X, "shape": [-1, 3]}}}), "'shape' must be a list of non-negative"),
        (body({"inputs": {"x": {**X, "shape": "3"}}}), "'shape' must be a list"),
        (body({"inputs": {"x": {**X, "shape": [True]}}}), "'shape' must be a list"),
        (body({"inputs": {"x": {**X, "shape": [1] * 33}}}), "at most 32"),
        (body({"inputs": {"x": {**X, "shape": [0, 2**62, 2**62]}}}), "is too large"),
        (body({"inputs": {"x": {"datatype": "FP32", "shape": [1]}}}), "input 'x' has no 'data'"),
        (body({"inputs": {"x": {**X, "shape": [2, 3]}}}), "12 bytes of data do not match shape \\[2, 3\\]"),
        (body({"inputs": {"x": {**X, "data": [0.0] * 3}}}), "'data' must be bin .* got list"),
        (body({"inputs": {"x": {**X, "data": "abc"}}}), "'data' must be bin .* got str"),
        (body({"inputs": {"x": {"datatype": "BOOL", "shape": [2], "data": b"\1\2"}}}), "BOOL bytes"),
        (body({"inputs": {"s": {"datatype": "BYTES", "shape": [2], "data": b"ab"}}}), "array of bin"),
        (body({"inputs": {"s": {"datatype": "BYTES", "shape": [2], "data": [b"a"]}}}), "1 BYTES elements"),
        (body({"inputs": {"s": {"datatype": "BYTES", "shape": [1], "data": [1]}}}), "or nil, got int"),
        (body({"inputs": {"x": X}, "parameters": [1]}), "'parameters' must be an object"),
        (body({"inputs": {"x": X}, "id": 7}), "'id' must be a string"),
        (body({"inputs": {"x": X}, "outputs": "y"}), "'outputs' must be a list of output names"),
        (body({"inputs": {"x": X}, "outputs": [{"name": "y"}]}), "must be a list of output names"),
    ],
)
def test_malformed(raw: bytes, match: str) -> None:
    rejects(raw, match)


def test_unknown_output_is_refused_by_select_outputs() -> None:
    req = codec_msgpack.decode(body({"inputs": {"x": X}, "outputs": ["nope"]}), MODEL)
    with pytest.raises(InvalidInput, match="unknown output 'nope'"):
        select_outputs(req, MODEL)


# -- fuzzing: a body is decoded into what it declares, or refused as a client's mistake ----


def decodes_or_rejects(raw: bytes) -> None:
    """Refused (assert_refusal), or decoded into the inputs, id and outputs the body declares
    (read with the msgpack package), which runtime.client sends back as the same request."""
    try:
        req = codec_msgpack.decode(raw, MODEL)
    except InvalidInput as exc:
        assert_refusal(exc)
        return
    doc = msgpack.unpackb(raw, raw=False)
    inputs = doc["inputs"]
    pairs = inputs.items() if isinstance(inputs, dict) else [(t["name"], t) for t in inputs]
    assert_decoded(req, {name: (t["datatype"], t["shape"]) for name, t in pairs})
    assert req.id == doc.get("id")
    assert output_names(req) == doc.get("outputs")
    again = codec_msgpack.decode(sent_by_client("msgpack", req).content, MODEL)
    assert_same_request(again, req)
    for name, datatype in req.datatypes.items():
        assert_same(again.inputs[name], req.inputs[name], datatype)


# Bodies the strategies next to never build whole: decoded, and so checked, in every run.
S = {"datatype": "BYTES", "shape": [2, 1], "data": ["é", b"\xff"]}
B = {"datatype": "BOOL", "shape": [], "data": b"\1"}


@FUZZ
@given(raw=st.binary(max_size=200))
@example(body({"inputs": {"s": S, "b": B}, "id": "", "outputs": []}))
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    decodes_or_rejects(raw)


@pytest.mark.parametrize(
    "raw",
    [body({"inputs": {"x": X}, "id": b"\0" * 200}), body({"inputs": {"x": X}, "outputs": [0] * 200})],
    ids=["id", "outputs"],
)
def test_refusal_message_is_short_whatever_the_body_holds(raw: bytes) -> None:
    decodes_or_rejects(raw)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=6)
    | st.binary(max_size=16)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)
TENSOR = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["x", "y"]) | SCALARS,
        "datatype": st.sampled_from([*DATATYPES, "BF16", "FP8"]) | SCALARS,
        "shape": st.lists(st.integers(-2, 5) | SCALARS, max_size=4) | VALUES,
        "data": st.binary(max_size=40) | st.lists(st.binary(max_size=3) | SCALARS, max_size=6) | VALUES,
    },
)
DOC = st.fixed_dictionaries(
    {},
    optional={
        "id": VALUES,
        "inputs": st.dictionaries(st.sampled_from(["x", "s"]), TENSOR | VALUES, max_size=2)
        | st.lists(TENSOR, max_size=3)
        | VALUES,
        "outputs": st.lists(SCALARS, max_size=3) | VALUES,
        "parameters": VALUES,
    },
)


@FUZZ
@given(doc=DOC | VALUES, cut=st.integers(0, 8))
@example({"id": "r1", "inputs": [{"name": "x", **X}, {"name": "s", **S}], "outputs": ["y"]}, 0)
def test_fuzz_documents(doc: Any, cut: int) -> None:
    raw = body(doc)
    decodes_or_rejects(raw)
    decodes_or_rejects(raw[: len(raw) - cut])


# -- runtime.client speaks the same schema --------------------------------------------------


def serve_with_codec(m: FakeModel) -> httpx.MockTransport:
    """The server's side of a msgpack infer call, on an in-memory transport."""

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"] in codec_msgpack.CONTENT_TYPES
        req = codec_msgpack.decode(request.content, m)
        check_inputs(m, req.inputs, req.datatypes)
        raw = codec_msgpack.encode(
            InferResponse(
                model_name=m.name,
                model_version=m.version,
                request_id=req.id,
                outputs=m.predict(req.inputs),
                selected=select_outputs(req, m),
                datatypes={o.name: o.datatype for o in m.outputs},
            )
        )
        return httpx.Response(200, content=raw, headers={"content-type": codec_msgpack.CONTENT_TYPES[0]})

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("datatype", DATATYPES)
@SETTINGS
@given(data=st.data())
def test_client_round_trip(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype))
    spec = (TensorSpec("x", datatype, arr.shape),)
    m = FakeModel(spec, spec)
    with Client("http://mlrt", format="msgpack", transport=serve_with_codec(m)) as c:
        got = c.infer("fake", {"x": arr}, request_id="r", timeout_us=5)
    assert_same(got["x"], arr, datatype)
