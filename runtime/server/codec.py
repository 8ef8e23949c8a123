"""Open Inference Protocol v2 REST codec: JSON tensors and the binary tensor data
extension, both directions. No HTTP framework here: bytes in, bytes out."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from .._native._json_answer import v2_json_answer
from .._native._tensors import v2_inputs, v2_json_request
from ..datatypes import numpy_dtype
from ..errors import InvalidInput, quoted
from ..formats import check_shape, object_array, v2_bytes_payload, v2_parse_bytes
from ..models.base import Model, Tensors


@dataclass(slots=True)
class InferRequest:
    """A decoded infer request, whatever its body format."""

    id: str | None
    parameters: dict[str, Any]
    inputs: Tensors
    datatypes: dict[str, str]
    # (name, binary?) per requested output; None means all outputs.
    outputs: list[tuple[str, bool]] | None
    # Whether outputs not named come back binary: only V2 JSON answers in JSON by default.
    binary_default: bool = True


@dataclass(slots=True)
class InferResponse:
    """What every format's encoder writes: the version that answered, the request's id,
    and the selected outputs (codec.select_outputs) with their V2 datatypes."""

    model_name: str
    model_version: str
    request_id: str | None
    outputs: Tensors
    selected: Sequence[tuple[str, bool]]
    datatypes: Mapping[str, str]

    def tensors(self) -> list[tuple[str, np.ndarray, str, bool]]:
        """(name, array, datatype, binary?) per selected output, in order."""
        outputs, datatypes = self.outputs, self.datatypes
        return [(name, outputs[name], datatypes[name], binary) for name, binary in self.selected]


def tensor_bytes(arr: np.ndarray, datatype: str) -> bytes:
    """A tensor's V2 raw bytes: little-endian row-major elements, or length-prefixed BYTES."""
    if datatype == "BYTES":
        return v2_bytes_payload(arr)
    return np.ascontiguousarray(arr, dtype=numpy_dtype(datatype)).tobytes()


def output_names(raw: Any, where: str) -> list[tuple[str, bool]] | None:
    """The outputs a binary format's request names (a list of names), or None for all."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(name, str) for name in raw):
        raise InvalidInput(f"{where} must be a list of output names (strings), got {quoted(raw)}")
    return [(name, True) for name in raw]


def loads_json(data: bytes | memoryview, what: str = "request") -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    # Python's json (and so tritonclient) writes NaN/Infinity for non-finite floats;
    # orjson rejects those tokens, the standard library accepts them.
    raw = bytes(data)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"malformed JSON in {what}: {exc}") from None
    except RecursionError:
        raise InvalidInput(f"malformed JSON in {what}: nested too deeply") from None
    # json.loads, unlike orjson, reads a \u escape of a lone surrogate (\ud800) into a str
    # that is not text: no UTF-8 can carry it back (a name, an id, a BYTES element).
    try:
        lone = (b"\\ud" in raw or b"\\uD" in raw) and _has_surrogate(doc)
    except RecursionError:
        raise InvalidInput(f"malformed JSON in {what}: nested too deeply") from None
    if lone:
        raise InvalidInput(f"malformed JSON in {what}: a \\u escape of a lone surrogate is not text")
    return doc


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    return False


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):  # JSON has no tuples; a string or number is a mistake
        raise InvalidInput(f"{where}: 'shape' must be a list of non-negative integers, got {quoted(value)}")
    return check_shape(value, where)


def parameters_of(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: 'parameters' must be an object (a map of names to values)")
    return value


def request_id(doc: dict[str, Any]) -> str | None:
    """A request's optional 'id', the same in every body format."""
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise InvalidInput(f"'id' must be a string, got {quoted(rid)}")
    return rid


