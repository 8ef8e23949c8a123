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
from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.float cimport PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.unicode cimport PyUnicode_DecodeASCII

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
cdef object _empty = np.empty

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


# -- a whole V2 JSON request, straight from its bytes ------------------------------------
#
# The commonest request of all, {"inputs": [{"name", "shape", "datatype": "FP32" or "FP64",
# "data": [numbers]}], "id"?}, read from the body's bytes in one pass: no Python dict,
# list or float per element (orjson's tree, and v2_inputs' walk of it, cost a small
# request more than its parse). Anything else (parameters, outputs, other keys or
# datatypes, escapes or non-ASCII in strings, NaN, numbers out of range, nesting past rows
# of numbers, empty tensors) is declined: orjson and the Python decoder take it.
#
# Numbers become exactly the doubles orjson reads (each correctly rounded), then the
# tensor's datatype as numpy converts them. A number of at most 19 significant digits and
# a decimal exponent within 27 is m x 10^e with both factors exact in x87's 64-bit
# long double, so one multiplication or division rounds it once, to 64 bits. Rounding
# that to a double's 53 bits gives the correctly rounded double unless it lies within one
# unit of its last place of a halfway point between two doubles: the exact value is
# within half a unit of it, so on the same side of every such point. Those few numbers,
# and any others, go to strtod (correctly rounded, several times slower on long numbers).

cdef extern from "errno.h":
    int errno

cdef extern from "float.h":
    int LDBL_MANT_DIG
    int FLT_EVAL_METHOD

cdef extern from "string.h":
    void* memcpy(void* dest, const void* src, size_t n) nogil

cdef extern from "stdlib.h":
    double strtod(const char* s, char** end) nogil

cdef enum:
    INT_DIGITS_MAX = 15  # an integer token of at most this many digits is exact in a double
    LD_DIGITS_MAX = 19  # significant digits that fit a 64-bit integer
    LD_POW10_MAX = 27  # 10^27 = 2^27 x 5^27, and 5^27 < 2^64: exact in a 64-bit long double

cdef long double LD_POW10[LD_POW10_MAX + 1]
LD_POW10[0] = 1.0
for _k in range(1, LD_POW10_MAX + 1):
    LD_POW10[_k] = LD_POW10[_k - 1] * 10

# Clinger's fast path: a significand below 2^53 and a power of ten up to 10^22 are both
# exact doubles, so one multiplication or division in double precision rounds the exact
# value once, correctly. Only where doubles are computed as doubles (not in x87's wider
# registers, which would round twice): FLT_EVAL_METHOD 0, as on x86-64 and arm64.
cdef enum:
    D_POW10_MAX = 22
cdef double D_POW10[D_POW10_MAX + 1]
D_POW10[0] = 1.0
for _k in range(1, D_POW10_MAX + 1):
    D_POW10[_k] = D_POW10[_k - 1] * 10
cdef bint D_EXACT = FLT_EVAL_METHOD == 0


cdef inline unsigned long long _significand(long double r) noexcept:
    """x87's 64-bit significand, explicit leading bit included: the first 8 bytes."""
    cdef unsigned long long bits
    memcpy(&bits, &r, 8)
    return bits


# Only where long double is x87's format, as checked here on 1.5 (0b1.1): elsewhere every
# number goes to strtod.
cdef bint LD_EXACT = (
    LDBL_MANT_DIG == 64 and sizeof(long double) >= 10 and _significand(1.5) == 0xC000000000000000
)


