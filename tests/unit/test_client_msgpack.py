"""runtime._client_msgpack: the client's msgpack shortcuts give what the general encoder
and decoder give, byte for byte and array for array, or step aside."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest

from runtime._client_msgpack import Answers, encode_inputs
from runtime.formats import (
    as_tensor,
    msgpack_bin_header,
    msgpack_dumps,
    msgpack_loads,
    tensor_to_msgpack,
    tensors_from_msgpack,
)

RNG = np.random.default_rng(0)

INPUTS = [
    {"input": RNG.standard_normal((1, 20)).astype(np.float32)},
    {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array([[1], [2]], np.int64)},
    {"bin16": np.zeros((10, 100), np.float32)},  # 4,000 bytes
    {"bin32": np.zeros((100, 100), np.float64)},  # 80,000 bytes
    {"empty": np.zeros((0, 3), np.float32)},
    {"scalar": np.array(3.0, np.float32)},
    {"flags": np.array([True, False])},
    {"ü" * 40: np.ones((2,), np.int8)},  # a name longer than a fixstr
    {f"in{i}": np.full((1, 2), i, np.uint16) for i in range(15)},
]


def general(inputs: dict[str, Any]) -> bytes:
    tensors = {name: as_tensor(name, value) for name, value in inputs.items()}
    return msgpack_dumps({"inputs": {name: tensor_to_msgpack(a, dt) for name, (a, dt) in tensors.items()}})


@pytest.mark.parametrize("inputs", INPUTS, ids=lambda d: ",".join(d)[:20])
def test_requests_equal_the_general_encoders_bytes(inputs: dict[str, Any]) -> None:
    heads: dict = {}
    tensors = {name: as_tensor(name, value) for name, value in inputs.items()}
    first = encode_inputs(tensors, heads)
    assert first == general(inputs)
    assert encode_inputs(tensors, heads) == first  # from the kept heads
    assert len(heads) == len(inputs)


def test_requests_it_leaves_to_the_general_encoder() -> None:
    many = {f"in{i}": as_tensor("x", np.ones(1, np.int8)) for i in range(16)}
    assert encode_inputs(many, {}) is None  # past a fixmap
    strings = {"s": as_tensor("s", np.array([b"a", b"bc"], dtype=object))}
    assert encode_inputs(strings, {}) is None
    t = np.arange(6, dtype=np.float32).reshape(2, 3).T
    assert encode_inputs({"t": (t, "FP32")}, {}) is None  # not C-contiguous: no plain buffer


def test_bin_headers() -> None:
    for n in (0, 255, 256, 65535, 65536):
        assert msgpack.packb(b"\0" * n) == msgpack_bin_header(n) + b"\0" * n
    assert msgpack_bin_header(2**32 - 1) == b"\xc6\xff\xff\xff\xff"


def answer(outputs: dict[str, np.ndarray], **extra: Any) -> bytes:
    doc = {"model_name": "m", "model_version": "1", **extra}
    doc["outputs"] = {name: tensor_to_msgpack(a, as_tensor(name, a)[1]) for name, a in outputs.items()}
    return msgpack_dumps(doc)


def general_decode(body: bytes) -> dict[str, np.ndarray]:
    return tensors_from_msgpack(msgpack_loads(body, "response")["outputs"], "outputs")[0]


def learned(body: bytes) -> Answers:
    answers = Answers()
    assert answers.decode(body) is None  # not seen yet
    answers.learn(body, msgpack_loads(body, "response"))
    return answers


def assert_same(got: dict[str, np.ndarray] | None, want: dict[str, np.ndarray]) -> None:
    assert got is not None and list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
        np.testing.assert_array_equal(got[name], want[name])
        assert not got[name].flags.writeable and got[name].flags.aligned


@pytest.mark.parametrize(
    "outputs",
    [
        {"output": np.array([[0.25, 0.75]], np.float32)},
        {"sum": np.arange(4, dtype=np.float32).reshape(4, 1), "twice": np.arange(4).reshape(4, 1)},
        {"big": np.ones((300, 100), np.float64)},
        {"none": np.zeros((0, 2), np.float32)},
    ],
    ids=lambda d: ",".join(d),
)
def test_answers_decode_as_the_general_decoder_does(outputs: dict[str, np.ndarray]) -> None:
    body = answer(outputs)
    answers = learned(body)
    assert_same(answers.decode(body), general_decode(body))
    # Another answer of the same layout: other values, the same bytes around them.
    changed = {name: (a + 1).astype(a.dtype) for name, a in outputs.items()}
    other = answer(changed)
    assert len(other) == len(body)
    assert_same(answers.decode(other), changed)


def test_answers_of_another_layout_are_left_to_the_general_decoder() -> None:
    body = answer({"output": np.zeros((1, 2), np.float32)})
    answers = learned(body)
    # The same length, other bytes around the data: another model, another output name.
    for other in (
        answer({"output": np.zeros((1, 2), np.float32)}).replace(b"\xa1m", b"\xa1n", 1),
        answer({"outpuT": np.zeros((1, 2), np.float32)}),
        answer({"output": np.zeros((2, 1), np.float32)}),
        answer({"output": np.zeros((1, 4), np.float16)}),  # the same 8 bytes of data
    ):
        assert len(other) == len(body) and other != body
        assert answers.decode(other) is None
    assert answers.decode(body + b"\0") is None  # another length


@pytest.mark.parametrize(
    "body",
    [
        answer({"output": np.zeros((1, 2), np.float32)}, id="r1"),  # changes from call to call
        answer({"s": np.array([b"a", b"bc"], dtype=object)}),  # BYTES
        msgpack.packb({"outputs": {"o": {"datatype": "FP32", "shape": [3], "data": b"\0" * 8}}}),  # misfit
        msgpack.packb({"outputs": []}),
        # What another encoder might write: a str 8 where msgpack-python writes a fixstr.
        b"\x81\xd9\x07outputs\x81\xa1o\x83\xa8datatype\xa4FP32\xa5shape\x91\x01\xa4data\xc4\x04\0\0\0\0",
    ],
)
def test_answers_it_does_not_learn(body: bytes) -> None:
    answers = Answers()
    try:
        doc = msgpack.unpackb(body)
    except ValueError:
        doc = {}
    answers.learn(body, doc)
    assert answers.decode(body) is None
