# The common V2 JSON answer, written in one compiled pass.
#
# An answer of one small row spent more in Python building the document orjson writes
# (a dict per output, its shape as a list, a contiguous flat array, the datatype's numpy
# dtype) than orjson spent writing it. This writes the same bytes straight from the
# arrays: outputs in JSON (not the binary extension) of datatype FP32, a signed or
# unsigned integer type, or BOOL, held in C order in exactly that dtype, with names,
# version, id and datatypes that need no escaping in JSON. Anything else returns None
# and gets codec.encode_document (orjson), and so does a NaN or an
# infinity (written there as Python's json writes them) and a float32 below about
# 1e-33, where the exact arithmetic below would need more than 128 bits.
#
# Numbers must be the text orjson writes, so that the answer does not depend on which
# path wrote it: integers in decimal, and a float32 as the shortest decimal that reads
# back as the same float32 (the nearest such one, ties to even digits), laid out as
# orjson lays it out (see _f32_text). tests/native/test_json_answer.py holds the two
# paths to the same bytes, and the formatter to orjson over every float32 the tests
# can afford (its test marked slow checks all 2^32 of them).

from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memmove
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize

import numpy as np

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

cdef extern from *:
    """
    /* 128-bit arithmetic is a gcc/clang extension: without it nothing is taken here. */
    #if defined(__SIZEOF_INT128__)
    typedef unsigned __int128 mlrt_u128;
    #define MLRT_HAVE_U128 1
    #else
    typedef unsigned long long mlrt_u128;
    #define MLRT_HAVE_U128 0
    #endif
    """
    # Cython needs only an unsigned integer type to reason about; C gets the real one.
    ctypedef unsigned long long u128 "mlrt_u128"
    const int HAVE_U128 "MLRT_HAVE_U128"

# 5^j for the scale of numbers below 1 (j <= 43: a 26-bit bound times 5^43 stays under
# 2^128), 10^k for those above (k <= 31, as a float32 is below 2^128).
cdef enum:
    MAX_POW5 = 43
    MAX_POW10 = 38
cdef u128 POW5[MAX_POW5 + 1]
cdef u128 POW10[MAX_POW10 + 1]
POW5[0] = 1
POW10[0] = 1
for _i in range(1, MAX_POW5 + 1):
    POW5[_i] = POW5[_i - 1] * 5
for _i in range(1, MAX_POW10 + 1):
    POW10[_i] = POW10[_i - 1] * 10

# Bytes each element may take in the answer, comma included: "-1.2345678e-30" and
# "-0.000012345678" are the longest float32s, an int64 20 characters and a sign.
cdef enum:
    ELEMENT_MAX = 24
    # What fits here is written without a heap allocation.
    STACK_BYTES = 2048


