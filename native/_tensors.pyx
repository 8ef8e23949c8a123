# The common shapes of a request's tensors, decoded in one compiled pass.
#
# A request of one small row spends more time walking its parsed JSON or msgpack in
# Python (a few dozen dict lookups, type checks and numpy calls, each slow with the
# cold caches of an idle server) than running a small model. These walk it in C and
# write JSON numbers straight into the tensor. They only ever answer for what the
# Python decoders (runtime/server/codec.py, runtime/formats.py) take without
# complaint and would turn into the same arrays; anything else, and every mistake,
# returns None and gets the Python decoder, which says what is wrong.
# tests/native/test_tensor_decoders.py holds the two to the same results.

from libc.math cimport fabs, isfinite
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_FromStringAndSize
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsLongLongAndOverflow

import numpy as np

# Raw little-endian bytes of these are the tensor as they stand (BOOL needs its bytes
# checked and BYTES is length-prefixed: both are the Python decoders' business).
cdef dict _RAW = {
    name: np.dtype(code)
    for name, code in (
        ("UINT8", "<u1"), ("UINT16", "<u2"), ("UINT32", "<u4"), ("UINT64", "<u8"),
        ("INT8", "<i1"), ("INT16", "<i2"), ("INT32", "<i4"), ("INT64", "<i8"),
        ("FP16", "<f2"), ("FP32", "<f4"), ("FP64", "<f8"),
    )
}
cdef object _F32 = _RAW["FP32"]
cdef object _F64 = _RAW["FP64"]
cdef object _I64 = _RAW["INT64"]
cdef object _I32 = _RAW["INT32"]
cdef object _frombuffer = np.frombuffer

cdef enum Kind:
    K_NONE, K_FP32, K_FP64, K_INT64, K_INT32

cdef double FLT_MAX = 3.4028234663852886e+38
# Integers beyond this take more than a float32's 24-bit mantissa: numpy rounds them
# once (int64 -> float32), a detour through double would round twice.
cdef long long F32_EXACT_INT = 1 << 24
cdef Py_ssize_t MAX_DIMS = 32  # as runtime.formats.MAX_DIMS


cdef Kind _kind(object datatype):
    if datatype == "FP32":
        return K_FP32
    if datatype == "FP64":
        return K_FP64
    if datatype == "INT64":
        return K_INT64
    if datatype == "INT32":
        return K_INT32
    return K_NONE


cdef Py_ssize_t _itemsize(Kind kind):
    return 4 if kind == K_FP32 or kind == K_INT32 else 8


cdef object _dtype(Kind kind):
    if kind == K_FP32:
        return _F32
    if kind == K_FP64:
        return _F64
    if kind == K_INT64:
        return _I64
    return _I32


cdef bint _store(object v, Kind kind, char* out, Py_ssize_t i):
    """Write one JSON number; False where the Python decoder would read it otherwise."""
    cdef double d
    cdef long long n
    cdef int overflow = 0
    cdef type t = type(v)
    if t is float:
        d = PyFloat_AS_DOUBLE(v)
        if kind == K_FP32:
            if isfinite(d) and fabs(d) > FLT_MAX:
                return False  # a finite number out of FP32's range: the Python decoder says so
            (<float*>out)[i] = <float>d
            return True
        if kind == K_FP64:
            (<double*>out)[i] = d
            return True
        return False  # a float for an integer datatype is an error
    if t is int:
        n = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow:
            return False
        if kind == K_FP32:
            if n > F32_EXACT_INT or n < -F32_EXACT_INT:
                return False
            (<float*>out)[i] = <float>n
        elif kind == K_FP64:
            (<double*>out)[i] = <double>n
        elif kind == K_INT64:
            (<long long*>out)[i] = n
        else:
            if n > 2147483647 or n < -2147483648:
                return False
            (<int*>out)[i] = <int>n
        return True
    return False  # bool, str, None, ...: the Python decoder decides


