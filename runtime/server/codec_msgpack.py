"""The msgpack body format of `.../infer`: bytes in, bytes out, no HTTP here.

Request (a msgpack map; docs/formats.md has examples)::

    {"id"?: str, "parameters"?: map,
     "inputs": {name: {"datatype": str, "shape": [int], "data": bin}},
     "outputs"?: [name, ...]}

`data` is the tensor's raw little-endian row-major bytes; for a BYTES tensor it is
an array with one bin (or str, sent as UTF-8) per element. `inputs` may also be a
list of such maps, each with a "name" key, as in V2 JSON. Leaving out `outputs`
asks for all of the model's outputs.

Response::

    {"model_name": str, "model_version": str, "id"?: str,
     "outputs": {name: {"datatype": str, "shape": [int], "data": bin | [bin]}}}

Map keys are str; every malformed body raises `InvalidInput` naming what is wrong.
"""

from __future__ import annotations

from typing import Any

from ..datatypes import V2_TO_NUMPY
from ..errors import InvalidInput
from ..formats import (
    MSGPACK_CONTENT_TYPES,
    msgpack_dumps,
    msgpack_loads,
    msgpack_tensor_head,
    tensor_to_msgpack,
    tensors_from_msgpack,
)
from ..models.base import Model
from .codec import InferRequest, InferResponse, output_names, parameters_of, request_id

# Each body format's module has the same head (its helpers from ..formats, CONTENT_TYPE(S),
# decode, encode; a clone detector pairs them): one interface, picked by Content-Type (http.py).
__all__ = ["CONTENT_TYPES", "decode", "encode"]

CONTENT_TYPES = MSGPACK_CONTENT_TYPES


def decode(body: bytes, model: Model) -> InferRequest:
    """Decode a msgpack infer request; datatypes are those the client sent."""
    doc = msgpack_loads(body, "request")
    if "inputs" not in doc:
        raise InvalidInput("the request needs 'inputs': a map of input name -> tensor")
    inputs, datatypes = tensors_from_msgpack(doc["inputs"], "inputs")
    params = parameters_of(doc.get("parameters"), "request")
    outputs = output_names(doc.get("outputs"), "'outputs'")
    return InferRequest(request_id(doc), params, inputs, datatypes, outputs)


def encode(resp: InferResponse) -> bytes:
    """Encode an infer response (binary flags ignored: msgpack data is always bytes)."""
    top: dict[str, Any] = {"model_name": resp.model_name, "model_version": resp.model_version}
    if resp.request_id is not None:
        top["id"] = resp.request_id
    tensors = resp.tensors()
    raw = _joined(top, tensors)
    if raw is not None:
        return raw
    top["outputs"] = {name: tensor_to_msgpack(arr, datatype) for name, arr, datatype, _ in tensors}
    return msgpack_dumps(top)


# The encoded head of each output by (name, datatype, shape), and of each answer's start by
# (model, version, number of outputs): a server sends the same few again and again.
_HEADS: dict[tuple[str, str, tuple[int, ...]], bytes] = {}
_STARTS: dict[tuple[str, str, int], bytes] = {}
_KEPT_MAX = 1024


def _joined(top: dict[str, Any], tensors: list[tuple[str, Any, str, bool]]) -> bytes | None:
    """The answer as msgpack_dumps spells it, byte for byte, joined from kept heads and the
    outputs' bytes (this runs before the write, with cold caches); None where the general
    encoder must do it: BYTES, an array not in its datatype's dtype or not C-contiguous."""
    n = len(tensors)
    if n > 15:
        return None
    key = (top["model_name"], top["model_version"], n)
    start = _STARTS.get(key) if "id" not in top else None
    if start is None:
        # {..., "outputs": {}} ends with an empty fixmap: put one of n entries in its place.
        start = msgpack_dumps({**top, "outputs": {}})[:-1] + bytes((0x80 | n,))
        if "id" not in top and len(_STARTS) < _KEPT_MAX:
            _STARTS[key] = start
    parts: list[Any] = [start]
    for name, arr, datatype, _ in tensors:
        if datatype == "BYTES" or arr.dtype != V2_TO_NUMPY[datatype] or arr.nbytes >= 2**32:
            return None
        head_key = (name, datatype, arr.shape)
        head = _HEADS.get(head_key)
        if head is None:
            head = msgpack_tensor_head(name, datatype, arr.shape, arr.nbytes)
            if len(_HEADS) < _KEPT_MAX:
                _HEADS[head_key] = head
        parts.append(head)
        parts.append(arr)  # its raw bytes: bytes.join reads any plain buffer
    try:
        return b"".join(parts)
    except TypeError:  # not C-contiguous: no plain buffer
        return None