cdef int _f32_shortest(uint32_t bits, uint64_t* digits, int* exponent) noexcept nogil:
    """The shortest decimal digits * 10^exponent that reads back as the float32 `bits`
    (positive, finite, not zero); the nearest such one, ties to even. -1 to decline.

    The float is v = mv * 2^e2. Every real number strictly between its neighbours'
    midpoints, mm * 2^e2 and mp * 2^e2, rounds to it, and so do the midpoints themselves
    when v's mantissa is even (a reader rounds a tie to even). Scaled by 10^-e10 and
    floored, exactly, the three fit 64 bits; then decimal digits are dropped from all
    three while the interval still holds a number with fewer digits, keeping track of
    whether what was dropped was all zeros, to round the last digit exactly.
    """
    cdef uint32_t fraction = bits & 0x7FFFFF
    cdef uint32_t biased = (bits >> 23) & 0xFF
    if biased == 0 or biased == 0xFF:
        # A subnormal is far below what the scale reaches; infinity and NaN are not JSON.
        return -1
    cdef uint64_t m2 = fraction | (1 << 23)
    cdef int e2 = <int>biased - 152
    cdef bint accept = (m2 & 1) == 0
    cdef uint64_t mv = 4 * m2
    cdef uint64_t mp = mv + 2
    # Below a power of two the lower neighbour is half as far.
    cdef uint64_t mm = mv - 1 - (1 if (fraction != 0 or biased <= 1) else 0)
    # The scale leaves the interval (at least 3 * 2^e2 wide) about 300 to 3,000 units of
    # 10^e10 wide: at least one digit is always dropped, so the last one dropped is
    # known, and all three still fit 64 bits (below 2^26 * 3000 / 3). floor(e2 * log10(2))
    # as 78913 / 2^18 is exact for these exponents; an off-by-one would still do.
    cdef int e10 = ((e2 * 78913) >> 18 if e2 >= 0 else -((-e2 * 78913 + 262143) >> 18)) - 2
    cdef u128 wv, wp, wm, div, mask
    cdef uint64_t vr, vp, vm, nv, np_, nm, div64
    cdef bint vr_exact, vp_exact, vm_exact
    cdef int j, shift
    if e2 >= 0:
        if e10 < 0:
            e10 = 0
        if e2 <= 37:  # 26 + 37 bits: 64-bit arithmetic (every float32 below about 10^11)
            nv = mv << e2
            np_ = mp << e2
            nm = mm << e2
            div64 = <uint64_t>POW10[e10]
            vr = nv // div64
            vp = np_ // div64
            vm = nm // div64
            vr_exact = vr * div64 == nv
            vp_exact = vp * div64 == np_
            vm_exact = vm * div64 == nm
        else:
            wv = (<u128>mv) << e2
            wp = (<u128>mp) << e2
            wm = (<u128>mm) << e2
            div = POW10[e10]
            vr = <uint64_t>(wv / div)
            vp = <uint64_t>(wp / div)
            vm = <uint64_t>(wm / div)
            vr_exact = wv % div == 0
            vp_exact = wp % div == 0
            vm_exact = wm % div == 0
    else:
        j = -e10
        if j > MAX_POW5:
            return -1
        # x * 2^e2 / 10^e10 = x * 5^j / 2^(-e2 - j)
        shift = -e2 - j
        if j <= 16 and 0 <= shift < 64:
            # 26 bits times 5^16 (37 bits) fit 64: every float32 from about 5e-7 up.
            div64 = <uint64_t>POW5[j]
            nv = mv * div64
            np_ = mp * div64
            nm = mm * div64
            div64 = ((<uint64_t>1) << shift) - 1
            vr_exact = (nv & div64) == 0
            vp_exact = (np_ & div64) == 0
            vm_exact = (nm & div64) == 0
            vr = nv >> shift
            vp = np_ >> shift
            vm = nm >> shift
            return _shortest(vr, vp, vm, vr_exact, vp_exact, vm_exact, accept, e10, digits, exponent)
        wv = mv * POW5[j]
        wp = mp * POW5[j]
        wm = mm * POW5[j]
        if shift >= 0:
            mask = ((<u128>1) << shift) - 1
            vr_exact = (wv & mask) == 0
            vp_exact = (wp & mask) == 0
            vm_exact = (wm & mask) == 0
            vr = <uint64_t>(wv >> shift)
            vp = <uint64_t>(wp >> shift)
            vm = <uint64_t>(wm >> shift)
        else:
            vr = <uint64_t>(wv << -shift)
            vp = <uint64_t>(wp << -shift)
            vm = <uint64_t>(wm << -shift)
            vr_exact = vp_exact = vm_exact = True
    return _shortest(vr, vp, vm, vr_exact, vp_exact, vm_exact, accept, e10, digits, exponent)


