"""runtime.convert: the one rule for inputs sent in a datatype other than the model's,
held against numpy's astype and against the rule as docs/formats.md states it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from runtime.convert import convert, converts, refusal
from runtime.datatypes import V2_TO_NUMPY
from runtime.errors import InvalidInput
from runtime.models import TensorSpec, check_inputs
from tests.unit.test_codec import FakeModel

DATATYPES = list(V2_TO_NUMPY)
PAIRS = [(s, w) for s in DATATYPES for w in DATATYPES]
SETTINGS = settings(deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])

# The rule, written out again from its statement rather than from the code under test.
FLOATS = {"FP16", "FP32", "FP64"}
SIGNED = {"INT8": 8, "INT16": 16, "INT32": 32, "INT64": 64}
UNSIGNED = {"UINT8": 8, "UINT16": 16, "UINT32": 32, "UINT64": 64}


def accepted(sent: str, want: str) -> bool:
    if sent == want:
        return True
    if want in FLOATS:  # any float, BOOL and any integer become any float
        return sent in FLOATS or sent == "BOOL" or sent in SIGNED or sent in UNSIGNED
    if want in SIGNED:  # a wider integer that holds every value
        bits = SIGNED[want]
        return SIGNED.get(sent, 64) < bits or UNSIGNED.get(sent, 64) < bits
    if want in UNSIGNED:
        return UNSIGNED.get(sent, 64) < UNSIGNED[want]
    return False  # BOOL and BYTES take only themselves


def arrays(datatype: str) -> st.SearchStrategy[np.ndarray]:
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
    if datatype == "BYTES":
        return hnp.arrays(np.dtype(object), shapes, elements=st.binary(max_size=4))
    # Floats include NaN, infinities and the type's extremes; integers their whole range.
    return hnp.arrays(V2_TO_NUMPY[datatype], shapes)


def test_the_table_is_the_stated_rule() -> None:
    for sent, want in PAIRS:
        assert converts(sent, want) == accepted(sent, want), (sent, want)
    # The cases the policy names, spelled out.
    assert converts("FP64", "FP32") and converts("INT64", "FP32") and converts("BOOL", "FP16")
    assert converts("INT32", "INT64") and converts("UINT8", "INT16") and converts("UINT32", "UINT64")
    for sent, want in [("FP32", "INT64"), ("INT64", "INT32"), ("INT8", "UINT64"), ("UINT32", "INT32"),
                       ("UINT64", "INT64"), ("BOOL", "INT8"), ("INT8", "BOOL"), ("FP32", "BYTES"),
                       ("BYTES", "FP32")]:  # fmt: skip
        assert not converts(sent, want), (sent, want)


@pytest.mark.parametrize(("sent", "want"), PAIRS, ids=[f"{s}-{w}" for s, w in PAIRS])
@SETTINGS
@given(data=st.data())
def test_agrees_with_numpy_astype_or_refuses(sent: str, want: str, data: st.DataObject) -> None:
    arr = data.draw(arrays(sent))
    if not accepted(sent, want):
        with pytest.raises(InvalidInput) as info:
            convert("v", arr, sent, want)
        message = str(info.value)
        assert "input 'v'" in message and sent in message and want in message
        assert refusal("v", sent, want) == message
        return
    assert refusal("v", sent, want) is None
    if sent == want:
        assert convert("v", arr, sent, want) is arr
        return
    with np.errstate(over="ignore", invalid="ignore"):
        want_arr = arr.astype(V2_TO_NUMPY[want])
    # A finite value that became an infinity did not fit: refused, not passed on as inf.
    overflowed = np.isinf(want_arr) & ~np.isinf(arr.astype(np.float64))
    if overflowed.any():
        with pytest.raises(InvalidInput, match=f"input 'v': .* is out of range for the model's {want}"):
            convert("v", arr, sent, want)
        return
    got = convert("v", arr, sent, want)
    assert got.dtype == V2_TO_NUMPY[want] and got.shape == arr.shape
    assert got.tobytes() == want_arr.tobytes()  # bit for bit, NaN included


@pytest.mark.parametrize(
    ("arr", "sent", "want"),
    [
        (np.array([1.0, 1e39]), "FP64", "FP32"),
        (np.array([-1e39]), "FP64", "FP32"),
        (np.array([2.0**128 - 2.0**103]), "FP64", "FP32"),  # the tie rounds to even: infinity
        (np.array([70000.0], np.float32), "FP32", "FP16"),
        (np.array([65520], np.int32), "INT32", "FP16"),  # rounds up past FP16's largest finite
        (np.array([2**64 - 1], np.uint64), "UINT64", "FP16"),
    ],
)
def test_finite_values_out_of_range_are_refused(arr: np.ndarray, sent: str, want: str) -> None:
    with pytest.raises(InvalidInput, match=f"input 'v': .* is out of range for the model's {want}"):
        convert("v", arr, sent, want)


def test_nan_and_infinities_are_data() -> None:
    # FLT_MAX + half an ulp (2**128 - 2**103) rounds to infinity; just below it, to FLT_MAX.
    below_tie = np.nextafter(2.0**128 - 2.0**103, 0)
    x = np.array([np.nan, np.inf, -np.inf, below_tie, 0.1])
    got = convert("v", x, "FP64", "FP32")
    np.testing.assert_array_equal(got, x.astype(np.float32))
    assert np.isfinite(got[3])


def test_messages_name_the_input_both_datatypes_and_what_is_taken() -> None:
    assert refusal("n", "FP32", "INT64") == (
        "input 'n': the model takes INT64, not FP32: a float would lose its fraction or not fit; "
        "send INT64 or one that converts to it (UINT8, UINT16, UINT32, INT8, INT16, INT32)"
    )
    assert refusal("x", "BYTES", "FP32") == (
        "input 'x': the model takes FP32, not BYTES: text converts to no other datatype (send the "
        "values as numbers); send FP32 or one that converts to it (BOOL, any integer datatype, FP16, FP64)"
    )
    # Numbers sent to a text input: the message said what text cannot become.
    assert refusal("plan", "FP64", "BYTES") == (
        "input 'plan': the model takes BYTES, not FP64: numbers do not convert to text (send the "
        "values as strings); send BYTES"
    )
    assert refusal("b", "INT8", "BOOL") == (
        "input 'b': the model takes BOOL, not INT8: a BOOL input takes BOOL only; send BOOL"
    )
    assert "UINT32 cannot hold negative values" in refusal("u", "INT8", "UINT32")
    assert "INT32 cannot hold every UINT32 value" in refusal("i", "UINT32", "INT32")
    with pytest.raises(InvalidInput, match="unknown datatype 'FLOAT'"):
        refusal("x", "FLOAT", "FP32")


MODEL = FakeModel(
    [TensorSpec("x", "FP32", (-1, 3)), TensorSpec("n", "INT64", (-1, 1))], [TensorSpec("y", "FP32", (-1,))]
)


def test_check_inputs_converts_into_a_new_dict_and_leaves_the_sent_one() -> None:
    sent = {"x": np.full((2, 3), 0.1), "n": np.array([[1], [2]], np.int32)}
    got = check_inputs(MODEL, sent, {"x": "FP64", "n": "INT32"})
    assert got is not sent and sent["x"].dtype == np.float64 and sent["n"].dtype == np.int32
    assert got["x"].dtype == np.float32 and got["n"].dtype == np.int64
    np.testing.assert_array_equal(got["x"], sent["x"].astype(np.float32))
    # In the model's datatypes already: the very same dict, nothing copied.
    same = {"x": got["x"], "n": got["n"]}
    assert check_inputs(MODEL, same, {"x": "FP32", "n": "INT64"}) is same


def test_check_inputs_refuses_before_converting_anything() -> None:
    sent = {"x": np.full((2, 3), 1e39), "n": np.array([[1.5], [2.0]], np.float32)}
    with pytest.raises(InvalidInput, match="input 'n': the model takes INT64, not FP32"):
        check_inputs(MODEL, sent, {"x": "FP64", "n": "FP32"})
    with pytest.raises(InvalidInput, match="shape"):  # a wrong shape is said before any range
        check_inputs(MODEL, {"x": np.full((2, 4), 1e39), "n": sent["n"]}, {"x": "FP64", "n": "INT64"})
