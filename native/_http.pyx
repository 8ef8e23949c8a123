# One whole, plain HTTP/1.1 request read in one pass.
#
# On the direct infer path (runtime/server/uvicorn_http.py) a small request nearly always
# arrives whole in one read. Fed to httptools, it costs a Python callback per element
# (the message's begin, the URL, each header, the end of the headers, the body, the end):
# more of the server's time per request than decoding its JSON. This reads the same bytes
# in one compiled pass when they are exactly one complete request of the plainest kind,
# and declines (None) everything else, which then goes to httptools as before: a
# pipelined or partial read, another method or version, chunked bodies, Expect, Upgrade,
# Connection other than keep-alive, a repeated Content-Length, bytes outside printable
# ASCII, folded lines. So it never answers differently from httptools, only sooner;
# tests/native/test_http_head.py holds the two to the same results.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

# RFC 9110 token characters, which a header name is made of.
cdef bint TOKEN[256]
# What a path may hold without percent-encoding (RFC 3986 pchar and "/", less "%").
cdef bint PATH[256]
cdef int _c
for _c in range(256):
    TOKEN[_c] = chr(_c) in "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    PATH[_c] = chr(_c) in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/"

# Headers past this many: declined (httptools and the server's limits decide).
cdef enum:
    MAX_HEADERS = 64
    NAME_MAX = 64

cdef bytes _CONTENT_LENGTH = b"content-length"
cdef bytes _CONNECTION = b"connection"
# Names most requests carry, given as these objects rather than made anew per request:
# their hashes are kept, so the server's lookups of them cost less too.
cdef tuple _COMMON = (
    b"host", b"content-type", b"accept", b"user-agent", b"accept-encoding",
    b"inference-header-content-length",
)


cdef inline bint _is_name(const unsigned char* s, Py_ssize_t n, const char* lower) noexcept:
    """Whether s[:n], lowercased, is `lower` (a NUL-terminated lowercase name)."""
    cdef Py_ssize_t i
    for i in range(n):
        if lower[i] == 0 or (s[i] | 0x20) != <unsigned char>lower[i]:
            return False
    return lower[n] == 0


def parse_request(bytes data, Py_ssize_t max_body):
    """(target, headers, body) when `data` is exactly one complete `POST` request of
    HTTP/1.1 with a Content-Length of at most `max_body` bytes, in the plainest form;
    else None.

    `target` is the request target's bytes, a plain path (declined with a query, a
    percent-encoding or anything else a path may not hold as it is); `headers` maps each header's lowercased name to its value with
    the surrounding blanks stripped (the last one wins, as dict(pairs) would); `body` is
    the Content-Length bytes after the header block."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef Py_ssize_t i, j, start, stop, name_start, name_end, count = 0
    cdef long long length = -1
    cdef unsigned char c
    cdef char lowered[NAME_MAX]
    if n < 24 or p[0] != c'P' or p[1] != c'O' or p[2] != c'S' or p[3] != c'T' or p[4] != c' ' \
            or p[5] != c'/':
        return None
    # The target: a path of plain characters up to the space before the version.
    i = 5
    while i < n and p[i] != c' ':
        if not PATH[p[i]]:
            return None
        i += 1
    if i + 10 > n:
        return None
    target = PyBytes_FromStringAndSize(<const char*>p + 5, i - 5)
    if (p[i + 1] != c'H' or p[i + 2] != c'T' or p[i + 3] != c'T' or p[i + 4] != c'P'
            or p[i + 5] != c'/' or p[i + 6] != c'1' or p[i + 7] != c'.' or p[i + 8] != c'1'
            or p[i + 9] != c'\r'):
        return None
    i += 10
    if i >= n or p[i] != c'\n':
        return None
    i += 1
    headers = {}
    while True:
        if i + 1 >= n:
            return None  # the header block does not end in this read
        if p[i] == c'\r':
            if p[i + 1] != c'\n':
                return None
            i += 2
            break
        # A name: one or more token characters, then a colon at once.
        name_start = i
        while i < n and TOKEN[p[i]]:
            i += 1
        name_end = i
        if name_end == name_start or name_end - name_start > NAME_MAX or i >= n or p[i] != c':':
            return None
        i += 1
        while i < n and (p[i] == c' ' or p[i] == c'\t'):
            i += 1
        start = i
        # The value: printable ASCII, spaces and tabs, up to CR LF.
        while i < n:
            c = p[i]
            if c == c'\r':
                break
            if (c < 0x20 and c != c'\t') or c >= 0x7f:
                return None
            i += 1
        if i + 1 >= n or p[i + 1] != c'\n':
            return None
        stop = i
        while stop > start and (p[stop - 1] == c' ' or p[stop - 1] == c'\t'):
            stop -= 1
        i += 2
        count += 1
        if count > MAX_HEADERS:
            return None
        name = _header(p, name_start, name_end, lowered)
        if name is _CONTENT_LENGTH:
            if length >= 0 or stop == start or stop - start > 15:
                return None  # repeated, empty or absurd: httptools decides
            length = 0
            for j in range(start, stop):
                c = p[j]
                if c < c'0' or c > c'9':
                    return None
                length = length * 10 + (c - c'0')
        elif name is _CONNECTION:
            if not (stop - start == 10 and _is_name(p + start, 10, b"keep-alive")):
                return None  # close, upgrade, a list: httptools decides
        elif name is None:
            return None  # a header that changes how the request is read
        headers[name] = PyBytes_FromStringAndSize(<const char*>p + start, stop - start)
    if length < 0 or length > max_body or n - i != length:
        return None  # no length (a POST without one), too large, or not exactly one request
    return target, headers, PyBytes_FromStringAndSize(<const char*>p + i, length)


cdef object _header(const unsigned char* p, Py_ssize_t start, Py_ssize_t end, char* lowered):
    """The lowercased name as bytes (content-length as the interned _CONTENT_LENGTH); None
    for a header this parser leaves to httptools."""
    cdef Py_ssize_t k, size = end - start
    cdef const unsigned char* s = p + start
    if size == 14 and _is_name(s, size, b"content-length"):
        return _CONTENT_LENGTH
    if (
        (size == 17 and _is_name(s, size, b"transfer-encoding"))
        or (size == 6 and _is_name(s, size, b"expect"))
        or (size == 7 and _is_name(s, size, b"upgrade"))
    ):
        return None
    if size == 10 and _is_name(s, size, b"connection"):
        return _CONNECTION  # keep-alive is the one value taken, checked by the caller
    for common in _COMMON:
        if PyBytes_GET_SIZE(common) == size and _is_name(s, size, PyBytes_AS_STRING(common)):
            return common
    for k in range(size):
        lowered[k] = <char>(s[k] | 0x20) if c'A' <= s[k] <= c'Z' else <char>s[k]
    return PyBytes_FromStringAndSize(lowered, size)