cdef inline int _shortest(
    uint64_t vr, uint64_t vp, uint64_t vm, bint vr_exact, bint vp_exact, bint vm_exact, bint accept,
    int e10, uint64_t* digits, int* exponent,
) noexcept nogil:
    """Drop digits from the scaled value and ends while the interval holds a shorter number."""
    # The lower end is a candidate only when it is exact and ties go to v; the upper
    # end, exact and not taken, is excluded by stepping below it.
    cdef bint vm_zeros = accept and vm_exact
    cdef bint vr_zeros = vr_exact
    if not accept and vp_exact:
        vp -= 1
    cdef uint64_t last = 0
    cdef int removed = 0
    if not (vm_zeros or vr_zeros):
        # The common case: nothing dropped can be all zeros, so no tie and no exact
        # lower end to track. Two digits at a time while they fit, then one.
        while vp // 100 > vm // 100:
            last = (vr // 10) % 10
            vr //= 100
            vp //= 100
            vm //= 100
            removed += 2
        if vp // 10 > vm // 10:
            last = vr % 10
            vr //= 10
            vp //= 10
            vm //= 10
            removed += 1
        digits[0] = vr + (1 if (vr == vm or last >= 5) else 0)
        exponent[0] = e10 + removed
        return 0
    while vp // 10 > vm // 10:
        vm_zeros = vm_zeros and vm % 10 == 0
        vr_zeros = vr_zeros and last == 0
        last = vr % 10
        vr //= 10
        vp //= 10
        vm //= 10
        removed += 1
    if vm_zeros:
        # The lower end itself has fewer digits still, and may be taken.
        while vm % 10 == 0:
            vr_zeros = vr_zeros and last == 0
            last = vr % 10
            vr //= 10
            vp //= 10
            vm //= 10
            removed += 1
    if vr_zeros and last == 5 and vr % 2 == 0:
        last = 4  # exactly halfway: to the even digit
    digits[0] = vr + (1 if ((vr == vm and (not accept or not vm_zeros)) or last >= 5) else 0)
    exponent[0] = e10 + removed
    return 0


cdef inline int _length(uint64_t v) noexcept nogil:
    cdef int n = 1
    while n < 20 and v >= <uint64_t>POW10[n]:
        n += 1
    return n


# "00" to "99": digits are written two at a time.
cdef char PAIRS[200]
for _i in range(100):
    PAIRS[2 * _i] = 48 + _i // 10
    PAIRS[2 * _i + 1] = 48 + _i % 10


cdef inline char* _digits(char* p, uint64_t v, int n) noexcept nogil:
    """Write v's n decimal digits at p; returns the end."""
    cdef char* end = p + n
    cdef char* q = end
    cdef uint64_t pair
    while q - p >= 2:
        pair = v % 100
        v //= 100
        q -= 2
        q[0] = PAIRS[2 * pair]
        q[1] = PAIRS[2 * pair + 1]
    if q > p:  # an odd count: the leading digit
        p[0] = <char>(48 + v)
    return end


cdef char* _f32_text(char* p, float value) noexcept nogil:
    """Write a finite float32 as orjson does; NULL where _f32_shortest declines.

    Zero is "0.0". Otherwise, with n digits and the point after the k-th of them:
    k <= 13 and no fraction, the digits, zeros to the point and ".0"; 0 < k <= 13, the
    point among the digits; -6 < k <= 0, "0." and zeros before the digits; anything
    else, scientific with a signed exponent ("1e-7", "1.5e+16").
    """
    cdef uint32_t bits
    memcpy(&bits, &value, 4)
    if bits & 0x80000000U:
        p[0] = b'-'
        p += 1
        bits &= 0x7FFFFFFF
    if bits == 0:
        memcpy(p, b"0.0", 3)
        return p + 3
    cdef uint64_t digits
    cdef int exponent
    if _f32_shortest(bits, &digits, &exponent) < 0:
        return NULL
    cdef int n = _length(digits)
    cdef int k = n + exponent
    cdef int i, e
    if exponent >= 0 and k <= 13:
        p = _digits(p, digits, n)
        for i in range(exponent):
            p[i] = b'0'
        p += exponent
        memcpy(p, b".0", 2)
        return p + 2
    if 0 < k <= 13:
        _digits(p + 1, digits, n)
        memmove(p, p + 1, k)
        p[k] = b'.'
        return p + n + 1
    if -6 < k <= 0:
        p[0] = b'0'
        p[1] = b'.'
        for i in range(-k):
            p[2 + i] = b'0'
        return _digits(p + 2 - k, digits, n)
    _digits(p + 1, digits, n)
    p[0] = p[1]
    if n > 1:
        p[1] = b'.'
        p += n + 1
    else:
        p += 1
    p[0] = b'e'
    e = k - 1
    if e < 0:
        p[1] = b'-'
        e = -e
    else:
        p[1] = b'+'
    return _digits(p + 2, <uint64_t>e, _length(<uint64_t>e))


cdef inline char* _int_text(char* p, int64_t value) noexcept nogil:
    cdef uint64_t magnitude
    if value < 0:
        p[0] = b'-'
        p += 1
        magnitude = <uint64_t>0 - <uint64_t>value
    else:
        magnitude = <uint64_t>value
    return _digits(p, magnitude, _length(magnitude))


cdef inline char* _uint_text(char* p, uint64_t value) noexcept nogil:
    return _digits(p, value, _length(value))


# The element types written here, by V2 datatype: the buffer format numpy gives an
# array of it in native order, and its item size.
cdef enum Kind:
    K_F32, K_I8, K_I16, K_I32, K_I64, K_U8, K_U16, K_U32, K_U64, K_BOOL

cdef dict _KINDS = {
    "FP32": (K_F32, b"f", 4),
    "INT8": (K_I8, b"b", 1), "INT16": (K_I16, b"h", 2),
    "INT32": (K_I32, b"i", 4), "INT64": (K_I64, b"l", 8),
    "UINT8": (K_U8, b"B", 1), "UINT16": (K_U16, b"H", 2),
    "UINT32": (K_U32, b"I", 4), "UINT64": (K_U64, b"L", 8),
    "BOOL": (K_BOOL, b"?", 1),
}
# Each kind's buffer format character (int64 as a C long; _format_is takes "q" too).
cdef char _FORMAT_CHAR[K_BOOL + 1]
for _kind, _char, _size in _KINDS.values():
    _FORMAT_CHAR[<int>_kind] = ord(_char)
cdef type _ndarray = np.ndarray


cdef char* _elements(char* p, const char* data, Py_ssize_t count, Kind kind) noexcept nogil:
    """Write count elements as "[a,b,...]"; NULL where a float declines."""
    cdef Py_ssize_t i
    cdef float f
    p[0] = b'['
    p += 1
    for i in range(count):
        if i:
            p[0] = b','
            p += 1
        if kind == K_F32:
            memcpy(&f, data + 4 * i, 4)
            p = _f32_text(p, f)
            if p == NULL:
                return NULL
        elif kind == K_I64:
            p = _int_text(p, (<const int64_t*>data)[i])
        elif kind == K_I32:
            p = _int_text(p, (<const int*>data)[i])
        elif kind == K_I16:
            p = _int_text(p, (<const short*>data)[i])
        elif kind == K_I8:
            p = _int_text(p, (<const signed char*>data)[i])
        elif kind == K_U8:
            p = _uint_text(p, (<const unsigned char*>data)[i])
        elif kind == K_U16:
            p = _uint_text(p, (<const unsigned short*>data)[i])
        elif kind == K_U32:
            p = _uint_text(p, (<const unsigned int*>data)[i])
        elif kind == K_U64:
            p = _uint_text(p, (<const uint64_t*>data)[i])
        else:
            if data[i]:
                memcpy(p, b"true", 4)
                p += 4
            else:
                memcpy(p, b"false", 5)
                p += 5
    p[0] = b']'
    return p + 1


cdef const char* _plain(object text, Py_ssize_t* size) except? NULL:
    """A str's UTF-8 bytes when JSON writes them as they are (no quote, backslash or
    control character), else NULL; also NULL for anything not a str."""
    if type(text) is not str:
        return NULL
    cdef const char* s
    try:
        s = PyUnicode_AsUTF8AndSize(text, size)
    except UnicodeEncodeError:  # a lone surrogate: the general path says what it does
        return NULL
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(size[0]):
        c = <unsigned char>s[i]
        if c < 0x20 or c == 0x22 or c == 0x5C or c == 0x7F:
            return NULL
    return s


cdef inline char* _put(char* p, const char* s, Py_ssize_t n) noexcept nogil:
    memcpy(p, s, n)
    return p + n


def f32_text(object values):
    """A float32 array (any shape, C order) as orjson writes it flat, "[...]"; None
    where the formatter declines an element (NaN, infinity, below about 1e-33)."""
    if not HAVE_U128:
        return None
    cdef Py_buffer view
    PyObject_GetBuffer(values, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    cdef Py_ssize_t count, size
    cdef char* buf = NULL
    cdef char* end = NULL
    try:
        if view.itemsize != 4 or view.format == NULL or view.format != b"f":
            raise TypeError("f32_text takes a native float32 array")
        count = view.len // 4
        size = 2 + count * ELEMENT_MAX
        buf = <char*>malloc(size)
        if buf == NULL:
            raise MemoryError()
        with nogil:
            end = _elements(buf, <const char*>view.buf, count, K_F32)
        if end == NULL:
            return None
        return PyBytes_FromStringAndSize(buf, end - buf)
    finally:
        free(buf)
        PyBuffer_Release(&view)


cdef struct Picked:
    # An output being written: its name and datatype as UTF-8 (held by the caller's str
    # objects for the call) and its element kind. Its buffer is the view of the same index.
    const char* name
    Py_ssize_t name_n
    const char* datatype
    Py_ssize_t datatype_n
    Kind kind


cdef bint _format_is(const char* fmt, char want) noexcept:
    """Whether a buffer's format is the one-character `want` (a C long's "l"/"L" where
    int64 is a long; "q"/"Q" where it is a long long)."""
    if fmt == NULL or fmt[0] == 0 or fmt[1] != 0:
        return False
    if fmt[0] == want:
        return True
    return (fmt[0] == b'q' and want == b'l') or (fmt[0] == b'Q' and want == b'L')


def v2_json_answer(
    object model_name, object model_version, object request_id, object outputs, object selected,
    object datatypes,
):
    """The V2 JSON answer codec.encode_response writes for these outputs, or None where
    it is not the plain case this writes (see the module's comment)."""
    if not HAVE_U128:
        return None
    cdef Py_ssize_t name_n, version_n, id_n = 0, n
    cdef const char* name_s = _plain(model_name, &name_n)
    cdef const char* version_s = _plain(model_version, &version_n)
    cdef const char* id_s = NULL
    if name_s == NULL or version_s == NULL:
        return None
    if request_id is not None:
        id_s = _plain(request_id, &id_n)
        if id_s == NULL:
            return None
    cdef Py_ssize_t count = len(selected)
    # One allocation for what is kept of each output: its names and kind, and its buffer
    # (held until written, read in C: no Python object per shape, size or format).
    cdef char* block = <char*>malloc(count * (sizeof(Picked) + sizeof(Py_buffer)) + 1)
    if block == NULL:
        raise MemoryError()
    cdef Picked* picked = <Picked*>block
    cdef Py_buffer* views = <Py_buffer*>(block + count * sizeof(Picked))
    cdef Py_ssize_t bound = 64 + name_n + version_n + id_n
    cdef Py_ssize_t held = 0, i, d
    cdef Py_buffer* view
    cdef Picked* out
    cdef object entry
    cdef char stack[STACK_BYTES]
    cdef char* buf = stack
    cdef char* p
    try:
        for output, binary in selected:
            if held == count:
                return None  # `selected` grew while read: not an answer to write
            if binary:
                return None
            datatype = datatypes[output]
            entry = _KINDS.get(datatype)
            if entry is None:
                return None
            arr = outputs[output]
            if type(arr) is not _ndarray:
                return None
            out = &picked[held]
            out.name = _plain(output, &out.name_n)
            out.datatype = _plain(datatype, &out.datatype_n)
            if out.name == NULL or out.datatype == NULL:
                return None
            out.kind = entry[0]
            view = &views[held]
            try:
                PyObject_GetBuffer(arr, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
            except (BufferError, TypeError, ValueError):
                return None  # not C order: the general path converts it
            held += 1
            if view.itemsize != <Py_ssize_t>entry[2] or not _format_is(view.format, _FORMAT_CHAR[<int>out.kind]):
                return None  # a dtype other than the datatype's: converted there too
            bound += 64 + out.name_n + out.datatype_n + ELEMENT_MAX * (view.len // view.itemsize + view.ndim)
        if held != count:
            return None
        if bound > STACK_BYTES:
            buf = <char*>malloc(bound)
            if buf == NULL:
                raise MemoryError()
        p = _put(buf, b'{"model_name":"', 15)
        p = _put(p, name_s, name_n)
        p = _put(p, b'","model_version":"', 19)
        p = _put(p, version_s, version_n)
        if id_s != NULL:
            p = _put(p, b'","id":"', 8)
            p = _put(p, id_s, id_n)
        p = _put(p, b'","outputs":[', 13)
        for i in range(held):
            out = &picked[i]
            view = &views[i]
            p = _put(p, b'{"name":"' if i == 0 else b',{"name":"', 9 if i == 0 else 10)
            p = _put(p, out.name, out.name_n)
            p = _put(p, b'","datatype":"', 14)
            p = _put(p, out.datatype, out.datatype_n)
            p = _put(p, b'","shape":[', 11)
            for d in range(view.ndim):
                if d:
                    p[0] = b','
                    p += 1
                p = _uint_text(p, <uint64_t>view.shape[d])
            p = _put(p, b'],"data":', 9)
            with nogil:
                p = _elements(p, <const char*>view.buf, view.len // view.itemsize, out.kind)
            if p == NULL:
                return None  # a float the formatter declines: NaN, infinity or tiny
            p[0] = b'}'
            p += 1
        p = _put(p, b']}', 2)
        return PyBytes_FromStringAndSize(buf, p - buf)
    finally:
        for i in range(held):
            PyBuffer_Release(&views[i])
        free(block)
        if buf != stack:
            free(buf)
