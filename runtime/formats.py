"""Tensor packing for the msgpack and Arrow body formats, and for the V2 binary
tensor layout, shared by the server's codecs and by `runtime.client`.

This module knows no HTTP and imports nothing from `runtime.server` or
`runtime.models`, so the client can use it without loading Starlette or
onnxruntime. pyarrow is imported on first use of an Arrow function. Every
malformed body raises `InvalidInput` with a message that names what is wrong;
docs/formats.md describes both schemas.
"""

from __future__ import annotations

import json
import math
import struct
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgpack
import numpy as np

from ._native._tensors import msgpack_tensors
from .arrow_size import MalformedStream, unpacked_bytes
from .datatypes import V2_TO_NUMPY, numbers_of_objects, numpy_dtype, to_bytes_array, v2_datatype
from .errors import InvalidInput, quoted

if TYPE_CHECKING:
    import pyarrow as pa

MSGPACK_CONTENT_TYPES = ("application/msgpack", "application/x-msgpack")
ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"

MAX_DIMS = 32
MAX_ELEMENTS = 2**40  # far above any body we accept; guards numpy against absurd shapes
# Arrow carries tensors of rank 1 (a plain column) up to this rank (nested fixed-size lists).
ARROW_MAX_RANK = 4

# Schema metadata keys of the Arrow format (values are UTF-8 strings).
ARROW_ID = b"mlrt.id"
ARROW_OUTPUTS = b"mlrt.outputs"  # JSON list of output names
ARROW_PARAMETERS = b"mlrt.parameters"  # JSON object
ARROW_MODEL_NAME = b"mlrt.model_name"
ARROW_MODEL_VERSION = b"mlrt.model_version"

_LEN = struct.Struct("<I")


_V2_OF_LITTLE_ENDIAN = {dtype: name for name, dtype in V2_TO_NUMPY.items() if name != "BYTES"}


def as_tensor(name: str, value: Any) -> tuple[np.ndarray, str]:
    """A user's array as (little-endian contiguous array, V2 datatype); str arrays become BYTES.

    Raises ValueError (a caller's mistake, not a request's) for dtypes V2 cannot carry.
    """
    if type(value) is np.ndarray and value.flags.c_contiguous:
        datatype = _V2_OF_LITTLE_ENDIAN.get(value.dtype)
        if datatype is not None:  # the usual case: sent as it is
            return value, datatype
    arr = np.asarray(value)
    if arr.dtype == object:
        # pandas' nullable frames give numbers as objects (1.5, pd.NA): send them as numbers,
        # not as their text.
        numbers = numbers_of_objects(arr)
        if numbers is not None:
            arr = numbers
    try:
        datatype = v2_datatype(arr.dtype)
    except InvalidInput as exc:
        raise ValueError(f"input '{name}': {exc}") from None
    if datatype == "BYTES":
        # Already the BYTES form (bytes, None for a missing value) is sent as it is; a str
        # array is not looked at element by element before it is converted.
        ready = arr.dtype == object and all(
            isinstance(v, bytes) or v is None for v in arr.reshape(-1).tolist()
        )
        if not ready:
            arr = to_bytes_array(arr, missing=True)  # None and NaN: a missing value, sent as null
        return arr, datatype
    # np.asarray, not np.ascontiguousarray, which turns a 0-d array into a 1-d one.
    return np.asarray(arr, dtype=V2_TO_NUMPY[datatype], order="C"), datatype


def check_shape(value: Any, where: str) -> tuple[int, ...]:
    # A plain loop: this runs for every tensor of every request, and generator
    # expressions cost more than the two or three dimensions they would check.
    if isinstance(value, list | tuple):
        elements = 1  # of the non-zero dimensions, which bounds each of them too
        for d in value:
            if not isinstance(d, int) or d.__class__ is bool or d < 0:
                break
            if d:
                elements *= d
        else:
            if len(value) > MAX_DIMS:
                raise InvalidInput(
                    f"{where}: shape has {len(value)} dimensions; at most {MAX_DIMS} are supported"
                )
            # Also for zero-element tensors: numpy refuses shapes like [0, 2**62, 2**62].
            if elements > MAX_ELEMENTS:
                raise InvalidInput(f"{where}: shape {list(value)} is too large")
            return tuple(value)
    raise InvalidInput(f"{where}: 'shape' must be a list of non-negative integers, got {quoted(value)}")


