"""The compiled whole-body V2 JSON decoder against its oracle, the Python decoder.

runtime._native._tensors.v2_json_request may decline any body (None: orjson and the Python
decoder take it), but where it answers, the request must be exactly the one the Python
decoder makes (ids, names, datatypes, and every element's bits), and it must never answer
where the Python decoder refuses. Its numbers are held to Python's float(), which rounds
correctly, as orjson does, including the rare ones its fast rule leaves to strtod.
"""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from runtime._native._tensors import v2_json_request

from runtime.errors import InvalidInput
from runtime.server.codec import decode_document, decode_request
from tests.native.mutations import mutate

SETTINGS = settings(deadline=None, max_examples=600, suppress_health_check=list(HealthCheck))
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check(body: bytes) -> bool:
    """True when the compiled decoder answered (and agreed)."""
    fast = v2_json_request(body)
    try:
        slow = decode_document(body, None, None)
    except InvalidInput:
        assert fast is None, f"the compiled decoder took what the Python decoder refuses: {body!r}"
        return False
    if fast is None:
        return False
    rid, inputs, datatypes = fast
    assert rid == slow.id
    assert slow.parameters == {} and slow.outputs is None and slow.binary_default is False
    assert datatypes == slow.datatypes
    assert list(inputs) == list(slow.inputs)
    for name, arr in slow.inputs.items():
        got = inputs[name]
        assert got.dtype == arr.dtype and got.shape == arr.shape, name
        assert got.tobytes() == arr.tobytes(), (name, got, arr)  # signed zeros included
        assert got.flags.writeable
    return True


def body(data: object, shape: object = None, datatype: str = "FP32", **extra: object) -> bytes:
    values = data if isinstance(data, list) else [data]
    item = {"name": "input", "shape": shape if shape is not None else [1, len(values)],
            "datatype": datatype, "data": values}  # fmt: skip
    return json.dumps({"inputs": [item], **extra}).encode()


# -- what clients send is taken -----------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        body(np.random.default_rng(0).standard_normal(20).tolist()),  # json.dumps of float64s
        body([0.5, -1.25, 3.0, 7]),
        body([[0.5, 1], [2, 3.5]], shape=[2, 2]),
        body([1e300, -5, 2.5e-300], shape=[3], datatype="FP64"),
        body([1.5], id="req-7"),
        orjson.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.5, 2.5]},
                                 {"name": "y", "shape": [2], "datatype": "FP64", "data": [0.1, 0.2]}]}),
        # Keys in any order, blanks anywhere JSON allows them.
        b' {\n "inputs" : [ { "data" : [ 1.5 , 2 ] , "datatype" : "FP32" , "shape" : [ 2 ] ,'
        b' "name" : "input" } ] , "id" : "a" } \n',
    ],
)  # fmt: skip
def test_common_requests_take_it(raw: bytes) -> None:
    assert check(raw)
    assert decode_request(raw, None, None).inputs.keys() == decode_document(raw, None, None).inputs.keys()


@pytest.mark.parametrize(
    "raw",
    [
        body([3.5e38]),  # a finite number beyond FP32: the Python decoder names it
        body([2**24 + 1]),  # numpy rounds such an int itself
        body([1.0], shape=[0]),  # an empty tensor
        body([True]),
        body(["1.5"]),
        body([[1.0], [2.0, 3.0]], shape=[3]),  # ragged
        body([1.0], datatype="INT64"),
        body([1.0], parameters={"binary_data_output": True}),
        body([1.0], outputs=[{"name": "y"}]),
        body([1.0], id="caf\u00e9"),  # non-ASCII text: orjson checks UTF-8
        body([1.0], id="a\\nb"),  # escapes
        b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [NaN]}]}',
        b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1e999]}]}',
        b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [01]}]}',
        b'{"inputs": [{"name": "input", "shape": [1], "datatype": "FP32", "data": [1.5]}]} x',
        b'{"inputs": [{"name": "input", "name": "b", "shape": [1], "datatype": "FP32", "data": [1]}]}',
    ],
)
def test_anything_else_is_left_to_the_python_decoder(raw: bytes) -> None:
    assert v2_json_request(raw) is None
    check(raw)


# -- numbers: correctly rounded, as orjson reads them ------------------------------------


def _number_body(text: str, datatype: str) -> bytes:
    return f'{{"inputs":[{{"name":"x","shape":[1],"datatype":"{datatype}","data":[{text}]}}]}}'.encode()


def _held_to_float(text: str) -> None:
    expected = float(text)
    for datatype in ("FP64", "FP32"):
        fast = v2_json_request(_number_body(text, datatype))
        if fast is None:
            continue
        got = fast[1]["x"][0]
        if datatype == "FP64":
            assert np.float64(got).tobytes() == np.float64(expected).tobytes(), text
        else:
            assert abs(expected) <= FLOAT32_MAX, text
            assert np.float32(got).tobytes() == np.float32(expected).tobytes(), text


@given(st.floats(allow_nan=False, allow_infinity=False))
@settings(SETTINGS, max_examples=3000)
@example(0.1)
@example(-0.0)
@example(5e-324)
@example(1.7976931348623157e308)
@example(9007199254740993.0)
def test_shortest_float_texts_read_back_exactly(x: float) -> None:
    _held_to_float(repr(x))
    _held_to_float(json.dumps(float(np.float32(x))) if abs(x) < FLOAT32_MAX else repr(x))


