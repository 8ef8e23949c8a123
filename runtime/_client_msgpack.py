"""The blocking client's shortcuts for msgpack bodies (docs/formats.md).

A client sends the same names, datatypes and shapes again and again, and gets back
answers that differ only in their tensors' bytes. Both ends of a call run right after
the calling thread wakes up, with its caches cold, where every step counts: so the
parts of a body that do not change are encoded (or checked) as bytes, once, and a call
only joins or slices the tensors' bytes. Anything else takes the general encoder and
decoder in runtime.formats, which these must agree with byte for byte.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .datatypes import V2_TO_NUMPY
from .formats import msgpack_bin_header, msgpack_dumps, msgpack_tensor_head

# {"inputs": {...}} with up to 15 inputs (a fixmap), as msgpack spells it.
_INPUTS = [b"\x81\xa6inputs" + bytes((0x80 | n,)) for n in range(16)]
_KEPT_MAX = 256  # encoded tensor heads, or answer layouts, kept per client


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x80 | n,))
    return b"\xde" + n.to_bytes(2, "big") if n < 65536 else b"\xdf" + n.to_bytes(4, "big")


def encode_inputs(
    tensors: dict[str, tuple[np.ndarray, str]], heads: dict[tuple[str, str, tuple[int, ...]], bytes]
) -> bytes | None:
    """The request `{"inputs": {name: {"datatype", "shape", "data"}}}`, or None where the
    general encoder must do it (BYTES tensors, more than 15 inputs).

    `heads` keeps each tensor's encoded head (name, datatype, shape and the bin header
    of its data) by (name, datatype, shape).
    """
    if len(tensors) > 15:
        return None
    parts: list[Any] = [_INPUTS[len(tensors)]]
    for name, (arr, datatype) in tensors.items():
        key = (name, datatype, arr.shape)
        head = heads.get(key)
        if head is None:
            if datatype == "BYTES" or arr.nbytes >= 2**32:
                return None
            head = msgpack_tensor_head(name, datatype, arr.shape, arr.nbytes)
            if len(heads) < _KEPT_MAX:
                heads[key] = head
        parts.append(head)
        parts.append(arr)  # its raw little-endian bytes: bytes.join reads any plain buffer
    try:
        return b"".join(parts)
    except TypeError:  # an array that is not C-contiguous has no plain buffer
        return None


_Tensor = tuple[str, np.dtype, tuple[int, ...], int, int]  # name, dtype, shape, offset, size


class _Layout:
    """Where an answer's tensors lie in its bytes, and the bytes around them.

    `first` is the answer's start, up to its first tensor's data; `rest` the (offset,
    bytes) of each later stretch between tensors' data; `tensors` the (name, dtype,
    shape, offset, size) of each tensor's data.
    """

    __slots__ = ("first", "rest", "tensors")

    def __init__(self, fixed: list[tuple[int, bytes]], tensors: list[_Tensor]) -> None:
        self.first = fixed[0][1]
        self.rest = [(offset, part) for offset, part in fixed[1:] if part]
        self.tensors = tensors


class Answers:
    """Decodes msgpack answers laid out like one seen before, by their length and bytes.

    `decode` gives the outputs, or None when no answer of that length was seen with the
    same bytes around its tensors; the caller then decodes the body in full and hands
    both to `learn`. An answer that carries an "id" (asked for with a request id) is
    never learned: its bytes change from call to call.
    """

    def __init__(self) -> None:
        self._layouts: dict[int, _Layout] = {}

    def decode(self, body: bytes) -> dict[str, np.ndarray] | None:
        layout = self._layouts.get(len(body))
        if layout is None or not body.startswith(layout.first):
            return None
        for offset, part in layout.rest:
            if not body.startswith(part, offset):
                return None
        return {
            name: np.frombuffer(body[offset : offset + size], dtype).reshape(shape)
            for name, dtype, shape, offset, size in layout.tensors
        }

    def learn(self, body: bytes, doc: dict[str, Any]) -> None:
        if len(self._layouts) < _KEPT_MAX or len(body) in self._layouts:
            layout = _layout(body, doc)
            if layout is not None:
                self._layouts[len(body)] = layout


def _layout(body: bytes, doc: dict[str, Any]) -> _Layout | None:
    """The layout of `body`, decoded as `doc`, if it is what the general encoder makes of
    an answer with numeric outputs only (as mlrt's server sends); else None."""
    outputs = doc.get("outputs")
    if "id" in doc or type(outputs) is not dict:
        return None
    fixed: list[tuple[int, bytes]] = []  # (offset, bytes) of each stretch between tensors
    tensors: list[_Tensor] = []
    part = _map_header(len(doc))
    where = 0
    for key, value in doc.items():
        part += msgpack_dumps(key)
        if key != "outputs":
            part += msgpack_dumps(value)
            continue
        part += _map_header(len(outputs))
        for name, item in outputs.items():
            if type(name) is not str or type(item) is not dict:
                return None
            dtype = V2_TO_NUMPY.get(item.get("datatype"))  # type: ignore[arg-type]
            shape = item.get("shape")
            data = item.get("data")
            if (
                dtype is None
                or dtype.kind == "O"  # BYTES
                or type(data) is not bytes
                or type(shape) is not list
                or not all(type(d) is int and d >= 0 for d in shape)
                or math.prod(shape) * dtype.itemsize != len(data)
            ):
                return None
            part += msgpack_dumps(name) + _map_header(len(item))
            for k, v in item.items():
                part += msgpack_dumps(k)
                if k != "data":
                    part += msgpack_dumps(v)
                    continue
                part += msgpack_bin_header(len(data))
                fixed.append((where, part))
                where += len(part)
                tensors.append((name, dtype, tuple(shape), where, len(data)))
                where += len(data)
                part = b""
    fixed.append((where, part))
    # Only if this gives back the answer's very bytes: another encoder may spell the same
    # document otherwise (a str 8 where a fixstr would do, a wider int).
    if not tensors or where + len(part) != len(body):
        return None
    for offset, stretch in fixed:
        if not body.startswith(stretch, offset):
            return None
    return _Layout(fixed, tensors)
