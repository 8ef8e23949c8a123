"""The Arrow IPC stream body format: requests built with pyarrow as a client builds them,
decoded by `codec_arrow.decode`; responses encoded by `encode` and read back with pyarrow."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime.client import Client
from runtime.datatypes import V2_TO_NUMPY
from runtime.errors import InvalidInput
from runtime.models import TensorSpec, check_inputs
from runtime.server import codec_arrow
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
ARROW_TYPE = {
    "BOOL": pa.bool_(),
    "UINT8": pa.uint8(),
    "UINT16": pa.uint16(),
    "UINT32": pa.uint32(),
    "UINT64": pa.uint64(),
    "INT8": pa.int8(),
    "INT16": pa.int16(),
    "INT32": pa.int32(),
    "INT64": pa.int64(),
    "FP16": pa.float16(),
    "FP32": pa.float32(),
    "FP64": pa.float64(),
    "BYTES": pa.binary(),
}


def model(inputs: Mapping[str, tuple[str, Sequence[int]]], outputs: Sequence[str] = ("y",)) -> FakeModel:
    return FakeModel(
        [TensorSpec(n, dt, tuple(shape)) for n, (dt, shape) in inputs.items()],
        [TensorSpec(n, "FP32", (-1,)) for n in outputs],
    )


def column(arr: np.ndarray, datatype: str) -> pa.Array:
    """A tensor as the documented mapping: rows, then one fixed_size_list level per extra dim."""
    flat = arr.reshape(-1)
    if datatype == "BYTES":
        col = pa.array(flat.tolist(), type=pa.binary())
    else:
        col = pa.array(flat, type=ARROW_TYPE[datatype])
    for j in range(arr.ndim - 1, 0, -1):
        if arr.shape[j]:
            col = pa.FixedSizeListArray.from_arrays(col, arr.shape[j])
        else:  # from_arrays cannot build a list size of 0
            col = pa.array([[]] * int(np.prod(arr.shape[:j])), type=pa.list_(col.type, 0))
    return col


def stream(
    columns: Mapping[str, pa.Array], metadata: Mapping[str, str] | None = None, batches: int = 1
) -> bytes:
    schema = pa.schema([(n, c.type) for n, c in columns.items()], metadata=metadata)
    batch = pa.record_batch(list(columns.values()), schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        for _ in range(batches):
            writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def read(raw: bytes) -> tuple[dict[bytes, bytes], dict[str, pa.Array]]:
    table = pa.ipc.open_stream(pa.BufferReader(raw)).read_all()
    cols = {n: table.column(n).combine_chunks() for n in table.schema.names}
    return dict(table.schema.metadata or {}), cols


def tensor(col: pa.Array) -> np.ndarray:
    """Back from the documented mapping with plain pyarrow."""
    dims = [len(col)]
    while pa.types.is_fixed_size_list(col.type):
        dims.append(col.type.list_size)
        col = col.flatten()
    if pa.types.is_binary(col.type):
        out = np.empty(len(col), dtype=object)
        out[:] = col.to_pylist()
        return out.reshape(dims)
    return col.to_numpy(zero_copy_only=False).reshape(dims)


def assert_same(got: np.ndarray, want: np.ndarray, datatype: str) -> None:
    assert got.shape == want.shape
    if datatype == "BYTES":
        assert got.dtype == object
        assert got.reshape(-1).tolist() == want.reshape(-1).tolist()
    else:
        assert got.dtype == V2_TO_NUMPY[datatype]
        assert got.tobytes() == np.ascontiguousarray(want, V2_TO_NUMPY[datatype]).tobytes()


def arrays(datatype: str, shape: Any = None) -> st.SearchStrategy[np.ndarray]:
    shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=3) if shape is None else shape
    if datatype == "BYTES":
        return hnp.arrays(np.dtype(object), shapes, elements=st.binary(max_size=6))
    return hnp.arrays(V2_TO_NUMPY[datatype], shapes)


def rejects(raw: bytes, match: str | None = None, m: Any = None) -> str:
    with pytest.raises(InvalidInput, match=match) as info:
        codec_arrow.decode(raw, m or model({"x": ("FP32", (-1, 3))}))
    return str(info.value)


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", DATATYPES)
@SETTINGS
@given(data=st.data())
def test_request_round_trip(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype))
    m = model({"x": (datatype, (-1, *arr.shape[1:]))})
    req = codec_arrow.decode(stream({"x": column(arr, datatype)}), m)
    assert req.datatypes == {"x": datatype}
    assert_same(req.inputs["x"], arr, datatype)
    check_inputs(m, req.inputs, req.datatypes)


@pytest.mark.parametrize("datatype", DATATYPES)
@SETTINGS
@given(data=st.data())
def test_response_round_trip(datatype: str, data: st.DataObject) -> None:
    a = data.draw(arrays(datatype))
    inner = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
    b = data.draw(arrays(datatype, shape=(a.shape[0], *inner)))
    rid = data.draw(st.none() | st.text(max_size=5))
    raw = codec_arrow.encode(
        InferResponse(
            model_name="m",
            model_version="3",
            request_id=rid,
            outputs={"a": a, "b": b},
            selected=[("b", True), ("a", False)],
            datatypes={"a": datatype, "b": datatype},
        )
    )
    metadata, cols = read(raw)
    assert metadata[b"mlrt.model_name"] == b"m" and metadata[b"mlrt.model_version"] == b"3"
    assert metadata.get(b"mlrt.id") == (None if rid is None else rid.encode())
    assert list(cols) == ["b", "a"]
    assert cols["a"].type.equals(column(a, datatype).type)
    assert_same(tensor(cols["a"]), a, datatype)
    assert_same(tensor(cols["b"]), b, datatype)


def test_metadata_id_outputs_parameters() -> None:
    x = column(np.zeros((2, 3), np.float32), "FP32")
    meta = {"mlrt.id": "r-7", "mlrt.outputs": json.dumps(["y"]), "mlrt.parameters": '{"timeout": 5}'}
    req = codec_arrow.decode(stream({"x": x}, meta), model({"x": ("FP32", (-1, 3))}))
    assert (req.id, req.outputs, req.parameters) == ("r-7", [("y", True)], {"timeout": 5})
    req = codec_arrow.decode(stream({"x": x}), model({"x": ("FP32", (-1, 3))}))
    assert (req.id, req.outputs, req.parameters) == (None, None, {})


def test_list_column_of_equal_lengths_is_a_fixed_size_list() -> None:
    col = pa.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], type=pa.list_(pa.float32()))
    req = codec_arrow.decode(stream({"x": col}), model({"x": ("FP32", (-1, 3))}))
    assert req.inputs["x"].tolist() == [[1, 2, 3], [4, 5, 6]]
    empty = pa.array([], type=pa.large_list(pa.float32()))
    req = codec_arrow.decode(stream({"x": empty}), model({"x": ("FP32", (-1, 3))}))
    assert req.inputs["x"].shape == (0, 3)


def test_sliced_columns_are_read_from_their_offset() -> None:
    col = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(12, dtype=np.float32)), 3).slice(1, 2)
    req = codec_arrow.decode(stream({"x": col}), model({"x": ("FP32", (-1, 3))}))
    assert req.inputs["x"].tolist() == [[3, 4, 5], [6, 7, 8]]


def test_plain_column_for_a_one_wide_input() -> None:
    req = codec_arrow.decode(stream({"n": pa.array([1, 2], pa.int64())}), model({"n": ("INT64", (-1, 1))}))
    assert req.inputs["n"].shape == (2, 1)


def test_strings_are_bytes() -> None:
    for t in (pa.string(), pa.large_string(), pa.large_binary(), pa.string_view()):
        col = pa.array(["é", "b"], type=t)
        req = codec_arrow.decode(stream({"s": col}), model({"s": ("BYTES", (-1,))}))
        assert req.datatypes == {"s": "BYTES"}
        assert req.inputs["s"].tolist() == ["é".encode(), b"b"]


def test_a_null_in_a_float_column_is_nan() -> None:
    # pa.Table.from_pandas writes a pandas NaN as null: a frame's missing number was a 400
    # here while `mlrt predict` reads the same null from a file as NaN.
    import pandas as pd

    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0]})
    col = pa.Table.from_pandas(frame, preserve_index=False).column("x").combine_chunks()
    assert col.null_count == 1
    req = codec_arrow.decode(stream({"x": col}), model({"x": ("FP64", (-1,))}))
    np.testing.assert_array_equal(req.inputs["x"], [1.0, np.nan, 3.0])
    nested = pa.array([[1.0, None, 3.0]], pa.list_(pa.float32(), 3))
    req = codec_arrow.decode(stream({"x": nested}), model({"x": ("FP32", (-1, 3))}))
    np.testing.assert_array_equal(req.inputs["x"], np.array([[1.0, np.nan, 3.0]], np.float32))


def test_a_null_in_a_text_column_is_a_missing_value() -> None:
    # A null number of an integer or bool column has no tensor form (NaN is the missing number).
    for t in (pa.string(), pa.binary()):
        col = pa.array(["a", None, "b"] if t == pa.string() else [b"a", None, b"b"], type=t)
        req = codec_arrow.decode(stream({"s": col}), model({"s": ("BYTES", (-1,))}))
        assert req.inputs["s"].tolist() == [b"a", None, b"b"]


@pytest.mark.parametrize(
    ("arrow_type", "datatype"),
    [
        (pa.int32(), "INT64"),
        (pa.uint32(), "INT64"),
        (pa.int16(), "FP32"),
        (pa.uint8(), "FP16"),
        (pa.int32(), "FP64"),
        (pa.float16(), "FP32"),
        (pa.float32(), "FP64"),
        # Taken since issue 15 (runtime/convert.py): rounded as numpy's astype rounds.
        (pa.float64(), "FP32"),
        (pa.int64(), "FP64"),
        (pa.bool_(), "FP32"),
    ],
)
def test_columns_keep_their_type_and_check_inputs_converts(arrow_type: pa.DataType, datatype: str) -> None:
    values = [True, False] if arrow_type == pa.bool_() else [1, 2]
    m = model({"v": (datatype, (-1,))})
    req = codec_arrow.decode(stream({"v": pa.array(values, arrow_type)}), m)
    assert req.datatypes["v"] != datatype
    taken = check_inputs(m, req.inputs, req.datatypes)
    assert taken["v"].dtype == V2_TO_NUMPY[datatype] and taken["v"].tolist() == values


@pytest.mark.parametrize(
    ("arrow_type", "datatype"),
    [
        (pa.int64(), "INT32"),
        (pa.int8(), "UINT8"),
        (pa.uint64(), "INT64"),
        (pa.float32(), "INT32"),
        (pa.bool_(), "INT8"),
        (pa.string(), "FP32"),
    ],
)
def test_unsafe_conversions_are_refused(arrow_type: pa.DataType, datatype: str) -> None:
    values = ["a"] if pa.types.is_string(arrow_type) else [True] if arrow_type == pa.bool_() else [1]
    m = model({"v": (datatype, (-1,))})
    req = codec_arrow.decode(stream({"v": pa.array(values, arrow_type)}), m)
    with pytest.raises(InvalidInput) as info:
        check_inputs(m, req.inputs, req.datatypes)
    message = str(info.value)
    assert "input 'v'" in message and req.datatypes["v"] in message and datatype in message


def test_unknown_column_keeps_its_type_for_check_inputs() -> None:
    m = model({"x": ("FP32", (-1,))})
    req = codec_arrow.decode(stream({"z": pa.array([1.0])}), m)
    assert req.datatypes == {"z": "FP64"}
    with pytest.raises(InvalidInput, match="unexpected input 'z'"):
        check_inputs(m, req.inputs, req.datatypes)


@pytest.mark.parametrize("shape", [(), (2, 2, 2, 2, 2)])
def test_output_rank_outside_the_mapping(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidInput, match="rank 1 to 4"):
        codec_arrow.encode(
            InferResponse(
                model_name="m",
                model_version="1",
                request_id=None,
                outputs={"y": np.zeros(shape)},
                selected=[("y", True)],
                datatypes={"y": "FP32"},
            )
        )


def test_outputs_of_different_lengths() -> None:
    with pytest.raises(InvalidInput, match="different first dimensions"):
        codec_arrow.encode(
            InferResponse(
                model_name="m",
                model_version="1",
                request_id=None,
                outputs={"a": np.zeros(2), "b": np.zeros(3)},
                selected=[("a", True), ("b", True)],
                datatypes={"a": "FP32", "b": "FP32"},
            )
        )


# -- malformed streams ----------------------------------------------------------------------

GOOD = stream({"x": column(np.zeros((2, 3), np.float32), "FP32")})


def deep(levels: int) -> pa.Array:
    col = pa.array([1.0, 2.0])
    for _ in range(levels):
        col = pa.FixedSizeListArray.from_arrays(col, 1)
    return col


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "malformed Arrow IPC stream"),
        (b"not arrow at all", "malformed Arrow IPC stream"),
        (GOOD[: len(GOOD) // 2], "malformed Arrow IPC stream"),
        (GOOD[:-20], "malformed Arrow IPC stream"),
        (stream({"x": column(np.zeros((2, 3), np.float32), "FP32")}, batches=0), "has no record batch"),
        (stream({"x": column(np.zeros((2, 3), np.float32), "FP32")}, batches=2), "several record batches"),
        (stream({}), "no columns"),
        (stream({"x": deep(4)}), "nested deeper than 3 levels"),
        (stream({"x": pa.array([1, None], pa.int64())}), "1 null values; INT64 tensors cannot hold"),
        (stream({"x": pa.array([[1.0], None], pa.list_(pa.float32(), 1))}), "1 null lists"),
        (stream({"x": pa.array([[1, None, 3]], pa.list_(pa.int32(), 3))}), "null values"),
        (stream({"x": pa.array([[1.0, 2.0, 3.0], [1.0]], pa.list_(pa.float32()))}), "list lengths differ"),
        (stream({"x": pa.array([{"a": 1}])}), "unsupported Arrow type struct"),
        (stream({"x": pa.array(["a"]).dictionary_encode()}), "unsupported Arrow type dictionary"),
        (stream({"x": pa.array([1], pa.timestamp("s"))}), "unsupported Arrow type timestamp"),
        (stream({"x": pa.array([1.0], pa.float32())}, {"mlrt.outputs": "y"}), "not valid JSON"),
        (stream({"x": pa.array([1.0], pa.float32())}, {"mlrt.outputs": '{"a": 1}'}), "must be a JSON list"),
        (stream({"x": pa.array([1.0], pa.float32())}, {"mlrt.outputs": "[1]"}), "list of output names"),
        (stream({"x": pa.array([1.0], pa.float32())}, {"mlrt.parameters": "[]"}), "must be a JSON dict"),
    ],
)
def test_malformed(raw: bytes, match: str) -> None:
    rejects(raw, match)


def test_duplicate_columns() -> None:
    col = pa.array([1.0], pa.float32())
    schema = pa.schema([("x", col.type), ("x", col.type)])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(pa.record_batch([col, col], schema=schema))
    rejects(sink.getvalue().to_pybytes(), "column 'x' is given twice")


def test_metadata_that_is_not_utf8() -> None:
    raw = stream({"x": pa.array([1.0], pa.float32())}, {b"mlrt.id": b"\xff"})  # type: ignore[dict-item]
    rejects(raw, "'mlrt.id' is not UTF-8")


def test_offsets_past_the_data_are_caught_before_reading() -> None:
    # A client controls every buffer: a string column whose offsets point past its data.
    raw = stream({"s": pa.array(["ab", "cd"])})
    offsets = np.array([0, 2, 4], np.int32).tobytes()
    assert raw.count(offsets) == 1
    raw = raw.replace(offsets, np.array([0, 2, 400], np.int32).tobytes())
    rejects(raw, "malformed Arrow IPC stream", model({"s": ("BYTES", (-1,))}))


def test_stream_without_its_end_marker() -> None:
    # The 8-byte end-of-stream marker is optional in the IPC format.
    assert codec_arrow.decode(GOOD[:-8], model({"x": ("FP32", (-1, 3))})).inputs["x"].shape == (2, 3)


# -- fuzzing: a stream is decoded into what it holds, or refused as a client's mistake ----

DATATYPE_OF = {t: datatype for datatype, t in ARROW_TYPE.items()}
LISTS = ("fixed_size_list", "list", "large_list")
# The types of a BYTES column (runtime/formats.py): bytes, or text as UTF-8.
BINARIES = ("binary", "large_binary", "fixed_size_binary", "binary_view")
TEXTS = (*BINARIES, "string", "large_string", "string_view")


def is_a(t: pa.DataType, kinds: Sequence[str]) -> bool:
    return any(getattr(pa.types, f"is_{kind}")(t) for kind in kinds)


def sent_columns(cols: Mapping[str, pa.Array], m: FakeModel) -> dict[str, tuple[str, list[int]]]:
    """What the columns of a stream that was decoded hold: name -> (datatype, shape). The shape
    is the rows, then each list level's size; an empty variable-size list level is as wide as
    the model's input says, and a plain column for an input [-1, 1] is one wide."""
    specs = {spec.name: spec.shape for spec in m.inputs}
    sent = {}
    for name, col in cols.items():
        shape = [len(col)]
        while is_a(col.type, LISTS):
            if pa.types.is_fixed_size_list(col.type):
                shape.append(col.type.list_size)
            elif len(col):
                shape.append(col.value_lengths()[0].as_py())
            else:
                inner = specs.get(name, ())
                shape.append(max(inner[len(shape)] if len(shape) < len(inner) else -1, 0))
            col = col.flatten()
        if len(shape) == 1 and tuple(specs.get(name, ())) == (-1, 1):
            shape.append(1)
        sent[name] = ("BYTES" if is_a(col.type, TEXTS) else DATATYPE_OF[col.type], shape)
    return sent