cdef inline Py_ssize_t _ws(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    while i < n and (p[i] == c' ' or p[i] == c'\n' or p[i] == c'\r' or p[i] == c'\t'):
        i += 1
    return i


cdef Py_ssize_t _string(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """The index past the closing quote of a plain string (printable ASCII, no escapes)
    whose opening quote is at i; -1 for anything else."""
    if i >= n or p[i] != c'"':
        return -1
    i += 1
    while i < n:
        if p[i] == c'"':
            return i + 1
        if p[i] < 0x20 or p[i] >= 0x7f or p[i] == c'\\':
            return -1
        i += 1
    return -1


cdef inline bint _is(const unsigned char* p, Py_ssize_t start, Py_ssize_t end, const char* text) noexcept:
    """Whether the string token p[start:end] (its quotes included) holds `text`."""
    cdef Py_ssize_t k = 0, size = end - start - 2
    while k < size:
        if text[k] == 0 or p[start + 1 + k] != <unsigned char>text[k]:
            return False
        k += 1
    return text[size] == 0


cdef struct Decimal:
    unsigned long long m  # the significant digits, while there are at most LD_DIGITS_MAX
    int digits  # how many significant digits
    int exp10  # the value is m x 10^exp10
    bint negative
    bint integer  # neither a fraction nor an exponent: orjson reads an int


cdef Py_ssize_t _decimal(const unsigned char* p, Py_ssize_t n, Py_ssize_t i, Decimal* d) noexcept:
    """Read the JSON number at i (JSON's grammar, strictly) into `d`; its end, or -1 when
    there is none. One pass: checking and reading the digits together, in locals written to
    `d` at the end (stores through `d` could alias the bytes read, so the compiler would
    keep every running value in memory)."""
    cdef Py_ssize_t start
    cdef unsigned char c
    cdef int e = 0
    cdef bint exp_negative = False
    cdef unsigned long long m = 0
    cdef int digits = 0, exp10 = 0
    cdef bint negative = i < n and p[i] == c'-'
    cdef bint integer = True
    if negative:
        i += 1
    if i >= n:
        return -1
    if p[i] == c'0':
        i += 1
    elif c'1' <= p[i] <= c'9':
        while i < n:
            c = p[i] - c'0'
            if c > 9:
                break
            digits += 1
            if digits <= LD_DIGITS_MAX:
                m = m * 10 + c
            else:
                exp10 += 1  # a digit past what m holds: _double declines on digits
            i += 1
    else:
        return -1
    if i < n and p[i] == c'.':
        integer = False
        i += 1
        start = i
        while i < n:
            c = p[i] - c'0'
            if c > 9:
                break
            if m or c:
                digits += 1
                if digits <= LD_DIGITS_MAX:
                    m = m * 10 + c
                    exp10 -= 1
            else:
                exp10 -= 1  # a leading zero of the fraction
            i += 1
        if i == start:
            return -1
    if i < n and (p[i] == c'e' or p[i] == c'E'):
        integer = False
        i += 1
        if i < n and (p[i] == c'+' or p[i] == c'-'):
            exp_negative = p[i] == c'-'
            i += 1
        start = i
        while i < n:
            c = p[i] - c'0'
            if c > 9:
                break
            if e < 100000:
                e = e * 10 + c
            i += 1
        if i == start:
            return -1
        exp10 += -e if exp_negative else e
    d.m = m
    d.digits = digits
    d.exp10 = exp10
    d.negative = negative
    d.integer = integer
    return i


cdef Py_ssize_t _number(const unsigned char* p, Py_ssize_t n, Py_ssize_t i, bint* integer) noexcept:
    """The end of the JSON number at i, -1 when there is none; `integer` as Decimal's."""
    cdef Decimal d
    i = _decimal(p, n, i, &d)
    integer[0] = i >= 0 and d.integer  # `d` is written only for a number
    return i


cdef bint _double(const Decimal* d, double* out) noexcept:
    """The correctly rounded double of a number by Clinger's fast path or the long double
    rule above; False where neither decides (strtod then does)."""
    cdef unsigned long long low
    cdef long double r
    cdef double x
    if d.digits > LD_DIGITS_MAX:
        return False
    if d.m == 0:
        out[0] = -0.0 if d.negative else 0.0
        return True
    if D_EXACT and d.m < (1ULL << 53) and -D_POW10_MAX <= d.exp10 <= D_POW10_MAX:
        x = <double>d.m
        x = x * D_POW10[d.exp10] if d.exp10 >= 0 else x / D_POW10[-d.exp10]
        out[0] = -x if d.negative else x
        return True
    if not LD_EXACT:
        return False
    if d.exp10 > LD_POW10_MAX or d.exp10 < -LD_POW10_MAX:
        return False
    if d.exp10 >= 0:
        r = <long double>d.m * LD_POW10[d.exp10]
    else:
        r = <long double>d.m / LD_POW10[-d.exp10]
    # The 11 bits below a double's 53: 0x400 is halfway between two doubles.
    low = _significand(r) & 0x7ff
    if 0x3ff <= low <= 0x401:
        return False
    out[0] = -<double>r if d.negative else <double>r
    return True


cdef Py_ssize_t _element(const unsigned char* p, Py_ssize_t n, Py_ssize_t i, Kind kind, char* out,
                         Py_ssize_t k) noexcept:
    """Read the number at i into element k of `out` as the Python decoder would store it;
    the index past it, or -1 to decline."""
    cdef Decimal num
    cdef Py_ssize_t end = _decimal(p, n, i, &num)
    cdef long long v
    cdef double d
    cdef char* stop
    if end < 0:
        return -1
    if num.integer:
        # orjson reads an int: exact in a double up to 15 digits. Past 2^24 an FP32 input
        # is left to numpy's own conversion, as v2_inputs leaves it.
        if num.digits > INT_DIGITS_MAX:
            return -1
        v = -<long long>num.m if num.negative else <long long>num.m
        if kind == K_FP32:
            if v > F32_EXACT_INT or v < -F32_EXACT_INT:
                return -1
            (<float*>out)[k] = <float>v
        else:
            (<double*>out)[k] = <double>v
        return end
    if not _double(&num, &d):
        errno = 0
        d = strtod(<const char*>p + i, &stop)
        if stop != <char*>p + end or errno != 0:
            return -1  # out of a double's range, or a C locale that reads numbers otherwise
    if not isfinite(d):
        return -1
    if kind == K_FP32:
        if fabs(d) > FLT_MAX:
            return -1  # out of FP32's range: the Python decoder says so
        (<float*>out)[k] = <float>d
    else:
        (<double*>out)[k] = d
    return end


cdef Py_ssize_t _skip_data(const unsigned char* p, Py_ssize_t n, Py_ssize_t i) noexcept:
    """The end of a "data" value of numbers, or of rows of numbers, read later (when the
    datatype and shape, which may follow it, are known); -1 for anything else."""
    cdef bint integer
    cdef int depth = 0
    if i >= n or p[i] != c'[':
        return -1
    while i < n:
        if p[i] == c'[':
            depth += 1
            if depth > 2:
                return -1
            i += 1
        elif p[i] == c']':
            depth -= 1
            i += 1
            if depth == 0:
                return i
        elif p[i] == c',' or p[i] == c' ' or p[i] == c'\n' or p[i] == c'\r' or p[i] == c'\t':
            i += 1
        else:
            i = _number(p, n, i, &integer)
            if i < 0:
                return -1
    return -1


cdef inline Py_ssize_t _next(const unsigned char* p, Py_ssize_t n, Py_ssize_t i, unsigned char close,
                             bint* closed) noexcept:
    """After an array's element or an object's member at i: past the comma and the blanks
    after it (`closed` False), or past the closing `close` (`closed` True); -1 otherwise."""
    i = _ws(p, n, i)
    if i < n and p[i] == c',':
        closed[0] = False
        return _ws(p, n, i + 1)
    if i < n and p[i] == close:
        closed[0] = True
        return i + 1
    return -1


cdef inline Py_ssize_t _store_next(const unsigned char* p, Py_ssize_t n, Py_ssize_t i, Kind kind,
                                   char* out, Py_ssize_t* k, Py_ssize_t count) noexcept:
    """The number at i into element k[0] of `out` (k[0] moved on); -1 past `count` elements
    or where _element declines."""
    if k[0] >= count:
        return -1
    i = _element(p, n, i, kind, out, k[0])
    if i >= 0:
        k[0] += 1
    return i


cdef object _read_data(const unsigned char* p, Py_ssize_t n, Py_ssize_t* at, Kind kind,
                       Py_ssize_t count, tuple shape):
    """The tensor of the "data" array at at[0] (moved past it): `count` numbers, flat or in
    rows of one width (as v2_inputs takes them); None to decline."""
    cdef Py_ssize_t i = at[0], k = 0, width = -1, row_start
    cdef bint rows, closed = False, row_closed
    cdef Py_buffer view
    if i >= n or p[i] != c'[':
        return None
    tensor = _empty(shape, _dtype(kind))
    PyObject_GetBuffer(tensor, &view, PyBUF_WRITABLE)
    cdef char* out = <char*>view.buf
    try:
        i = _ws(p, n, i + 1)
        rows = i < n and p[i] == c'['
        while not closed:
            if rows:
                if i >= n or p[i] != c'[':
                    return None
                i = _ws(p, n, i + 1)
                row_start = k
                row_closed = False
                while not row_closed:
                    i = _store_next(p, n, i, kind, out, &k, count)
                    if i < 0:
                        return None
                    i = _next(p, n, i, c']', &row_closed)
                    if i < 0:
                        return None
                if width < 0:
                    width = k - row_start
                elif k - row_start != width:
                    return None  # ragged: the Python decoder says so
            else:
                i = _store_next(p, n, i, kind, out, &k, count)
                if i < 0:
                    return None
            i = _next(p, n, i, c']', &closed)
            if i < 0:
                return None
    finally:
        PyBuffer_Release(&view)
    if k != count:
        return None
    at[0] = i
    return tensor


cdef tuple _read_shape(const unsigned char* p, Py_ssize_t n, Py_ssize_t* at, Py_ssize_t* count):
    """A shape of positive integers at at[0] (moved past it), or None."""
    cdef Py_ssize_t i = at[0], end
    cdef long long d, total = 1
    cdef bint integer = False, closed = False
    cdef list dims = []
    if i >= n or p[i] != c'[':
        return None
    i = _ws(p, n, i + 1)
    while not closed:
        end = _number(p, n, i, &integer)
        if end < 0 or not integer or p[i] == c'-' or end - i > 10:
            return None
        d = 0
        while i < end:
            d = d * 10 + (p[i] - c'0')
            i += 1
        total *= d
        if d == 0 or d > 2147483647 or total > 2147483647 or len(dims) >= MAX_DIMS:
            return None  # empty tensors and huge shapes: the Python decoder judges them
        dims.append(<Py_ssize_t>d)
        i = _next(p, n, i, c']', &closed)
        if i < 0:
            return None
    at[0] = i
    count[0] = total
    return tuple(dims)


cdef inline Py_ssize_t _member(const unsigned char* p, Py_ssize_t n, Py_ssize_t i, Py_ssize_t* key_end) noexcept:
    """An object member whose key (a plain string) is at i: the key's end in key_end[0], and
    where its value begins, past the colon and the blanks around it; -1 otherwise."""
    cdef Py_ssize_t end = _string(p, n, i)
    if end < 0:
        return -1
    key_end[0] = end
    i = _ws(p, n, end)
    if i >= n or p[i] != c':':
        return -1
    return _ws(p, n, i + 1)


cdef object _text(const unsigned char* p, Py_ssize_t n, Py_ssize_t* at):
    """The plain string at at[0] as str (at[0] moved past it), or None."""
    cdef Py_ssize_t end = _string(p, n, at[0])
    if end < 0:
        return None
    text = PyUnicode_DecodeASCII(<const char*>p + at[0] + 1, end - at[0] - 2, NULL)
    at[0] = end
    return text


cdef bint _read_input(const unsigned char* p, Py_ssize_t n, Py_ssize_t* at, dict inputs, dict datatypes):
    """One object of "inputs" at at[0] (moved past it) into `inputs` and `datatypes`; False to
    decline the request."""
    cdef Py_ssize_t i = at[0], key, key_end = 0, data_at = -1, count = 0
    cdef bint closed = False
    cdef Kind kind = K_NONE
    cdef tuple shape = None
    name = None
    tensor = None
    if i >= n or p[i] != c'{':
        return False
    i = _ws(p, n, i + 1)
    while not closed:
        key = i
        i = _member(p, n, i, &key_end)
        if i < 0:
            return False
        if _is(p, key, key_end, b"name") and name is None:
            name = _text(p, n, &i)
            if name is None:
                return False
        elif _is(p, key, key_end, b"datatype") and kind == K_NONE:
            key = i
            i = _string(p, n, i)
            if i < 0:
                return False
            if _is(p, key, i, b"FP32"):
                kind = K_FP32
            elif _is(p, key, i, b"FP64"):
                kind = K_FP64
            else:
                return False
        elif _is(p, key, key_end, b"shape") and shape is None:
            shape = _read_shape(p, n, &i, &count)
            if shape is None:
                return False
        elif _is(p, key, key_end, b"data") and data_at < 0 and tensor is None:
            if kind != K_NONE and shape is not None:
                tensor = _read_data(p, n, &i, kind, count, shape)
                if tensor is None:
                    return False
            else:  # read once its datatype and shape, which follow, are known
                data_at = i
                i = _skip_data(p, n, i)
                if i < 0:
                    return False
        else:
            return False  # parameters, another key, a key given twice
        i = _next(p, n, i, c'}', &closed)
        if i < 0:
            return False
    if name is None or kind == K_NONE or shape is None or name in inputs:
        return False
    if data_at >= 0:
        tensor = _read_data(p, n, &data_at, kind, count, shape)
    if tensor is None:
        return False  # no data, or data that does not fit
    inputs[name] = tensor
    datatypes[name] = "FP32" if kind == K_FP32 else "FP64"
    at[0] = i
    return True


def v2_json_request(bytes body):
    """(id, inputs, datatypes) of a V2 JSON request body without binary data, in the plain
    form above, each input exactly as runtime.server.codec's Python decoder makes it; None
    to take that decoder."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(body)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(body)
    cdef Py_ssize_t i, key, key_end = 0
    cdef bint seen_inputs = False, closed = False, inputs_closed
    cdef dict inputs = {}
    cdef dict datatypes = {}
    request_id = None
    i = _ws(p, n, 0)
    if i >= n or p[i] != c'{':
        return None
    i = _ws(p, n, i + 1)
    while not closed:
        key = i
        i = _member(p, n, i, &key_end)
        if i < 0:
            return None
        if _is(p, key, key_end, b"inputs") and not seen_inputs:
            seen_inputs = True
            if i >= n or p[i] != c'[':
                return None
            i = _ws(p, n, i + 1)
            inputs_closed = False
            while not inputs_closed:
                if not _read_input(p, n, &i, inputs, datatypes):
                    return None
                i = _next(p, n, i, c']', &inputs_closed)
                if i < 0:
                    return None
        elif _is(p, key, key_end, b"id") and request_id is None:
            request_id = _text(p, n, &i)
            if request_id is None:
                return None
        else:
            return None  # parameters, outputs, another key, a key given twice
        i = _next(p, n, i, c'}', &closed)
        if i < 0:
            return None
    if not seen_inputs or _ws(p, n, i) != n:
        return None
    return request_id, inputs, datatypes
