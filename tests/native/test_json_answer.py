"""The compiled V2 JSON answer writer against its oracles: orjson for every float32's text,
and codec.encode_document (orjson over the document built in Python) for whole answers.

runtime._native._json_answer.v2_json_answer may decline any answer (None: encode_document
writes it), but where it answers, the bytes must be exactly encode_document's, so a client
never sees which path wrote its answer.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from runtime._native._json_answer import f32_text, v2_json_answer

from runtime.server.codec import InferResponse, encode_document, encode_response

SETTINGS = settings(deadline=None, max_examples=600, suppress_health_check=list(HealthCheck))
NUMPY = orjson.OPT_SERIALIZE_NUMPY
# Below this the formatter declines (its exact arithmetic would need more than 128 bits).
SMALLEST = np.float32(1e-33)


def orjson_text(values: np.ndarray) -> bytes:
    return orjson.dumps(np.ascontiguousarray(values, dtype=np.float32).reshape(-1), option=NUMPY)


def assert_same(values: np.ndarray) -> None:
    ours = f32_text(values)
    ref = orjson_text(values)
    if ours != ref:  # name the first elements that differ, not two megabytes
        flat = values.reshape(-1)
        pairs = zip(ours[1:-1].split(b","), ref[1:-1].split(b","), strict=True)
        bad = [(flat[i], a, b) for i, (a, b) in enumerate(pairs) if a != b]
        raise AssertionError(f"{len(bad)} differ from orjson, first {bad[:5]}")


def takeable(values: np.ndarray) -> np.ndarray:
    """The finite float32s the formatter writes (zero, and magnitudes from SMALLEST up)."""
    return values[np.isfinite(values) & ((np.abs(values) >= SMALLEST) | (values == 0))]


# -- the float32 formatter -------------------------------------------------------------------

LAYOUTS = [
    (0.0, b"0.0"), (-0.0, b"-0.0"), (1.0, b"1.0"), (-2.5, b"-2.5"), (0.1, b"0.1"), (0.3, b"0.3"),
    (100.0, b"100.0"), (1234.5, b"1234.5"), (123456789.0, b"123456790.0"),
    (16777216.0, b"16777216.0"), (1e12, b"1000000000000.0"), (9999999e6, b"9999999000000.0"),
    (1e13, b"1e+13"), (1.5e15, b"1.5e+15"), (1.2345e20, b"1.2345e+20"), (3.4028235e38, b"3.4028235e+38"),
    (1e-6, b"0.000001"), (1.234e-5, b"0.00001234"), (1e-7, b"1e-7"), (1.5e-7, b"1.5e-7"),
    (0.12345678, b"0.12345678"), (0.87654322, b"0.8765432"), (1e-30, b"1e-30"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "text"), LAYOUTS)
def test_each_layout_is_orjsons(value: float, text: bytes) -> None:
    arr = np.array([value], dtype=np.float32)
    assert f32_text(arr) == b"[" + text + b"]" == orjson_text(arr)


def test_random_bit_patterns_match_orjson() -> None:
    bits = np.random.default_rng(24).integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32)
    assert_same(takeable(bits.view(np.float32)))


def test_every_float32_in_the_probability_binade_matches_orjson() -> None:
    """All 2^23 floats in [0.5, 1), where a classifier's top probability lives."""
    first = int(np.array(0.5, dtype=np.float32).view(np.uint32))
    for start in range(first, first + 2**23, 2**21):
        assert_same(np.arange(start, start + 2**21, dtype=np.uint32).view(np.float32))


def test_powers_boundaries_and_their_neighbours_match_orjson() -> None:
    """Powers of two (where the lower neighbour is half as far) and of ten (where decimal
    ties and exact lower ends live), each with the three floats either side."""
    centres = [2.0**e for e in range(-109, 128)] + [10.0**e for e in range(-33, 39)]
    centres += [0.5e-6, 1e-6, 0.99999e13, 0.5e13, 0.999999e-5, 1.00001e-6]
    base = np.array(centres, dtype=np.float32).view(np.uint32).astype(np.int64)
    bits = (base[:, None] + np.arange(-3, 4)[None, :]).reshape(-1).astype(np.uint32)
    values = takeable(bits.view(np.float32))
    assert_same(np.concatenate([values, -values]))