@st.composite
def decimal_texts(draw: st.DrawFn) -> str:
    """Decimal numbers of up to 22 digits and exponents around the fast rule's limits."""
    digits = draw(st.text("0123456789", min_size=1, max_size=22))
    whole = digits.lstrip("0") or "0"
    point = draw(st.integers(0, len(whole)))
    text = whole[:point] + ("." + whole[point:] if point < len(whole) else "")
    if text.startswith("."):
        text = "0" + text
    if draw(st.booleans()):
        text += draw(st.sampled_from(["e", "E"])) + draw(st.sampled_from(["", "+", "-"]))
        text += str(draw(st.integers(0, 40)))
    if "." not in text and "e" not in text.lower():
        text += ".0"
    return draw(st.sampled_from(["", "-"])) + text


@given(decimal_texts())
@settings(SETTINGS, max_examples=3000)
@example("9007199254740993.0")  # halfway between two doubles: left to strtod
@example("1.00000000000000011102230246251565404236316680908203125")
@example("0.30000000000000004")
@example("123456789012345678.9")
@example("4.9406564584124654e-24")
def test_decimal_texts_round_correctly(text: str) -> None:
    _held_to_float(text)


def test_numbers_in_the_double_fast_path_round_correctly() -> None:
    # Significands below 2^53 scaled by 10^-22 to 10^22 take one double division or
    # multiplication (Clinger's rule), across the edges of both limits, written as a float
    # text and as an exponent.
    rng = np.random.default_rng(53)
    mags = np.concatenate([rng.integers(1, 2**53, 4000, dtype=np.int64), [2**53 - 1, 2**53 - 2, 1]])
    for i, m in enumerate(mags.tolist()):
        e = int(rng.integers(-22, 23)) if i % 7 else (-22, 22, -23, 23, 0, -1, 1)[(i // 7) % 7]
        _held_to_float(f"{m}e{e}")
        digits = str(m)
        point = int(rng.integers(1, len(digits) + 1))
        _held_to_float(f"{digits[:point]}.{digits[point:] or '0'}")


def test_halfway_numbers_are_still_exact() -> None:
    # 2^53 + 1 and 2^53 + 3 are halfway between doubles: ties go to the even one.
    for text in ("9007199254740993.0", "9007199254740995.0", "1.5e-20", "0.000001"):
        _held_to_float(text)


# -- never different from the Python decoder ---------------------------------------------

_plain_numbers = st.one_of(
    st.floats(-1e30, 1e30).map(repr),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(2**24), 2**24).map(str),
    decimal_texts(),
)
_odd_numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["NaN", "Infinity", "-0", "-0.0", "1e400", "1.", ".5", "01", "+1", "true", '"1"']),
)
# Mostly numbers it takes, so that many documents are compared element by element.
_numbers = st.one_of(*[_plain_numbers] * 29, _odd_numbers)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """Mostly the plain form, with its keys in any order and now and then something
    else: what the compiled decoder must take right or leave alone."""
    inputs = []
    names = st.sampled_from(["a", "b", "input", "c"])
    for name in draw(st.lists(names, min_size=1, max_size=2, unique=draw(st.integers(0, 9)) != 7)):
        rows, width = draw(st.integers(1, 2)), draw(st.integers(1, 4))
        values = draw(st.lists(_numbers, min_size=rows * width, max_size=rows * width))
        nested = draw(st.booleans())
        if nested:
            data = "[" + ",".join("[" + ",".join(values[r * width : (r + 1) * width]) + "]"
                                  for r in range(rows)) + "]"  # fmt: skip
        else:
            data = "[" + ",".join(values) + "]"
        if draw(st.integers(0, 19)) == 13:
            data = draw(st.sampled_from(["[]", "[[1.0],[2.0,3.0]]", "[[[1.0]]]", "1.0", "[1.0,]"]))
        shape = draw(st.sampled_from([[rows, width], [rows * width], [1, rows * width], [rows, width, 1]]))
        if draw(st.integers(0, 19)) == 13:
            shape = draw(st.sampled_from([[rows, 0], [rows * width + 1], []]))
        fields = {
            "name": json.dumps(name),
            "shape": json.dumps(shape),
            "datatype": json.dumps(draw(st.sampled_from(["FP32"] * 5 + ["FP64"] * 4 + ["INT64", "fp32"]))),
            "data": data,
        }
        if draw(st.integers(0, 9)) == 7:
            fields["parameters"] = "{}"
        if draw(st.integers(0, 19)) == 13:
            del fields[draw(st.sampled_from(sorted(fields)))]
        order = draw(st.permutations(sorted(fields)))
        sep = draw(st.sampled_from([",", ", ", " ,\n "]))
        inputs.append("{" + sep.join(f'"{k}":{fields[k]}' for k in order) + "}")
    top = {"inputs": "[" + ",".join(inputs) + "]"}
    if draw(st.booleans()):
        plain = st.text("abc-_1 ", max_size=4)
        top["id"] = json.dumps(draw(st.one_of(plain, plain, plain, st.text(max_size=4))))
    if draw(st.integers(0, 9)) == 7:
        top[draw(st.sampled_from(["parameters", "outputs", "extra"]))] = "{}"
    order = draw(st.permutations(sorted(top)))
    return ("{" + ",".join(f'"{k}": {top[k]}' for k in order) + "}").encode()


@given(documents())
@settings(SETTINGS, max_examples=1500)
def test_documents_agree_with_the_python_decoder(raw: bytes) -> None:
    check(raw)


@given(st.data())
@SETTINGS
def test_mutated_bodies_agree_with_the_python_decoder(data: st.DataObject) -> None:
    byte = st.sampled_from([*b'{}[],:"0123456789.eE-+ \\x', 0, 0x80, 0xFF])
    check(mutate(data, body([0.5, -1.25, 3.0, 1e-7], id="r1"), byte))
