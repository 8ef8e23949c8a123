"""The native column interleave writes exactly what numpy's column assignment writes, for
every numeric dtype, row count (around the kernel's row block) and width, and refuses
whatever does not fit instead of copying out of bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from runtime._native._columns import interleave

DTYPES = ["f4", "f8", "f2", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "?"]


def _oracle(cols: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    out = np.empty((len(cols[0]) if cols else 0, len(cols)), dtype=dtype)
    for j, c in enumerate(cols):
        out[:, j] = c
    return out


@settings(max_examples=200, deadline=None)
@given(
    dtype=st.sampled_from(DTYPES),
    rows=st.one_of(st.integers(0, 300), st.sampled_from([127, 128, 129, 256, 1000])),
    width=st.integers(1, 40),
    data=st.data(),
)
def test_interleave_equals_column_assignment(dtype: str, rows: int, width: int, data: st.DataObject) -> None:
    dt = np.dtype(dtype)
    cols = [data.draw(hnp.arrays(dt, rows)) for _ in range(width)]
    out = np.full((rows, width), 7, dtype=dt)
    interleave(cols, out)
    # Bit patterns, so NaN payloads and -0.0 count too.
    want = _oracle(cols, dt)
    assert out.view(np.uint8).tobytes() == want.view(np.uint8).tobytes()


def test_a_real_batch_of_float32_columns() -> None:
    rng = np.random.default_rng(3)
    cols = [rng.standard_normal(65_536, dtype=np.float32) for _ in range(20)]
    cols[4][::7] = np.nan
    out = np.empty((65_536, 20), dtype=np.float32)
    interleave(cols, out)
    np.testing.assert_array_equal(out, np.column_stack(cols))


@pytest.mark.parametrize(
    ("cols", "out", "message"),
    [
        ([np.zeros(4, "f4")], np.zeros((4, 2), "f4"), "1 columns for a matrix of 2"),
        ([np.zeros(3, "f4")], np.zeros((4, 1), "f4"), "column 0 is not a 1-D array of 4 values"),
        ([np.zeros((4, 1), "f4")], np.zeros((4, 1), "f4"), "column 0 is not a 1-D array"),
        ([np.zeros(4, "f8")], np.zeros((4, 1), "f4"), "column 0 is float64, the matrix float32"),
        ([np.zeros(8, "f4")[::2]], np.zeros((4, 1), "f4"), "column 0 is not contiguous"),
        ([[0.0] * 4], np.zeros((4, 1), "f4"), "column 0 is not a 1-D array"),
        ([np.zeros(4, "f4")] * 2, np.zeros((2, 4), "f4").T, "C-contiguous 2-D"),
        ([np.zeros(4, "f4")], np.zeros(4, "f4"), "C-contiguous 2-D"),
        ([np.zeros(4, object)], np.zeros((4, 1), object), "dtype object"),
        ([np.zeros(4, "c8")], np.zeros((4, 1), "c8"), "dtype complex64"),
    ],
)
def test_what_does_not_fit_is_refused(cols: list, out: np.ndarray, message: str) -> None:
    before = out.copy()
    with pytest.raises(ValueError, match=message):
        interleave(cols, out)
    np.testing.assert_array_equal(out, before)


def test_a_read_only_matrix_is_refused() -> None:
    out = np.zeros((4, 1), "f4")
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        interleave([np.ones(4, "f4")], out)
