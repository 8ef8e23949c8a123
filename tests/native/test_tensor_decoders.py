"""The compiled V2 inputs decoder against its oracle, the Python decoder.

runtime._native._tensors.v2_inputs may decline any request (None: the Python
decoder takes it), but where it answers, the answer must be exactly the Python
decoder's, and it must never answer where the Python decoder refuses.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime._native._tensors import msgpack_tensors, v2_inputs

from runtime.errors import InvalidInput
from runtime.formats import tensor_from_msgpack
from runtime.server.codec import _decode_inputs

SETTINGS = settings(deadline=None, max_examples=400, suppress_health_check=list(HealthCheck))

FLOAT32_MAX = float(np.finfo(np.float32).max)

scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1e6, max_value=1e6),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-(2**31) - 2, max_value=2**31 + 1),
    st.integers(min_value=-(2**25), max_value=2**25),
    st.sampled_from([FLOAT32_MAX, -FLOAT32_MAX, FLOAT32_MAX * 1.0000001, 3.5e38, 2**24, 2**24 + 1, 2**63]),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
datatypes = st.sampled_from(
    ["FP32", "FP64", "INT64", "INT32", "BOOL", "INT8", "UINT64", "FP16", "BYTES", "fp32"]
)
ITEMSIZE = {"FP32": 4, "FP64": 8, "INT64": 8, "INT32": 4, "BOOL": 1, "INT8": 1, "UINT64": 8}


@st.composite
def json_input(draw: st.DrawFn, name: str) -> dict:
    rows = draw(st.integers(0, 3))
    width = draw(st.integers(0, 4))
    values = draw(st.lists(scalars, min_size=rows * width, max_size=rows * width))
    form = draw(st.sampled_from(["flat", "nested", "ragged", "scalar", "deep"]))
    if form == "flat":
        data: object = values
    elif form == "nested":
        data = [values[r * width : (r + 1) * width] for r in range(rows)]
    elif form == "ragged":
        data = [values[: max(0, width - 1)], values[width - 1 :]]
    elif form == "scalar":
        data = values[0] if values else 1.0
    else:
        data = [[values]]
    shape = draw(
        st.one_of(
            st.just([rows, width]),
            st.just([rows * width]),
            st.lists(st.integers(0, 5), max_size=3),
            st.just([rows, True]),
            st.just("1,2"),
        )
    )
    item = {"name": name, "datatype": draw(datatypes), "shape": shape, "data": data}
    if draw(st.booleans()) and draw(st.booleans()):
        item["parameters"] = draw(st.sampled_from([{}, {"x": 1}, None]))
    return item


_VALUES = {
    "FP32": st.one_of(st.floats(width=32, allow_nan=False), st.integers(-(2**24), 2**24)),
    "FP64": st.one_of(st.floats(allow_nan=False), st.integers(-(2**63), 2**63 - 1)),
    "INT64": st.integers(-(2**63), 2**63 - 1),
    "INT32": st.integers(-(2**31), 2**31 - 1),
}


@st.composite
def likely_input(draw: st.DrawFn, name: str) -> dict:
    """Mostly well-formed inputs (the fast path's business), now and then one odd value."""
    datatype = draw(st.sampled_from(sorted(_VALUES)))
    rows, width = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    values = draw(st.lists(_VALUES[datatype], min_size=rows * width, max_size=rows * width))
    if draw(st.integers(0, 4)) == 0:
        values[draw(st.integers(0, len(values) - 1))] = draw(scalars)
    nested = draw(st.booleans())
    data = [values[r * width : (r + 1) * width] for r in range(rows)] if nested else values
    shape = draw(st.sampled_from([[rows, width], [rows * width], [1, rows * width], [rows, width, 1]]))
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


@st.composite
def binary_input(draw: st.DrawFn, name: str) -> tuple[dict, bytes]:
    datatype = draw(datatypes)
    shape = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    itemsize = ITEMSIZE.get(datatype, 2)
    n = math.prod(shape) * itemsize
    n += draw(st.sampled_from([0, 0, 0, -1, 1]))
    n = max(n, 0)
    blob = draw(st.binary(min_size=n, max_size=n))
    size: object = draw(st.sampled_from([n, n, n, n + 4, True, -1, "8"]))
    item = {"name": name, "datatype": datatype, "shape": shape, "parameters": {"binary_data_size": size}}
    return item, blob


def _same(fast: tuple[dict, dict], slow: tuple[dict, dict]) -> None:
    assert fast[1] == slow[1]
    assert list(fast[0]) == list(slow[0])
    for name, arr in slow[0].items():
        got = fast[0][name]
        assert got.dtype == arr.dtype, name
        assert got.shape == arr.shape, name
        np.testing.assert_array_equal(got, arr)
        # Same bits, NaN payloads and signed zeros included.
        assert got.tobytes() == arr.tobytes()


def _check(items: list, binary: memoryview | None) -> bool:
    """True when the fast path answered."""
    header_length = None if binary is None else 1
    fast = v2_inputs(items, binary)
    try:
        slow = _decode_inputs(items, binary if binary is not None else memoryview(b""), header_length)
    except InvalidInput:
        assert fast is None, f"the fast path took what the full decoder refuses: {items!r}"
        return False
    if fast is not None:
        _same(fast, slow)
    return fast is not None


@SETTINGS
@given(st.lists(st.sampled_from(["a", "b", "a"]), min_size=1, max_size=3).flatmap(
    lambda names: st.tuples(*[json_input(n) for n in names])
))
def test_json_inputs_match_the_full_decoder(items: tuple) -> None:
    _check(list(items), None)


@SETTINGS
@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True).flatmap(
    lambda names: st.tuples(*[likely_input(n) for n in names])
))
def test_likely_json_inputs_match_the_full_decoder(items: tuple) -> None:
    _check(list(items), None)