def decodes_or_rejects(raw: bytes, m: Any = None) -> None:
    """Refused (assert_refusal), or decoded into the columns, id and outputs the stream holds
    (read with pyarrow), which runtime.client sends back as the same request."""
    m = m or model({"x": ("FP32", (-1, 3))})
    try:
        req = codec_arrow.decode(raw, m)
    except InvalidInput as exc:
        assert_refusal(exc)
        return
    metadata, cols = read(raw)
    assert_decoded(req, sent_columns(cols, m))
    assert req.id == (metadata[b"mlrt.id"].decode() if b"mlrt.id" in metadata else None)
    outputs = json.loads(metadata[b"mlrt.outputs"]) if b"mlrt.outputs" in metadata else None
    assert output_names(req) == outputs
    again = codec_arrow.decode(sent_by_client("arrow", req).content, m)
    assert_same_request(again, req)
    for name, datatype in req.datatypes.items():
        assert_same(again.inputs[name], req.inputs[name], datatype)


# Streams the strategies next to never build whole: decoded, and so checked, in every run.
LISTS_AND_TEXT = {
    "x": pa.array([[1.0, 2.0, 3.0]], pa.list_(pa.float32())),
    "s": pa.array(["é"], pa.string()),
    "b": pa.array([True], pa.bool_()),
}