def _flag(params: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: parameter '{key}' must be true or false, got {quoted(value)}")
    return value


_FLOAT_MAX = {np.dtype(t).char: float(np.finfo(t).max) for t in (np.float16, np.float32)}


def all_finite(flat: np.ndarray) -> bool:
    """No NaN or infinity in a 1-d float array."""
    if flat.size <= 32:
        # A few values (one row's outputs): Python floats are cheaper than two numpy calls.
        return all(map(math.isfinite, flat.tolist()))
    return bool(np.logical_and.reduce(np.isfinite(flat)))


def _json_tensor(where: str, datatype: str, shape: tuple[int, ...], data: Any) -> np.ndarray:
    dtype = numpy_dtype(datatype)
    count = math.prod(shape)
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat = _flatten(data, where)
        if len(flat) != count:
            raise InvalidInput(f"{where}: {len(flat)} elements for shape {list(shape)} ({count})")
        for v in flat:
            # null: a missing value, for models that take one (check_inputs asks the model).
            if not isinstance(v, str | bytes) and v is not None:
                raise InvalidInput(f"{where}: BYTES elements must be strings or null, got {quoted(v)}")
        return object_array([v.encode("utf-8") if isinstance(v, str) else v for v in flat], shape)
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"{where}: data is ragged or not numeric ({exc})") from None
    if arr.size != count:
        raise InvalidInput(f"{where}: {arr.size} elements do not fill shape {list(shape)} ({count} expected)")
    kind = arr.dtype.kind
    if count == 0:
        return np.zeros(shape, dtype)
    if dtype.kind == "b":
        if kind != "b":
            raise InvalidInput(f"{where}: BOOL data must be true/false")
    elif dtype.kind in "iu":
        if kind not in "iub":
            # Integers past int64 make numpy fall back to float or object arrays.
            return _big_ints(where, datatype, dtype, shape, data)
        info = np.iinfo(dtype)
        if kind != "b" and (arr.min() < info.min or arr.max() > info.max):
            raise InvalidInput(f"{where}: value out of range for {datatype}")
    elif kind not in "iufb":
        if dtype.kind == "f" and any(v is None for v in _flatten(data, where)):
            # JSON's null is the usual spelling of a missing value elsewhere; V2 tensors have none.
            raise InvalidInput(
                f"{where}: {datatype} data must be numbers, not null; send NaN for a missing value"
            )
        raise InvalidInput(f"{where}: {datatype} data must be numbers")
    elif kind == "f" and arr.dtype.itemsize > dtype.itemsize:
        limit = _FLOAT_MAX[dtype.char]
        if arr.ndim == 1:
            # A flat list: Python's min and max are cheaper than numpy's. Any infinity (or a
            # NaN that hides one from the comparisons) fails the test and takes the exact path.
            fits = -limit <= min(data) and max(data) <= limit
        else:
            fits = np.maximum.reduce(np.abs(arr.reshape(-1))) <= limit
        if fits:
            # No value overflows the narrower type.
            return arr.astype(dtype).reshape(shape)
        with np.errstate(over="ignore"):
            out = arr.astype(dtype).reshape(shape)
        # JSON spells infinity as Infinity: a finite number that overflows is a mistake.
        if not np.isfinite(out).all() and np.isinf(out).sum() != np.isinf(arr).sum():
            raise InvalidInput(f"{where}: a finite value is out of range for {datatype}")
        return out
    elif dtype.kind == "f" and kind in "iu" and dtype.itemsize == 2:
        limit = _FLOAT_MAX[dtype.char]  # integers past FP16's range would become infinities
        if arr.min() < -limit or arr.max() > limit:
            raise InvalidInput(f"{where}: a value is out of range for {datatype}")
    return arr.astype(dtype, copy=False).reshape(shape)


def _big_ints(
    where: str, datatype: str, dtype: np.dtype, shape: tuple[int, ...], data: list[Any]
) -> np.ndarray:
    flat = _flatten(data, where)
    info = np.iinfo(dtype)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        # orjson reads integers past 64 bits as floats: still an out-of-range integer.
        if all(
            isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer() for v in flat
        ) and any(not info.min <= v <= info.max for v in flat):
            raise InvalidInput(f"{where}: value out of range for {datatype}")
        raise InvalidInput(f"{where}: {datatype} data must be integers")
    if min(flat) < info.min or max(flat) > info.max:
        raise InvalidInput(f"{where}: value out of range for {datatype}")
    return np.array(flat, dtype=dtype).reshape(shape)


def _flatten(data: list[Any], where: str) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def _binary_tensor(where: str, datatype: str, shape: tuple[int, ...], buf: memoryview) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        items = v2_parse_bytes(buf, where)
        if len(items) != count:
            raise InvalidInput(f"{where}: {len(items)} BYTES elements for shape {list(shape)}")
        return object_array(items, shape)
    dtype = numpy_dtype(datatype)
    if len(buf) != count * dtype.itemsize:
        raise InvalidInput(
            f"{where}: binary_data_size {len(buf)} does not match shape {list(shape)} of "
            f"{datatype} ({count * dtype.itemsize} bytes)"
        )
    _check_bool(buf, dtype, where)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _check_bool(buf: bytes | memoryview, dtype: np.dtype, where: str) -> None:
    # numpy takes any byte as a bool; V2 sends 0 or 1, and another byte is a mistake.
    if dtype.kind == "b" and len(buf) and np.frombuffer(buf, np.uint8).max() > 1:
        raise InvalidInput(f"{where}: BOOL bytes must be 0 or 1")


