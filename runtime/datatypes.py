"""Open Inference Protocol datatypes and their numpy counterparts.

BYTES tensors are numpy object arrays holding `bytes`, as tritonclient builds them.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from .errors import InvalidInput

# V2 name -> little-endian numpy dtype. BF16 has no numpy dtype and no JSON form.
V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(np.object_),
}

_KIND_SIZE_TO_V2 = {
    (np.dtype(v).kind, np.dtype(v).itemsize): k for k, v in V2_TO_NUMPY.items() if k != "BYTES"
}


def numpy_dtype(datatype: str) -> np.dtype:
    try:
        return V2_TO_NUMPY[datatype]
    except KeyError:
        if datatype == "BF16":
            raise InvalidInput("datatype BF16 is not supported") from None
        raise InvalidInput(
            f"unknown datatype '{datatype}'; expected one of {', '.join(V2_TO_NUMPY)}"
        ) from None


def v2_datatype(dtype: np.dtype) -> str:
    """The V2 name of a numpy dtype; strings and objects map to BYTES."""
    dtype = np.dtype(dtype)
    if dtype.kind in "OSUa":
        return "BYTES"
    try:
        return _KIND_SIZE_TO_V2[(dtype.kind, dtype.itemsize)]
    except KeyError:
        raise InvalidInput(f"numpy dtype {dtype} has no Open Inference Protocol datatype") from None


def is_missing(v: object) -> bool:
    """A missing value among text: None (JSON null), and what pandas puts in an object or
    string column for one, NaN and pd.NA (not the text "nan" or "<NA>" they print as)."""
    return v is None or (isinstance(v, float) and v != v) or type(v).__name__ == "NAType"


def numbers_of_objects(values: np.ndarray) -> np.ndarray | None:
    """An object array that holds only numbers and missing values, as numbers: what a frame
    of pandas' nullable dtypes gives from `to_numpy()` (1.5, pd.NA, None). Float64 with NaN
    for a missing value, or int64 when every element is a whole Python/numpy integer; None
    when any element is something else (text, bytes, bool), which stays BYTES."""
    flat = values.reshape(-1).tolist()
    if not flat:
        return None
    whole = True
    seen = False
    for v in flat:
        if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real):
            if not is_missing(v):
                return None
            whole = False
        elif v != v:  # NaN, a missing value
            whole = False
        else:
            seen = True
            if not isinstance(v, numbers.Integral):
                whole = False
    if not seen:
        return None
    if whole:
        try:
            return np.array(flat, dtype=np.int64).reshape(values.shape)
        except OverflowError:
            pass
    floats = [np.nan if is_missing(v) else float(v) for v in flat]
    return np.array(floats, dtype=np.float64).reshape(values.shape)


def to_text_array(values: np.ndarray, missing: Any = None) -> np.ndarray:
    """The BYTES form as text: an object array of str, each bytes element decoded as UTF-8
    (check_inputs has checked it is), a missing value (None) as `missing`, anything else as
    it is. For backends that take strings: onnxruntime's string tensors, scikit-learn's
    categories (which want NaN for a missing value, as pandas reads one from a file)."""
    out = np.empty(values.shape, dtype=np.object_)
    flat_out = out.reshape(-1)
    for i, v in enumerate(values.reshape(-1).tolist()):
        flat_out[i] = v.decode("utf-8") if isinstance(v, bytes) else (missing if is_missing(v) else v)
    return out


def to_bytes_array(values: np.ndarray, *, missing: bool = False) -> np.ndarray:
    """Turn a str/bytes/object array into an object array of bytes (the BYTES form). With
    `missing`, None, NaN and pd.NA (a missing text value, as pandas gives one) stay None
    rather than becoming the text "None", "nan" or "<NA>": for inputs a client sends
    (docs/formats.md)."""
    out = np.empty(values.shape, dtype=np.object_)
    flat_in = values.reshape(-1)
    flat_out = out.reshape(-1)
    for i, v in enumerate(flat_in.tolist()):
        if isinstance(v, bytes):
            flat_out[i] = v
        elif isinstance(v, str):
            flat_out[i] = v.encode("utf-8")
        elif missing and is_missing(v):
            flat_out[i] = None
        else:
            flat_out[i] = str(v).encode("utf-8")
    return out