# -- the V2 binary tensor layout -----------------------------------------------------------


def v2_bytes_payload(arr: np.ndarray) -> bytes:
    """A BYTES tensor in the V2 binary layout: each element a 4-byte LE length + bytes."""
    parts = []
    for i, v in enumerate(arr.reshape(-1).tolist()):
        if v is None:
            raise ValueError(
                f"BYTES element {i} is missing (None), which the V2 binary layout cannot carry; "
                "send it with format='json', 'msgpack' or 'arrow'"
            )
        b = v if isinstance(v, bytes) else str(v).encode("utf-8")
        parts.append(_LEN.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def v2_parse_bytes(buf: bytes | memoryview, where: str) -> list[bytes]:
    items: list[bytes] = []
    pos, end = 0, len(buf)
    while pos < end:
        if pos + 4 > end:
            raise InvalidInput(f"{where}: truncated BYTES length prefix")
        (n,) = _LEN.unpack_from(buf, pos)
        pos += 4
        if pos + n > end:
            raise InvalidInput(f"{where}: BYTES element of {n} bytes overruns its tensor")
        items.append(bytes(buf[pos : pos + n]))
        pos += n
    return items


def object_array(items: Sequence[bytes | None], shape: tuple[int, ...]) -> np.ndarray:
    # np.array(list_of_bytes, object) would build an "S" array or a 2-D one; fill instead.
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr.reshape(shape)


def raw_tensor(where: str, datatype: str, shape: tuple[int, ...], buf: bytes | memoryview) -> np.ndarray:
    """A fixed-size tensor from its raw little-endian row-major bytes."""
    dtype = numpy_dtype(datatype)
    count = math.prod(shape)
    if len(buf) != count * dtype.itemsize:
        raise InvalidInput(
            f"{where}: {len(buf)} bytes of data do not match shape {list(shape)} of {datatype} "
            f"({count * dtype.itemsize} bytes)"
        )
    if dtype.kind == "b" and count and np.frombuffer(buf, np.uint8).max() > 1:
        raise InvalidInput(f"{where}: BOOL bytes must be 0 or 1")
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


# -- msgpack -------------------------------------------------------------------------------


def msgpack_loads(body: bytes, what: str) -> dict[str, Any]:
    """The top-level map of a msgpack body; every limit sized from the body itself."""
    n = len(body)
    try:
        doc = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            max_bin_len=n,
            max_str_len=n,
            max_array_len=n,
            max_map_len=n,
            max_ext_len=n,
        )
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        # ValueError covers ExtraData, FormatError, StackError and invalid UTF-8 in a str.
        # msgpack's FormatError says nothing more than its name: say what it means.
        said = str(exc) or "a byte that starts no msgpack value (is the body msgpack?)"
        raise InvalidInput(f"malformed msgpack in {what}: {type(exc).__name__}: {said}") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"the {what} must be a msgpack map, got {type(doc).__name__}")
    return doc


class _Packers(threading.local):
    # msgpack.packb makes a Packer, with a 256 KiB buffer, for every call: most of
    # what packing a small body costs. One per thread, since a Packer is not thread-safe.
    def __init__(self) -> None:
        self.pack = msgpack.Packer(use_bin_type=True).pack


_packers = _Packers()
_PACKER_KEEP_BYTES = 1 << 20  # a Packer keeps its largest buffer: past this, a new one


def msgpack_dumps(doc: Any) -> bytes:
    out: bytes = _packers.pack(doc)
    if len(out) > _PACKER_KEEP_BYTES:
        _packers.pack = msgpack.Packer(use_bin_type=True).pack
    return out