@FUZZ
@given(raw=st.binary(max_size=300))
@example(stream(LISTS_AND_TEXT, {"mlrt.id": "r", "mlrt.outputs": '["y"]'}))
@example(stream({"x": pa.array([], pa.large_list(pa.float16()))}))  # as wide as the model's input
def test_fuzz_arbitrary_bytes(raw: bytes) -> None:
    decodes_or_rejects(raw)


def test_refusal_message_is_short_whatever_the_body_holds() -> None:
    decodes_or_rejects(stream({"x": pa.array([1.0], pa.float32())}, {"mlrt.outputs": json.dumps([0] * 200)}))


@FUZZ
@given(data=st.data())
def test_fuzz_corrupted_streams(data: st.DataObject) -> None:
    datatype = data.draw(st.sampled_from(DATATYPES))
    arr = data.draw(arrays(datatype))
    raw = bytearray(stream({"x": column(arr, datatype)}))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, 16))
    decodes_or_rejects(bytes(raw[: len(raw) - cut]), model({"x": (datatype, (-1, *arr.shape[1:]))}))


def test_field_name_that_is_not_utf8() -> None:
    raw = stream({"xé": pa.array([1.0], pa.float32())})
    assert raw.count("xé".encode()) == 1
    rejects(raw.replace("xé".encode(), b"x\xc3\x28"), "malformed Arrow IPC stream")