@SETTINGS
@given(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=3).flatmap(
    lambda names: st.tuples(*[binary_input(n) for n in names])
), st.binary(max_size=2))
def test_binary_inputs_match_the_full_decoder(pairs: tuple, trailing: bytes) -> None:
    items = [item for item, _ in pairs]
    blob = b"".join(b for _, b in pairs) + trailing
    _check(items, memoryview(blob))


@pytest.mark.parametrize(
    "doc",
    [
        # What tritonclient and the benches send: these must take the fast path.
        {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [0.5, -1.25, 3.0]}]},
        {"inputs": [{"name": "input", "shape": [2, 2], "datatype": "FP32", "data": [[0.5, 1], [2, 3.5]]}]},
        {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.5, 2.5]},
                    {"name": "ids", "shape": [1, 2], "datatype": "INT64", "data": [1, -(2**63)]}]},
        {"inputs": [{"name": "d", "shape": [2], "datatype": "FP64", "data": [1e300, -5]},
                    {"name": "i", "shape": [2], "datatype": "INT32", "data": [2**31 - 1, -(2**31)]}]},
    ],
)
def test_common_requests_take_the_fast_path(doc: dict) -> None:
    items = orjson.loads(orjson.dumps(doc))["inputs"]
    assert _check(items, None)


def test_binary_request_takes_the_fast_path() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    ids = np.array([7, 8], dtype=np.int64)
    items = [
        {"name": "x", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}},
        {"name": "ids", "datatype": "INT64", "shape": [2], "parameters": {"binary_data_size": 16}},
    ]
    assert _check(items, memoryview(x.tobytes() + ids.tobytes()))


@pytest.mark.parametrize(
    "data",
    [
        [3.5e38],  # a finite number beyond FP32: the full decoder names it
        [True, 1.0],  # bools are the full decoder's business
        [2**24 + 1],  # an int that float32 rounds: numpy rounds it once, not twice
        ["1.5"],  # numeric strings are not numbers
        [[1.0], [2.0, 3.0]],  # ragged
    ],
)
def test_unusual_data_is_left_to_the_full_decoder(data: list) -> None:
    count = 1 if len(data) == 1 else 2
    items = [{"name": "x", "datatype": "FP32", "shape": [count], "data": data}]
    assert v2_inputs(items, None) is None


@st.composite
def msgpack_tensor(draw: st.DrawFn) -> object:
    datatype = draw(datatypes)
    shape = draw(st.one_of(st.lists(st.integers(0, 4), max_size=3), st.just([1, True]), st.just(None)))
    n = math.prod(shape) * ITEMSIZE.get(datatype, 2) if isinstance(shape, list) else 4
    n = max(0, n + draw(st.sampled_from([0, 0, 0, -1, 1])))
    data = draw(st.one_of(st.binary(min_size=n, max_size=n), st.just([b"ab"]), st.just("x")))
    item = {"datatype": datatype, "shape": shape, "data": data}
    return draw(st.sampled_from([item, item, item, {k: v for k, v in item.items() if k != "data"}, [1]]))


@SETTINGS
@given(st.one_of(st.dictionaries(st.sampled_from(["a", "b", "c"]), msgpack_tensor(), max_size=3), st.just(1)))
def test_msgpack_tensors_match_the_full_decoder(value: object) -> None:
    fast = msgpack_tensors(value)
    try:
        if not isinstance(value, dict) or not value:
            raise InvalidInput("not a non-empty map")
        pairs = [tensor_from_msgpack(f"input '{n}'", item) for n, item in value.items()]
    except InvalidInput:
        assert fast is None
        return
    if fast is not None:
        named = dict(zip(value, pairs, strict=True))
        slow = ({n: t for n, (t, _) in named.items()}, {n: d for n, (_, d) in named.items()})
        _same(fast, slow)


def test_msgpack_request_takes_the_fast_path() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    value = {"x": {"datatype": "FP32", "shape": [2, 3], "data": x.tobytes()}}
    fast = msgpack_tensors(value)
    assert fast is not None
    np.testing.assert_array_equal(fast[0]["x"], x)
