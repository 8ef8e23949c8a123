"""The compiled whole-request reader against its oracle, httptools (llhttp).

runtime._native._http.parse_request may decline any read (None: httptools reads it), but
where it answers, httptools must read the same bytes as exactly one complete POST request
with the same target, the same headers (as uvicorn's protocol keeps them: names
lowercased, trailing blanks stripped), the same body, keep-alive and no upgrade. And the
requests real clients send must not be declined, or the fast path is never taken.
"""

from __future__ import annotations

import httptools
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from runtime._native._http import parse_request

from tests.native.mutations import mutate

SETTINGS = settings(deadline=None, max_examples=600, suppress_health_check=list(HealthCheck))
MAX_BODY = 1 << 16


class _Oracle:
    """What uvicorn's httptools protocol collects of each message."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.current: dict | None = None

    def on_message_begin(self) -> None:
        self.current = {"url": b"", "headers": [], "body": b"", "complete": False}
        self.messages.append(self.current)

    def on_url(self, url: bytes) -> None:
        self.current["url"] += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.current["headers"].append((name.lower(), value.rstrip(b" \t")))

    def on_body(self, body: bytes) -> None:
        self.current["body"] += body

    def on_message_complete(self) -> None:
        self.current["complete"] = True


def oracle(data: bytes) -> tuple[dict, httptools.HttpRequestParser] | None:
    """httptools' reading of `data`: the one message, or None when it fails or reads
    anything but exactly one complete message."""
    sink = _Oracle()
    parser = httptools.HttpRequestParser(sink)
    try:
        parser.feed_data(data)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return None
    if len(sink.messages) != 1 or not sink.messages[0]["complete"]:
        return None
    return sink.messages[0], parser


def check(data: bytes) -> None:
    parsed = parse_request(data, MAX_BODY)
    if parsed is None:
        return
    target, headers, body = parsed
    read = oracle(data)
    assert read is not None, f"taken whole, but httptools refuses or reads otherwise: {data!r}"
    message, parser = read
    assert parser.get_method() == b"POST"
    assert parser.get_http_version() == "1.1"
    assert parser.should_keep_alive()
    assert not parser.should_upgrade()
    assert message["url"] == target
    assert dict(message["headers"]) == headers
    assert message["body"] == body
    assert len(body) <= MAX_BODY


def request(target: bytes = b"/v2/models/mlp/infer", headers: list[tuple[bytes, bytes]] | None = None,
            body: bytes = b'{"inputs":[]}') -> bytes:  # fmt: skip
    if headers is None:
        headers = [(b"Host", b"127.0.0.1:8000"), (b"Content-Length", b"%d" % len(body)),
                   (b"Content-Type", b"application/json")]  # fmt: skip
    head = b"".join(b"%s: %s\r\n" % h for h in headers)
    return b"POST %s HTTP/1.1\r\n%s\r\n%s" % (target, head, body)


# -- what real clients send is taken ------------------------------------------------------


def test_the_requests_clients_send_are_taken_whole():
    body = b'{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}]}'
    clients = {
        "wrk": [(b"Host", b"127.0.0.1:8000"), (b"Content-Length", b"%d" % len(body)),
                (b"content-type", b"application/json")],
        "requests": [(b"Host", b"localhost:8000"), (b"User-Agent", b"python-requests/2.32.3"),
                     (b"Accept-Encoding", b"gzip, deflate"), (b"Accept", b"*/*"),
                     (b"Connection", b"keep-alive"), (b"Content-Type", b"application/json"),
                     (b"Content-Length", b"%d" % len(body))],
        "httpx": [(b"host", b"localhost:8000"), (b"accept", b"*/*"), (b"accept-encoding", b"gzip, deflate"),
                  (b"connection", b"keep-alive"), (b"user-agent", b"python-httpx/0.27.0"),
                  (b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")],
        "tritonclient": [(b"Host", b"localhost:8000"), (b"Content-Type", b"application/octet-stream"),
                         (b"Inference-Header-Content-Length", b"%d" % len(body)),
                         (b"Content-Length", b"%d" % len(body))],
    }  # fmt: skip
    for name, headers in clients.items():
        data = request(headers=headers, body=body)
        parsed = parse_request(data, MAX_BODY)
        assert parsed is not None, name
        assert parsed[0] == b"/v2/models/mlp/infer" and parsed[2] == body
        check(data)


def test_what_it_declines():
    body, big = b"{}", b"x" * (MAX_BODY + 1)
    cl = (b"Content-Length", b"2")
    declined = {
        "pipelined": request(headers=[cl], body=body) * 2,
        "partial body": request(headers=[cl], body=body)[:-1],
        "partial head": request(headers=[cl], body=body)[:20],
        "too large": request(headers=[(b"Content-Length", b"%d" % (MAX_BODY + 1))], body=big),
        "no length": request(headers=[(b"Host", b"x")], body=b""),
        "chunked": request(headers=[(b"Transfer-Encoding", b"chunked")], body=b"2\r\n{}\r\n0\r\n\r\n"),
        "length twice": request(headers=[cl, cl], body=body),
        "close": request(headers=[cl, (b"Connection", b"close")], body=body),
        "expect": request(headers=[cl, (b"Expect", b"100-continue")], body=body),
        "upgrade": request(headers=[cl, (b"Upgrade", b"h2c")], body=body),
        "query": request(target=b"/v2/models/mlp/infer?x=1", headers=[cl], body=body),
        "percent": request(target=b"/v2/models/m%20x/infer", headers=[cl], body=body),
        "HTTP/1.0": request(headers=[cl], body=body).replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        "GET": b"GET" + request(headers=[cl], body=body)[4:],
        "bare LF": request(headers=[cl], body=body).replace(b"\r\n", b"\n"),
        "space before colon": request(headers=[(b"Content-Length ", b"2")], body=body),
        "folded": request(headers=[cl, (b"X-A", b"a\r\n b")], body=body),
        "high byte": request(headers=[cl, (b"X-A", b"caf\xc3\xa9")], body=body),
        "signed length": request(headers=[(b"Content-Length", b"+2")], body=body),
    }
    for name, data in declined.items():
        assert parse_request(data, MAX_BODY) is None, name


def test_header_values_are_kept_as_uvicorn_keeps_them():
    data = request(headers=[(b"Content-Length", b"  2 \t"), (b"X-Mixed-CASE", b"\t Value  ")], body=b"{}")
    target, headers, body = parse_request(data, MAX_BODY)
    assert headers == {b"content-length": b"2", b"x-mixed-case": b"Value"}
    check(data)


# -- never different from httptools ------------------------------------------------------

# Mostly the pieces of a request it takes, so that many are taken whole and compared; the
# rest, and any bytes at all, check that it declines what it should.
_printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12).map(str.encode)
_names = st.one_of(
    st.sampled_from([b"Host", b"Content-Type", b"Content-Length", b"content-length", b"Connection",
                     b"Transfer-Encoding", b"Expect", b"Upgrade", b"Content-Encoding", b"X-Request-Id",
                     b"Inference-Header-Content-Length", b"Accept-Encoding"]),
    st.text("abcXYZ-_.!#$%&'*+^`|~09", min_size=1, max_size=8).map(str.encode),
    st.binary(min_size=0, max_size=12),
)  # fmt: skip
_values = st.one_of(
    st.sampled_from([b"keep-alive", b"close", b"Keep-Alive", b"chunked", b"100-continue", b"12", b"0", b"2",
                     b" 2 ", b"02", b"-1", b"application/json", b"gzip", b"identity", b""]),
    _printable,
    _printable.map(lambda v: b" \t" + v + b"\t "),
    st.binary(max_size=16),
)  # fmt: skip
_targets = st.one_of(
    st.sampled_from([b"/v2/models/mlp/infer", b"/v2/models/mlp/versions/1/infer", b"/", b"//x", b"/a?b",
                     b"/a%2F", b"/a#b", b"/a b", b"*", b"http://h/x"]),
    _printable.map(lambda b: b"/" + b),
    st.binary(max_size=10).map(lambda b: b"/" + b),
)  # fmt: skip


@st.composite
def requests_(draw: st.DrawFn) -> bytes:
    body = draw(st.binary(max_size=40))
    plain = st.tuples(st.text("abcXYZ-_.!#$%&'*+^`|~09", min_size=1, max_size=8).map(str.encode), _printable)
    headers = draw(st.lists(st.one_of(plain, plain, plain, st.tuples(_names, _values)), max_size=6))
    if draw(st.sampled_from([True] * 4 + [False])):
        length = len(body) + draw(st.sampled_from([0, 0, 0, 0, 0, -1, 1]))
        headers.insert(draw(st.integers(0, len(headers))), (b"Content-Length", b"%d" % length))
    sep = draw(st.sampled_from([b": ", b": ", b":", b" : ", b":\t"]))
    eol = draw(st.sampled_from([b"\r\n"] * 6 + [b"\n"]))
    method = draw(st.sampled_from([b"POST"] * 6 + [b"GET", b"post", b"PUT"]))
    version = draw(st.sampled_from([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 "]))
    head = b"".join(n + sep + v + eol for n, v in headers)
    data = method + b" " + draw(_targets) + b" " + version + eol + head + eol + body
    return data + draw(st.sampled_from([b""] * 6 + [b"x", b"POST / HTTP/1.1\r\n"]))


@settings(SETTINGS, max_examples=2000)
@given(requests_())
@example(request())
def test_never_reads_what_httptools_reads_otherwise(data):
    check(data)


@SETTINGS
@given(st.data())
def test_mutated_requests_agree_with_httptools(data):
    headers = [(b"Host", b"h"), (b"Connection", b"keep-alive"), (b"Content-Length", b"13"),
               (b"Content-Type", b"application/json")]  # fmt: skip
    check(mutate(data, request(headers=headers), st.integers(0, 255)))