def msgpack_bin_header(n: int) -> bytes:
    """msgpack's header of a bin of n bytes (bin 8, 16 or 32; n < 2**32)."""
    if n < 256:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 65536:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def msgpack_tensor_head(name: str, datatype: str, shape: tuple[int, ...], nbytes: int) -> bytes:
    """What `{name: tensor_to_msgpack(arr, datatype)}` packs to in a map, up to the data of a
    numeric tensor: its name, the map of datatype and shape, the header of a bin of
    `nbytes`. The tensor's raw bytes follow. Both ends keep these for the shapes they send
    again and again (runtime/_client_msgpack.py, server/codec_msgpack.py)."""
    # {"datatype", "shape", "data": b""} ends with the 2-byte header of an empty bin.
    doc = msgpack_dumps({"datatype": datatype, "shape": list(shape), "data": b""})[:-2]
    return msgpack_dumps(name) + doc + msgpack_bin_header(nbytes)


def _bytes_items(arr: np.ndarray) -> list[bytes | None]:
    """A BYTES tensor's elements, row-major, as bytes; None (a missing value) kept."""
    items = arr.reshape(-1).tolist()
    return [v if isinstance(v, bytes) or v is None else str(v).encode("utf-8") for v in items]


def tensor_to_msgpack(arr: np.ndarray, datatype: str) -> dict[str, Any]:
    """{"datatype", "shape", "data"}: data is bin (raw LE bytes) or, for BYTES, a list of bin."""
    data: Any
    if datatype == "BYTES":
        data = _bytes_items(arr)
    else:
        # msgpack packs any contiguous buffer as bin without a copy.
        data = memoryview(np.ascontiguousarray(arr, dtype=V2_TO_NUMPY[datatype]).reshape(-1)).cast("B")
    return {"datatype": datatype, "shape": list(arr.shape), "data": data}


def tensor_from_msgpack(where: str, item: Any) -> tuple[np.ndarray, str]:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where} must be a map with datatype, shape and data")
    datatype = item.get("datatype")
    if not isinstance(datatype, str):
        raise InvalidInput(f"{where} needs a string 'datatype'")
    numpy_dtype(datatype)  # unknown datatype -> InvalidInput naming it
    shape = check_shape(item.get("shape"), where)
    if "data" not in item:
        raise InvalidInput(f"{where} has no 'data'")
    data = item["data"]
    if datatype != "BYTES":
        if not isinstance(data, bytes):
            raise InvalidInput(
                f"{where}: 'data' must be bin (raw little-endian bytes), got {type(data).__name__}"
            )
        return raw_tensor(where, datatype, shape, data), datatype
    if not isinstance(data, list):
        raise InvalidInput(f"{where}: BYTES 'data' must be an array of bin, got {type(data).__name__}")
    count = math.prod(shape)
    if len(data) != count:
        raise InvalidInput(f"{where}: {len(data)} BYTES elements for shape {list(shape)} ({count})")
    items: list[bytes | None] = []
    for v in data:
        if isinstance(v, bytes):
            items.append(v)
        elif isinstance(v, str):
            items.append(v.encode("utf-8"))
        elif v is None:  # a missing value, for models that take one (check_inputs asks)
            items.append(None)
        else:
            raise InvalidInput(f"{where}: BYTES elements must be bin, str or nil, got {type(v).__name__}")
    return object_array(items, shape), datatype