# -- runtime.client speaks the same mapping -------------------------------------------------


def serve_with_codec(m: FakeModel) -> httpx.MockTransport:
    """The server's side of an Arrow infer call, on an in-memory transport."""

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"] == codec_arrow.CONTENT_TYPE
        req = codec_arrow.decode(request.content, m)
        check_inputs(m, req.inputs, req.datatypes)
        assert req.id == "r" and req.parameters == {"timeout": 5}
        raw = codec_arrow.encode(
            InferResponse(
                model_name=m.name,
                model_version=m.version,
                request_id=req.id,
                outputs=m.predict(req.inputs),
                selected=select_outputs(req, m),
                datatypes={o.name: o.datatype for o in m.outputs},
            )
        )
        return httpx.Response(200, content=raw, headers={"content-type": codec_arrow.CONTENT_TYPE})

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("datatype", DATATYPES)
@SETTINGS
@given(data=st.data())
def test_client_round_trip(datatype: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(datatype))
    spec = (TensorSpec("x", datatype, (-1, *arr.shape[1:])),)
    m = FakeModel(spec, spec)
    with Client("http://mlrt", format="arrow", transport=serve_with_codec(m)) as c:
        got = c.infer("fake", {"x": arr}, ["x"], request_id="r", timeout_us=5)
    assert_same(got["x"], arr, datatype)
