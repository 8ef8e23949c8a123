"""The gRPC body format of ModelInfer: `inference.ModelInferRequest` in, an
`inference.ModelInferResponse` out (runtime/server/grpc_proto.py has the messages).

Inputs come as raw little-endian bytes in `raw_input_contents` (what tritonclient
sends; BYTES elements each a 4-byte length and the bytes) or as typed `contents`
lists. Outputs always go back raw, as Triton answers. Every malformed request raises
`InvalidInput` naming what is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..datatypes import V2_TO_NUMPY, numpy_dtype, to_bytes_array
from ..errors import InvalidInput
from ..formats import check_shape, v2_parse_bytes
from ..models.base import Tensors
from .codec import InferRequest, InferResponse, tensor_bytes

# V2 datatype -> the InferTensorContents field that holds it (FP16 has none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """A protobuf `map<string, InferParameter>` as plain values."""
    out: dict[str, Any] = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        out[key] = getattr(p, which) if which is not None else None
    return out


def decode(msg: Any) -> InferRequest:
    """A ModelInferRequest as the pipeline's InferRequest (datatypes as sent)."""
    raw = list(msg.raw_input_contents)
    if raw and len(raw) != len(msg.inputs):
        raise InvalidInput(
            f"raw_input_contents holds {len(raw)} tensors for {len(msg.inputs)} inputs; send every "
            "input raw or none"
        )
    inputs: Tensors = {}
    datatypes: dict[str, str] = {}
    for i, tensor in enumerate(msg.inputs):
        name = tensor.name
        where = f"input '{name}'"
        if not name:
            raise InvalidInput(f"input #{i} has no name")
        if name in inputs:
            raise InvalidInput(f"{where} is given twice")
        datatype = tensor.datatype
        if datatype not in V2_TO_NUMPY:
            raise InvalidInput(f"{where}: unknown datatype '{datatype}'")
        shape = check_shape(list(tensor.shape), where)
        count = math.prod(shape)
        if raw:
            arr = _from_raw(raw[i], datatype, shape, count, where)
        else:
            arr = _from_contents(tensor, datatype, shape, count, where)
        inputs[name] = arr
        datatypes[name] = datatype
    outputs = [(o.name, True) for o in msg.outputs] if len(msg.outputs) else None
    return InferRequest(msg.id or None, parameters(msg.parameters), inputs, datatypes, outputs)


def _from_raw(blob: bytes, datatype: str, shape: tuple[int, ...], count: int, where: str) -> np.ndarray:
    if datatype == "BYTES":
        items = v2_parse_bytes(blob, where)
        if len(items) != count:
            raise InvalidInput(f"{where}: {len(items)} BYTES elements for shape {list(shape)} ({count})")
        arr = np.empty(count, dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    dtype = numpy_dtype(datatype)
    if len(blob) != count * dtype.itemsize:
        raise InvalidInput(
            f"{where}: {len(blob)} bytes of raw data for shape {list(shape)} of {datatype} "
            f"({count * dtype.itemsize} expected)"
        )
    return np.frombuffer(blob, dtype=dtype).reshape(shape)


def _from_contents(tensor: Any, datatype: str, shape: tuple[int, ...], count: int, where: str) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(f"{where}: {datatype} has no typed contents; send it in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != count:
        raise InvalidInput(f"{where}: {len(values)} elements in {field} for shape {list(shape)} ({count})")
    if datatype == "BYTES":
        return to_bytes_array(np.array(list(values), dtype=object)).reshape(shape)
    dtype = numpy_dtype(datatype)
    arr = np.asarray(values, dtype=np.int64 if dtype.kind in "iu" and dtype.itemsize < 8 else dtype)
    if arr.dtype != dtype:
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise InvalidInput(f"{where}: value out of range for {datatype}")
        arr = arr.astype(dtype)
    return arr.reshape(shape)


def encode(response_type: Any, resp: InferResponse) -> Any:
    """A ModelInferResponse (of the class `response_type`) with every output raw."""
    msg = response_type(
        model_name=resp.model_name, model_version=resp.model_version, id=resp.request_id or ""
    )
    for name, arr, datatype, _ in resp.tensors():
        msg.outputs.add(name=name, datatype=datatype, shape=list(arr.shape))
        msg.raw_output_contents.append(tensor_bytes(arr, datatype))
    return msg