def tensors_from_msgpack(value: Any, kind: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """`inputs`/`outputs` as a map name -> tensor, or as a list of tensors with a 'name' key."""
    fast = msgpack_tensors(value)  # the common case in one compiled pass, or None
    if fast is not None:
        return fast  # type: ignore[no-any-return]
    pairs: list[tuple[Any, Any]]
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise InvalidInput(f"{kind}[{i}] must be a map")
            pairs.append((item.get("name"), item))
    else:
        raise InvalidInput(f"'{kind}' must be a map of name -> tensor or a list of tensors")
    if not pairs:
        raise InvalidInput(f"'{kind}' is empty")
    tensors: dict[str, np.ndarray] = {}
    datatypes: dict[str, str] = {}
    for i, (name, item) in enumerate(pairs):
        if not isinstance(name, str):
            raise InvalidInput(f"{kind}[{i}] needs a string name, got {quoted(name)}")
        where = f"{kind[:-1]} '{name}'"
        if name in tensors:
            raise InvalidInput(f"{where} is given twice")
        tensors[name], datatypes[name] = tensor_from_msgpack(where, item)
    return tensors, datatypes


# -- Arrow IPC stream ----------------------------------------------------------------------


def _pa() -> Any:
    import pyarrow as pa

    return pa


def _is_binary_like(pa: Any, t: Any) -> bool:
    types = pa.types
    return bool(
        types.is_binary(t)
        or types.is_large_binary(t)
        or types.is_string(t)
        or types.is_large_string(t)
        or types.is_fixed_size_binary(t)
        or types.is_binary_view(t)
        or types.is_string_view(t)
    )


def arrow_datatype(t: pa.DataType) -> str | None:
    """The V2 datatype of an Arrow leaf type, or None when there is none."""
    pa = _pa()
    if _is_binary_like(pa, t):
        return "BYTES"
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        return v2_datatype(np.dtype(t.to_pandas_dtype()))
    return None


def _flat_leaf(where: str, column: Any, pa: Any) -> tuple[np.ndarray, str]:
    t = column.type
    datatype = arrow_datatype(t)
    if datatype is None:
        raise InvalidInput(f"{where}: unsupported Arrow type {t}")
    if column.null_count and datatype not in ("BYTES", "FP16", "FP32", "FP64"):
        raise InvalidInput(
            f"{where}: {column.null_count} null values; {datatype} tensors cannot hold a missing "
            "value (float ones take it as NaN)"
        )
    if datatype == "BYTES":  # a null is a missing value (None), for models that take one
        items = [v.encode("utf-8") if isinstance(v, str) else v for v in column.to_pylist()]
        return object_array(items, (len(items),)), datatype
    # A null in a float column is NaN, the missing number (pa.Table.from_pandas writes a
    # pandas NaN as null), as `mlrt predict` reads one from a file.
    return column.to_numpy(zero_copy_only=False), datatype


def column_to_tensor(
    where: str, column: pa.Array, inner: Sequence[int] = ()
) -> tuple[np.ndarray, str]:
    """A column as (tensor, V2 datatype of its leaf type).

    A plain column is 1-D; `fixed_size_list<k>` adds a dimension of k, nested up to
    ARROW_MAX_RANK; a `list` whose lists all have one length k counts as a fixed-size
    list. `inner` gives the expected inner dims (-1 unknown), only used to shape an
    empty `list` column.
    """
    pa = _pa()
    rows = len(column)
    dims = [rows]
    level = column
    while True:
        t = level.type
        if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
            if len(dims) >= ARROW_MAX_RANK:
                raise InvalidInput(
                    f"{where}: lists nested deeper than {ARROW_MAX_RANK - 1} levels "
                    f"(tensors of rank up to {ARROW_MAX_RANK}) are not supported"
                )
            if level.null_count:
                raise InvalidInput(f"{where}: {level.null_count} null lists; tensors cannot hold nulls")
            if pa.types.is_fixed_size_list(t):
                k = t.list_size
            else:
                lengths = np.diff(level.offsets.to_numpy())
                if len(lengths):
                    k = int(lengths[0])
                    if (lengths != k).any():
                        raise InvalidInput(
                            f"{where}: list lengths differ ({k} and {int(lengths[lengths != k][0])}); "
                            "a tensor column needs lists of one length (use fixed_size_list)"
                        )
                else:
                    hint = inner[len(dims) - 1] if len(dims) - 1 < len(inner) else -1
                    k = max(hint, 0)
            dims.append(k)
            level = level.flatten()
            continue
        flat, datatype = _flat_leaf(where, level, pa)
        shape = tuple(dims)
        if len(flat) != math.prod(shape):  # cannot happen for a validated batch
            raise InvalidInput(f"{where}: {len(flat)} values do not fill shape {list(shape)}")
        return flat.reshape(shape), datatype


def tensor_to_column(name: str, arr: np.ndarray, datatype: str) -> pa.Array:
    """A tensor of rank 1..ARROW_MAX_RANK as a column (see column_to_tensor)."""
    pa = _pa()
    if not 1 <= arr.ndim <= ARROW_MAX_RANK:
        raise InvalidInput(
            f"tensor '{name}' has shape {list(arr.shape)}; the Arrow format carries tensors of "
            f"rank 1 to {ARROW_MAX_RANK} (the first dimension is the rows)"
        )
    if datatype == "BYTES":
        column = pa.array(_bytes_items(arr), type=pa.binary())
    else:
        column = pa.array(np.ascontiguousarray(arr, dtype=V2_TO_NUMPY[datatype]).reshape(-1))
    for j in range(arr.ndim - 1, 0, -1):
        k = arr.shape[j]
        if k:
            column = pa.FixedSizeListArray.from_arrays(column, k)
        else:
            # FixedSizeListArray.from_arrays divides by the list size (SIGFPE in pyarrow 26).
            column = pa.array([[]] * math.prod(arr.shape[:j]), type=pa.list_(column.type, 0))
    return column


def arrow_dumps(columns: Mapping[str, pa.Array], metadata: Mapping[bytes, bytes]) -> bytes:
    pa = _pa()
    lengths = {len(c) for c in columns.values()}
    if len(lengths) > 1:
        sizes = ", ".join(f"'{n}': {len(c)}" for n, c in columns.items())
        raise InvalidInput(
            f"tensors with different first dimensions ({sizes}) cannot share one Arrow record batch"
        )
    batch = pa.record_batch(list(columns.values()), names=list(columns), metadata=dict(metadata))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


# LZ4/ZSTD-compressed Arrow bodies may unpack to this many times their size, or to this
# many bytes, whichever is more: enough for compressible tensors, not for a few kilobytes
# that unpack to gigabytes. (Uncompressed bodies never unpack to more than they are.)
ARROW_UNPACK_RATIO = 16
ARROW_UNPACK_FLOOR = 64 * 1024 * 1024


def arrow_loads(body: bytes, what: str) -> tuple[pa.RecordBatch, dict[bytes, bytes]]:
    """The single record batch of an Arrow IPC stream, fully validated, and its schema metadata."""
    try:
        unpacked = unpacked_bytes(body)
    except MalformedStream as exc:
        raise InvalidInput(f"malformed Arrow IPC stream in the {what}: {exc}") from None
    limit = max(ARROW_UNPACK_FLOOR, ARROW_UNPACK_RATIO * len(body))
    if unpacked > limit:
        raise InvalidInput(
            f"the Arrow stream in the {what} unpacks to {unpacked} bytes, more than the {limit} "
            f"accepted for a body of {len(body)} bytes"
        )
    pa = _pa()
    try:
        reader = pa.ipc.open_stream(pa.BufferReader(body))
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            raise InvalidInput(f"the Arrow stream in the {what} has no record batch; it needs one") from None
        try:
            reader.read_next_batch()
        except StopIteration:
            pass
        else:
            raise InvalidInput(f"the Arrow stream in the {what} has several record batches; it needs one")
        # Offsets and lengths come from the client: check them before reading any value.
        batch.validate(full=True)
        # Field names must be UTF-8 for pyarrow to hand them out; the list item names too.
        for field in batch.schema:
            _, t = field.name, field.type
            while hasattr(t, "value_field"):
                _, t = t.value_field.name, t.value_field.type
    except InvalidInput:
        raise
    except (pa.ArrowException, ValueError, TypeError, OSError, IndexError, OverflowError) as exc:
        raise InvalidInput(f"malformed Arrow IPC stream in the {what}: {exc}") from None
    return batch, dict(batch.schema.metadata or {})


def arrow_meta_str(metadata: Mapping[bytes, bytes], key: bytes) -> str | None:
    raw = metadata.get(key)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"schema metadata '{key.decode()}' is not UTF-8") from None


def arrow_meta_json(metadata: Mapping[bytes, bytes], key: bytes, kind: type) -> Any:
    text = arrow_meta_str(metadata, key)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInput(f"schema metadata '{key.decode()}' is not valid JSON") from None
    if not isinstance(value, kind):
        raise InvalidInput(f"schema metadata '{key.decode()}' must be a JSON {kind.__name__}")
    return value