def test_integers_that_float32_holds_exactly_match_orjson() -> None:
    assert_same(np.arange(-100_000, 100_000, dtype=np.float32))
    assert_same(np.array([2.0**24 + 2 * i for i in range(1000)], dtype=np.float32))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e-34, -1e-40, 1e-45])
def test_declines_what_it_cannot_write_exactly(value: float) -> None:
    assert f32_text(np.array([1.0, value, 2.0], dtype=np.float32)) is None


def test_takes_only_native_float32() -> None:
    with pytest.raises(TypeError):
        f32_text(np.zeros(2, dtype=np.float64))
    with pytest.raises(ValueError, match="C-contiguous"):
        f32_text(np.zeros((2, 2), dtype=np.float32).T)


@pytest.mark.slow
def test_every_float32_matches_orjson() -> None:
    """All 2^32 bit patterns, 2^24 at a time (a few minutes): run by hand with -m slow."""
    for start in range(0, 2**31, 2**24):
        values = takeable(np.arange(start, start + 2**24, dtype=np.uint32).view(np.float32))
        assert_same(values)
        assert_same(-values)


# -- whole answers ---------------------------------------------------------------------------


def answer(outputs: dict[str, np.ndarray], datatypes: dict[str, str], *, binary: bool = False,
           rid: str | None = None, name: str = "mlp", version: str = "1") -> InferResponse:  # fmt: skip
    return InferResponse(name, version, rid, outputs, [(o, binary) for o in outputs], datatypes)


def compiled(resp: InferResponse) -> bytes | None:
    return v2_json_answer(
        resp.model_name, resp.model_version, resp.request_id, resp.outputs, resp.selected, resp.datatypes
    )


def check(resp: InferResponse) -> bool:
    """True when the compiled writer answered; it must then be encode_document's bytes."""
    general = encode_document(resp)
    assert encode_response(resp) == general
    fast = compiled(resp)
    if fast is None:
        return False
    assert general == (fast, None)
    return True


PLAIN = [
    ({"output": np.array([[0.25, 0.75]], dtype=np.float32)}, {"output": "FP32"}),
    ({"probabilities": np.random.default_rng(0).random((64, 3)).astype(np.float32),
      "label": np.arange(64, dtype=np.int64)}, {"probabilities": "FP32", "label": "INT64"}),  # fmt: skip
    ({"y": np.array([-(2**31), 2**31 - 1], dtype=np.int32)}, {"y": "INT32"}),
    ({"y": np.array([-(2**63), 2**63 - 1], dtype=np.int64)}, {"y": "INT64"}),
    ({"y": np.array([0, 2**64 - 1], dtype=np.uint64)}, {"y": "UINT64"}),
    ({"y": np.array([0, 255], dtype=np.uint8), "z": np.array([-128, 127], dtype=np.int8)},
     {"y": "UINT8", "z": "INT8"}),  # fmt: skip
    ({"y": np.array([-32768, 32767], dtype=np.int16), "z": np.array([65535], dtype=np.uint16),
      "w": np.array([2**32 - 1], dtype=np.uint32)},
     {"y": "INT16", "z": "UINT16", "w": "UINT32"}),  # fmt: skip
    ({"flag": np.array([[True, False], [False, True]])}, {"flag": "BOOL"}),
    ({"scalar": np.array(1.5, dtype=np.float32)}, {"scalar": "FP32"}),
    ({"empty": np.zeros((0, 4), dtype=np.float32)}, {"empty": "FP32"}),
    ({"big": np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)}, {"big": "FP32"}),
]


@pytest.mark.parametrize(("outputs", "datatypes"), PLAIN)
def test_plain_answers_are_written_compiled_and_identical(outputs, datatypes) -> None:
    assert check(answer(outputs, datatypes))
    assert check(answer(outputs, datatypes, rid="req-7", name="churn", version="20261207"))


def test_non_ascii_names_are_taken_as_utf8() -> None:
    assert check(answer({"ausgabe": np.ones((1, 2), dtype=np.float32)}, {"ausgabe": "FP32"},
                        name="modèle", rid="идентификатор"))  # fmt: skip