def decode_request(body: bytes, header_length: int | None, model: Model) -> InferRequest:
    """Decode an infer request body; `header_length` is Inference-Header-Content-Length."""
    if header_length is None and type(body) is bytes:
        # The plainest V2 JSON request, read from its bytes in one compiled pass; anything
        # else (None) takes the decoder below, which gives the same arrays and says what
        # is wrong (tests/native/test_json_request.py holds the two together).
        plain = v2_json_request(body)
        if plain is not None:
            rid, inputs, datatypes = plain
            return InferRequest(rid, {}, inputs, datatypes, None, False)
    return decode_document(body, header_length, model)


def decode_document(body: bytes, header_length: int | None, model: Model) -> InferRequest:
    """decode_request by parsing the JSON into Python objects first: every request."""
    if header_length == 0:
        return _decode_raw(body, model)
    view = memoryview(body)
    if header_length is None:
        header, binary = view, view[0:0]
    else:
        if header_length < 0 or header_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length {header_length} is outside the body of {len(body)} bytes"
            )
        header, binary = view[:header_length], view[header_length:]
    doc = loads_json(header)
    if not isinstance(doc, dict):
        raise InvalidInput("the request must be a JSON object")
    params = parameters_of(doc.get("parameters"), "request")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("the request needs a non-empty 'inputs' list")
    fast = v2_inputs(raw_inputs, None if header_length is None else binary)
    if fast is None:
        inputs, datatypes = _decode_inputs(raw_inputs, binary, header_length)
    else:
        inputs, datatypes = fast
    binary_default = _flag(params, "binary_data_output", False, "request")
    outputs = None
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInput("'outputs' must be a list")
        outputs = []
        for i, item in enumerate(raw_outputs):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise InvalidInput(f"outputs[{i}] needs a string 'name'")
            where = f"output '{item['name']}'"
            p = parameters_of(item.get("parameters"), where)
            if "classification" in p:
                raise InvalidInput(f"{where}: the classification extension is not supported")
            outputs.append((item["name"], _flag(p, "binary_data", binary_default, where)))
    return InferRequest(request_id(doc), params, inputs, datatypes, outputs, binary_default)


def _decode_inputs(
    raw_inputs: list[Any], binary: memoryview, header_length: int | None
) -> tuple[Tensors, dict[str, str]]:
    """Every input, checked one by one: the path that names what is wrong."""
    inputs: Tensors = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise InvalidInput(f"inputs[{i}] must be an object")
        name = item.get("name")
        if not isinstance(name, str):
            raise InvalidInput(f"inputs[{i}] needs a string 'name'")
        where = f"input '{name}'"
        if name in inputs:
            raise InvalidInput(f"{where} is given twice")
        datatype = item.get("datatype")
        if not isinstance(datatype, str):
            raise InvalidInput(f"{where} needs a string 'datatype'")
        shape = _shape(item.get("shape"), where)
        p = parameters_of(item.get("parameters"), where)
        size = p.get("binary_data_size")
        if size is not None:
            if header_length is None:
                raise InvalidInput(
                    f"{where} has binary_data_size but the request has no "
                    "Inference-Header-Content-Length header"
                )
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInput(f"{where}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise InvalidInput(
                    f"{where}: binary_data_size {size} overruns the body ({len(binary) - offset} bytes left)"
                )
            tensor = _binary_tensor(where, datatype, shape, binary[offset : offset + size])
            offset += size
        elif "data" in item:
            tensor = _json_tensor(where, datatype, shape, item["data"])
        else:
            raise InvalidInput(f"{where} has neither 'data' nor binary_data_size")
        inputs[name] = tensor
        datatypes[name] = datatype
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data follow the last tensor")
    return inputs, datatypes