cdef object _json_tensor(object data, Kind kind, Py_ssize_t count, tuple shape):
    """A flat list of numbers, or a list of equally long flat lists, into one tensor."""
    cdef list rows, row
    cdef Py_ssize_t n_rows, width = 0, r, j, k = 0
    cdef char* out
    if type(data) is not list:
        return None
    rows = <list>data
    n_rows = len(rows)
    if n_rows == 0 or count == 0:
        return None
    if type(rows[0]) is list:
        width = len(<list>rows[0])
        if width * n_rows != count:
            return None
    elif n_rows != count:
        return None
    # A bytearray is the cheapest writable buffer to build; numpy then wraps it, no copy.
    buf = PyByteArray_FromStringAndSize(NULL, count * _itemsize(kind))
    out = PyByteArray_AS_STRING(buf)
    if type(rows[0]) is not list:
        for j in range(count):
            if not _store(rows[j], kind, out, j):
                return None
    else:
        for r in range(n_rows):
            if type(rows[r]) is not list:
                return None
            row = <list>rows[r]
            if len(row) != width:
                return None
            for j in range(width):
                if not _store(row[j], kind, out, k):
                    return None
                k += 1
    return _frombuffer(buf, _dtype(kind)).reshape(shape)


cdef tuple _shape(object value, Py_ssize_t* count):
    cdef Py_ssize_t n = 1
    cdef long long d
    cdef int overflow = 0
    if type(value) is not list or len(<list>value) > MAX_DIMS:
        return None
    for v in <list>value:
        if type(v) is not int:
            return None
        d = PyLong_AsLongLongAndOverflow(v, &overflow)
        if overflow or d < 0 or d > 2147483647:
            return None
        n *= d
        if n > 2147483647:
            return None
    count[0] = n
    return tuple(<list>value)


def v2_inputs(list items, object binary):
    """(inputs, datatypes) for a V2 request's "inputs" list, or None to take the full decoder.

    `binary` is the memoryview of the binary tensor data after the JSON header, or None
    when the request has no Inference-Header-Content-Length.
    """
    cdef dict inputs = {}
    cdef dict datatypes = {}
    cdef dict item, params
    cdef Py_ssize_t count = 0, offset = 0, nbytes
    cdef Kind kind
    cdef tuple shape
    if not items:
        return None
    for entry in items:
        if type(entry) is not dict:
            return None
        item = <dict>entry
        name = item.get("name")
        if type(name) is not str or name in inputs:
            return None
        datatype = item.get("datatype")
        if type(datatype) is not str:
            return None
        shape = _shape(item.get("shape"), &count)
        if shape is None:
            return None
        p = item.get("parameters")
        if p is None:
            kind = _kind(datatype)
            if kind == K_NONE:
                return None
            tensor = _json_tensor(item.get("data"), kind, count, shape)
            if tensor is None:
                return None
        else:
            if binary is None or type(p) is not dict or len(<dict>p) != 1:
                return None
            params = <dict>p
            dtype = _RAW.get(datatype)
            if dtype is None:
                return None
            nbytes = count * dtype.itemsize
            if not _is_size(params.get("binary_data_size"), nbytes) or offset + nbytes > len(binary):
                return None
            tensor = _frombuffer(binary[offset : offset + nbytes], dtype).reshape(shape)
            offset += nbytes
        inputs[name] = tensor
        datatypes[name] = datatype
    if binary is not None and offset != len(binary):
        return None
    return inputs, datatypes


cdef bint _is_size(object value, Py_ssize_t nbytes):
    cdef int overflow = 0
    if type(value) is not int:
        return False
    return PyLong_AsLongLongAndOverflow(value, &overflow) == nbytes and not overflow


def msgpack_tensors(object value):
    """(tensors, datatypes) for a msgpack "inputs"/"outputs" map of name -> {datatype,
    shape, data}, or None to take the full decoder (runtime.formats.tensors_from_msgpack)."""
    cdef dict tensors = {}
    cdef dict datatypes = {}
    cdef dict item
    cdef Py_ssize_t count = 0
    cdef tuple shape
    if type(value) is not dict or not value:
        return None
    for name, entry in (<dict>value).items():
        if type(name) is not str or type(entry) is not dict:
            return None
        item = <dict>entry
        datatype = item.get("datatype")
        if type(datatype) is not str:
            return None
        dtype = _RAW.get(datatype)
        if dtype is None:
            return None
        shape = _shape(item.get("shape"), &count)
        data = item.get("data")
        if shape is None or type(data) is not bytes or len(<bytes>data) != count * dtype.itemsize:
            return None
        tensors[name] = _frombuffer(data, dtype).reshape(shape)
        datatypes[name] = datatype
    return tensors, datatypes