F32 = {"output": "FP32"}
ONE = np.array([[0.25, 0.75]], dtype=np.float32)
DECLINED = [
    ("a binary output", answer({"output": ONE}, F32, binary=True)),
    ("BYTES", answer({"output": np.array([b"a"], dtype=object)}, {"output": "BYTES"})),
    ("FP64", answer({"output": ONE.astype(np.float64)}, {"output": "FP64"})),
    ("FP16", answer({"output": ONE.astype(np.float16)}, {"output": "FP16"})),
    ("a dtype other than the datatype's", answer({"output": ONE.astype(np.float64)}, F32)),
    ("int32 declared INT64", answer({"output": np.array([1], dtype=np.int32)}, {"output": "INT64"})),
    ("not C order", answer({"output": np.ones((3, 2), dtype=np.float32).T}, F32)),
    ("big-endian", answer({"output": ONE.astype(">f4")}, F32)),
    ("a list, not an array", answer({"output": [[0.25, 0.75]]}, F32)),  # type: ignore[dict-item]
    ("NaN", answer({"output": np.array([np.nan], dtype=np.float32)}, F32)),
    ("infinity", answer({"output": np.array([1.0, -np.inf], dtype=np.float32)}, F32)),
    ("a tiny float", answer({"output": np.array([1e-40], dtype=np.float32)}, F32)),
    ("a quote in the name", answer({"output": ONE}, F32, name='a"b')),
    ("a backslash in the id", answer({"output": ONE}, F32, rid="a\\b")),
    ("a control character in the version", answer({"output": ONE}, F32, version="1\n")),
    ("DEL in an output name", answer({"o\x7f": ONE}, {"o\x7f": "FP32"})),
    ("a lone surrogate", answer({"output": ONE}, F32, rid="\ud800")),
]


@pytest.mark.parametrize("case", DECLINED, ids=[c[0] for c in DECLINED])
def test_declines_what_the_document_path_writes_otherwise(case) -> None:
    what, resp = case
    assert compiled(resp) is None
    # orjson refuses a lone surrogate, and models answer arrays: the rest are written there.
    if what not in ("a lone surrogate", "a list, not an array"):
        check(resp)


def test_a_non_string_id_is_declined() -> None:
    resp = answer({"output": ONE}, F32)
    assert v2_json_answer("mlp", "1", 7, resp.outputs, resp.selected, resp.datatypes) is None


def test_only_the_selected_outputs_are_written_in_their_order() -> None:
    outputs = {"a": ONE, "b": np.array([3], dtype=np.int64), "c": ONE}
    resp = InferResponse("m", "1", None, outputs, [("c", False), ("b", False)],
                         {"a": "FP32", "b": "INT64", "c": "FP32"})  # fmt: skip
    assert check(resp)
    assert orjson.loads(compiled(resp))["outputs"][1] == {"name": "b", "datatype": "INT64", "shape": [1],
                                                          "data": [3]}  # fmt: skip


DTYPES = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8, "BOOL": np.bool_,
          "FP64": np.float64}  # fmt: skip


@st.composite
def responses(draw: st.DrawFn) -> InferResponse:
    names = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3, unique=True))
    outputs, datatypes, selected = {}, {}, []
    for name in names:
        datatype = draw(st.sampled_from(sorted(DTYPES)))
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
        arr = draw(hnp.arrays(DTYPES[datatype], shape))
        if draw(st.booleans()) and arr.ndim == 2:
            arr = arr.T  # not C order unless it is one row or column
        outputs[name] = arr
        datatypes[name] = datatype
        selected.append((name, draw(st.booleans()) and draw(st.booleans())))
    rid = draw(st.none() | st.text(max_size=10))
    return InferResponse(draw(st.text(max_size=8)), draw(st.text(max_size=4)), rid, outputs,
                         selected, datatypes)  # fmt: skip


@given(responses())
@settings(SETTINGS, max_examples=1500)
def test_any_answer_is_written_as_the_document_path_writes_it(resp: InferResponse) -> None:
    try:
        orjson.dumps([resp.model_name, resp.model_version, resp.request_id, list(resp.outputs)])
    except orjson.JSONEncodeError:  # a lone surrogate: orjson refuses, the compiled path declines
        assert compiled(resp) is None
        return
    check(resp)


def test_the_generated_answers_mostly_take_the_compiled_path() -> None:
    """The property above is not vacuous: plain answers of each kind are written compiled."""
    rng = np.random.default_rng(7)
    taken = 0
    for datatype, dtype in DTYPES.items():
        arr = (rng.random((4, 3)) * 100).astype(dtype)
        taken += check(answer({"out": arr}, {"out": datatype}))
    assert taken == len(DTYPES) - 1  # all but FP64