def _decode_raw(body: bytes, model: Model) -> InferRequest:
    """Triton's raw binary request: the whole body is the model's single input."""
    if len(model.inputs) != 1:
        raise InvalidInput(
            f"a raw binary request (Inference-Header-Content-Length: 0) needs a model with "
            f"one input; '{model.name}' has {len(model.inputs)}"
        )
    spec = model.inputs[0]
    if spec.datatype == "BYTES" or list(spec.shape).count(-1) > 1:
        raise InvalidInput("a raw binary request needs a fixed-size datatype and one variable dim")
    dtype = numpy_dtype(spec.datatype)
    fixed = math.prod(d for d in spec.shape if d != -1) * dtype.itemsize
    variable = -1 in spec.shape
    if (variable and (fixed == 0 or len(body) % fixed)) or (not variable and len(body) != fixed):
        raise InvalidInput(f"raw body of {len(body)} bytes does not fit shape {list(spec.shape)}")
    shape = tuple(len(body) // fixed if d == -1 else d for d in spec.shape)
    _check_bool(body, dtype, "raw body")
    arr = np.frombuffer(body, dtype=dtype).reshape(shape)
    return InferRequest(None, {}, {spec.name: arr}, {spec.name: spec.datatype}, None)


def select_outputs(
    req: InferRequest, model: Model, every: tuple[Sequence[tuple[str, bool]], ...] | None = None
) -> Sequence[tuple[str, bool]]:
    """The outputs to return, in order, each with its binary flag. `every`, where the
    caller keeps it (repository.LoadedModel.every_output): all of the model's outputs, as
    JSON and as binary."""
    if req.outputs is None:
        if every is not None:
            return every[req.binary_default]
        return [(o.name, req.binary_default) for o in model.outputs]
    known = {o.name for o in model.outputs}
    for name, _ in req.outputs:
        if name not in known:
            raise InvalidInput(f"unknown output '{name}' for model '{model.name}'; expected {sorted(known)}")
    return req.outputs


def _json_bytes_data(arr: np.ndarray, name: str) -> list[str]:
    out = []
    for v in arr.reshape(-1).tolist():
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(
                    f"output '{name}' holds bytes that are not UTF-8; request it with binary_data=true"
                ) from None
        out.append(v if isinstance(v, str) else str(v))
    return out


def _non_finite(docs: list[dict[str, Any]]) -> bool:
    """Whether a float array among the outputs' `data` holds a NaN or an infinity."""
    return any(
        isinstance(d.get("data"), np.ndarray) and d["data"].dtype.kind == "f" and not all_finite(d["data"])
        for d in docs
    )


def encode_response(resp: InferResponse) -> tuple[bytes, int | None]:
    """Encode an infer response as V2 JSON, with binary outputs after the JSON header;
    returns (body, Inference-Header-Content-Length or None)."""
    return encode_answer(
        resp.model_name, resp.model_version, resp.request_id, resp.outputs, resp.selected, resp.datatypes
    )


def encode_answer(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: Tensors,
    selected: Sequence[tuple[str, bool]],
    datatypes: Mapping[str, str],
) -> tuple[bytes, int | None]:
    """encode_response from the response's parts: the server's answer, which needs no
    InferResponse made unless the compiled pass declines."""
    # The common answer (JSON numbers of plain dtypes, names that need no escaping) in one
    # compiled pass, byte for byte what encode_document writes (tests/native/test_json_answer.py).
    body = v2_json_answer(model_name, model_version, request_id, outputs, selected, datatypes)
    if body is not None:
        return body, None
    return encode_document(InferResponse(model_name, model_version, request_id, outputs, selected, datatypes))


def encode_document(resp: InferResponse) -> tuple[bytes, int | None]:
    """encode_response for every answer: the V2 document built in Python, written by orjson."""
    out_docs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    floats = False
    for name, arr, datatype, binary in resp.tensors():
        doc: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            blob = tensor_bytes(arr, datatype)
            doc["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            doc["data"] = _json_bytes_data(arr, name)
        else:
            flat = np.ascontiguousarray(arr, dtype=numpy_dtype(datatype)).reshape(-1)
            floats = floats or flat.dtype.kind == "f"
            doc["data"] = flat
        out_docs.append(doc)
    top: dict[str, Any] = {"model_name": resp.model_name, "model_version": resp.model_version}
    if resp.request_id is not None:
        top["id"] = resp.request_id
    top["outputs"] = out_docs
    header = orjson.dumps(top, option=orjson.OPT_SERIALIZE_NUMPY)
    # orjson writes a NaN or an infinity in a float array as null, always right after "[" or
    # ",": looked for in the bytes written rather than in every array first (the common
    # answer has none). A name or id holding "[null" only sends us the slow way, never wrong.
    if floats and (b"[null" in header or b",null" in header) and _non_finite(out_docs):
        # Python's json writes NaN/Infinity, which V2 clients (json.loads) read back as the
        # same floats.
        for doc in out_docs:
            if isinstance(doc.get("data"), np.ndarray):
                doc["data"] = doc["data"].tolist()
        header = json.dumps(top, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
