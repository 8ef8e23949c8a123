"""A Python client for mlrt and any Open Inference Protocol (KServe V2) server.

    >>> from runtime.client import Client
    >>> with Client("http://127.0.0.1:8000") as c:             # or "unix:///run/mlrt.sock"
    ...     out = c.infer("mlp", {"input": x})                  # dict[str, np.ndarray]

`format` picks the request body: "binary" (V2 JSON header + binary tensors, what
tritonclient sends by default; works with any V2 server), "json" (plain V2 JSON),
"msgpack" and "arrow" (mlrt's own formats, docs/formats.md). Responses are parsed
by their Content-Type, so any of them is understood whatever was sent.

`Client` keeps one keep-alive connection per thread on its own lean HTTP/1.1
(`runtime/_client_http.py`); `AsyncClient` one httpx pool. Environment proxy settings are
ignored: the client talks to a server next to it. Built on `runtime.formats`;
imports neither Starlette nor onnxruntime.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson

from ._client_http import KeepAliveHTTP
from ._client_http import TransportError as FastTransportError
from ._client_msgpack import Answers, encode_inputs
from .datatypes import numpy_dtype
from .errors import InvalidInput
from .formats import (
    ARROW_CONTENT_TYPE,
    ARROW_ID,
    ARROW_OUTPUTS,
    ARROW_PARAMETERS,
    MSGPACK_CONTENT_TYPES,
    arrow_dumps,
    arrow_loads,
    as_tensor,
    column_to_tensor,
    msgpack_dumps,
    msgpack_loads,
    object_array,
    raw_tensor,
    tensor_to_column,
    tensor_to_msgpack,
    tensors_from_msgpack,
    v2_bytes_payload,
    v2_parse_bytes,
)

__all__ = [
    "FORMATS",
    "AsyncClient",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "InferenceError",
    "RequestTimeout",
]

FORMATS = ("binary", "json", "msgpack", "arrow")
_MSGPACK = MSGPACK_CONTENT_TYPES[0]
_HEADER_LENGTH = "inference-header-content-length"


class ClientError(Exception):
    """Base class of the client's errors."""


class InferenceError(ClientError):
    """The server answered with an error status (or an unreadable response).

    `status` is the HTTP status, `message` the server's `{"error": ...}` text.
    """

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"[{status}] {message}")


class ConnectionFailed(ClientError, ConnectionError):
    """The server could not be reached, or dropped the connection."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        super().__init__(f"cannot reach {url}: {detail}")


class RequestTimeout(ClientError, TimeoutError):
    """No response within the client's timeout."""

    def __init__(self, url: str, timeout_s: float | None) -> None:
        self.url = url
        super().__init__(f"no response from {url} within {timeout_s} s")


def _target(url: str) -> tuple[str, str | None]:
    """(base URL, Unix socket path or None) for `http[s]://host:port[/prefix]`, `host:port`,
    or `unix:///path/to/socket`."""
    if url.startswith("unix://"):
        path = url[len("unix://") :]
        if not path:
            raise ValueError(f"no socket path in {url!r}; use unix:///path/to/socket")
        return "http://localhost", path
    if "://" not in url:
        url = "http://" + url
    elif not url.startswith(("http://", "https://")):
        raise ValueError(f"unsupported URL {url!r}; use http://host:port or unix:///path/to/socket")
    return url.rstrip("/"), None


def _quote(name: str) -> str:
    return quote(name, safe="")


class _Protocol:
    """Request building and response parsing, shared by Client and AsyncClient."""

    def __init__(self, url: str, format: str, timeout_s: float | None, *, httpx_client: bool) -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
        self.url = url
        self.format = format
        self.timeout_s = timeout_s
        self.base_url, self.uds = _target(url)
        self._headers = {
            "binary": {"content-type": "application/octet-stream"},
            "json": {"content-type": "application/json"},
            "msgpack": {"content-type": _MSGPACK},
            "arrow": {"content-type": ARROW_CONTENT_TYPE},
        }[format]
        if httpx_client:
            # httpx asks for gzip by default, and loopback bodies are not worth compressing:
            # "identity" keeps the server from trying. The blocking client's own HTTP asks for
            # no encoding at all, and every header costs both sides a little per request.
            self._headers = {"accept-encoding": "identity", **self._headers}
        self._paths: dict[tuple[str, str | None], str] = {}
        self._msgpack_heads: dict[tuple[str, str, tuple[int, ...]], bytes] = {}
        self._msgpack_answers = Answers()

    # -- paths ------------------------------------------------------------------------------

    def model_path(self, model: str, version: str | None) -> str:
        path = f"/v2/models/{_quote(model)}"
        return path if version is None else f"{path}/versions/{_quote(version)}"

    def infer_path(self, model: str, version: str | None) -> str:
        path = self._paths.get((model, version))
        if path is None:
            path = self._paths[(model, version)] = self.model_path(model, version) + "/infer"
        return path

    # -- requests ---------------------------------------------------------------------------

    def build(
        self,
        inputs: Mapping[str, Any],
        outputs: Sequence[str] | None,
        request_id: str | None,
        timeout_us: int | None,
        parameters: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The request body and its headers."""
        if not inputs:
            raise ValueError("infer needs at least one input")
        if isinstance(outputs, str):
            raise TypeError("outputs must be a list of output names, not a str")
        params: dict[str, Any] = dict(parameters) if parameters else {}
        if timeout_us is not None:
            params["timeout"] = int(timeout_us)
        tensors = {name: as_tensor(name, value) for name, value in inputs.items()}
        if self.format == "msgpack":
            body, head = self._msgpack(tensors, outputs, request_id, params), self._headers
        elif self.format == "arrow":
            body, head = self._arrow(tensors, outputs, request_id, params), self._headers
        else:
            body, head = self._v2(tensors, outputs, request_id, params)
        if headers:
            # The caller's (a sticky key: docs/traffic.md), under the ones the body needs.
            head = {**{k.lower(): str(v) for k, v in headers.items()}, **head}
        return body, head

    def _v2(
        self,
        tensors: dict[str, tuple[np.ndarray, str]],
        outputs: Sequence[str] | None,
        request_id: str | None,
        params: dict[str, Any],
    ) -> tuple[bytes, dict[str, str]]:
        binary = self.format == "binary"
        docs: list[dict[str, Any]] = []
        blobs: list[bytes | memoryview] = []
        non_finite = False
        for name, (arr, datatype) in tensors.items():
            doc: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": datatype}
            if binary:
                blob = v2_bytes_payload(arr) if datatype == "BYTES" else memoryview(arr.reshape(-1)).cast("B")
                doc["parameters"] = {"binary_data_size": len(blob)}
                blobs.append(blob)
            elif datatype == "BYTES":
                doc["data"] = _utf8(arr, name)
            else:
                flat = arr.reshape(-1)
                if flat.dtype.kind == "f" and flat.size and not np.isfinite(flat).all():
                    non_finite = True
                doc["data"] = flat
            docs.append(doc)
        req: dict[str, Any] = {}
        if request_id is not None:
            req["id"] = request_id
        if binary and outputs is None:
            params["binary_data_output"] = True
        if params:
            req["parameters"] = params
        req["inputs"] = docs
        if outputs is not None:
            req["outputs"] = [
                {"name": n, "parameters": {"binary_data": True}} if binary else {"name": n} for n in outputs
            ]
        if non_finite:
            # orjson writes NaN and Infinity as null; Python's json spells them out, as V2 servers read.
            for doc in docs:
                if isinstance(doc.get("data"), np.ndarray):
                    doc["data"] = doc["data"].tolist()
            header = json.dumps(req, separators=(",", ":")).encode()
        else:
            header = orjson.dumps(req, option=orjson.OPT_SERIALIZE_NUMPY)
        if not binary:
            return header, self._headers
        headers = {**self._headers, "inference-header-content-length": str(len(header))}
        return b"".join([header, *blobs]), headers

    def _msgpack(
        self,
        tensors: dict[str, tuple[np.ndarray, str]],
        outputs: Sequence[str] | None,
        request_id: str | None,
        params: dict[str, Any],
    ) -> bytes:
        if outputs is None and request_id is None and not params:
            body = encode_inputs(tensors, self._msgpack_heads)
            if body is not None:
                return body
        req: dict[str, Any] = {}
        if request_id is not None:
            req["id"] = request_id
        if params:
            req["parameters"] = params
        req["inputs"] = {name: tensor_to_msgpack(arr, dt) for name, (arr, dt) in tensors.items()}
        if outputs is not None:
            req["outputs"] = list(outputs)
        return msgpack_dumps(req)

    def _arrow(
        self,
        tensors: dict[str, tuple[np.ndarray, str]],
        outputs: Sequence[str] | None,
        request_id: str | None,
        params: dict[str, Any],
    ) -> bytes:
        metadata: dict[bytes, bytes] = {}
        if request_id is not None:
            metadata[ARROW_ID] = request_id.encode()
        if outputs is not None:
            metadata[ARROW_OUTPUTS] = json.dumps(list(outputs)).encode()
        if params:
            metadata[ARROW_PARAMETERS] = json.dumps(params).encode()
        try:
            columns = {name: tensor_to_column(name, arr, dt) for name, (arr, dt) in tensors.items()}
            return arrow_dumps(columns, metadata)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None

    # -- responses --------------------------------------------------------------------------

    def check(self, response: httpx.Response) -> None:
        """Raise InferenceError for an error status, with the server's message."""
        if response.status_code < 400:
            return
        message = response.reason_phrase or "error"
        try:
            doc = orjson.loads(response.content)
            if isinstance(doc, dict) and isinstance(doc.get("error"), str):
                message = doc["error"]
        except orjson.JSONDecodeError:
            if response.content:
                message = response.content.decode("utf-8", errors="replace")
        raise InferenceError(response.status_code, message)

    def parse(self, response: httpx.Response) -> dict[str, np.ndarray]:
        self.check(response)
        content_type = response.headers.get("content-type") or ""
        if content_type != _MSGPACK:  # as mlrt's server spells it: no need to normalize
            content_type = content_type.split(";")[0].strip().lower()
        body = response.content
        try:
            if content_type in MSGPACK_CONTENT_TYPES:
                outputs = self._msgpack_answers.decode(body)
                if outputs is None:
                    doc = msgpack_loads(body, "response")
                    outputs = tensors_from_msgpack(doc.get("outputs"), "outputs")[0]
                    self._msgpack_answers.learn(body, doc)
                return outputs
            if content_type == ARROW_CONTENT_TYPE:
                batch, _ = arrow_loads(body, "response")
                return {
                    name: column_to_tensor(f"column '{name}'", column)[0]
                    for name, column in zip(batch.schema.names, batch.columns, strict=True)
                }
            return _parse_v2(body, response.headers.get(_HEADER_LENGTH))
        except (InvalidInput, KeyError, TypeError, ValueError) as exc:
            raise InferenceError(response.status_code, f"malformed response from the server: {exc}") from None

    def parse_json(self, response: httpx.Response) -> Any:
        self.check(response)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise InferenceError(response.status_code, f"malformed JSON from the server: {exc}") from None

    def transport_error(self, exc: httpx.TransportError) -> ClientError:
        if isinstance(exc, httpx.TimeoutException):
            return RequestTimeout(self.url, self.timeout_s)
        return ConnectionFailed(self.url, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


def _utf8(arr: np.ndarray, name: str) -> list[str]:
    try:
        return [None if v is None else v.decode("utf-8") for v in arr.reshape(-1).tolist()]
    except UnicodeDecodeError:
        raise ValueError(
            f"input '{name}' holds bytes that are not UTF-8, which JSON cannot carry; use format='binary'"
        ) from None


def _loads(data: bytes | memoryview) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        # Non-finite floats come spelled as NaN/Infinity, which only the standard library reads.
        return json.loads(bytes(data))


def _parse_v2(body: bytes, header_length: str | None) -> dict[str, np.ndarray]:
    view = memoryview(body)
    if header_length is None:
        doc, rest = _loads(view), view[0:0]
    else:
        n = int(header_length)
        doc, rest = _loads(view[:n]), view[n:]
    result: dict[str, np.ndarray] = {}
    pos = 0
    for out in doc["outputs"]:
        name, datatype = out["name"], out["datatype"]
        shape = tuple(out["shape"])
        where = f"output '{name}'"
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            blob = rest[pos : pos + size]
            pos += size
            if datatype == "BYTES":
                items = v2_parse_bytes(blob, where)
                if len(items) != math.prod(shape):
                    raise InvalidInput(f"{where}: {len(items)} BYTES elements for shape {list(shape)}")
                result[name] = object_array(items, shape)
            else:
                result[name] = raw_tensor(where, datatype, shape, blob)
        elif datatype == "BYTES":
            result[name] = object_array([s.encode("utf-8") for s in out["data"]], shape)
        else:
            result[name] = np.array(out["data"], dtype=numpy_dtype(datatype)).reshape(shape)
    return result


class Client:
    """A blocking client; one keep-alive connection pool, reused by every call.

    `timeout_s` bounds each HTTP call (None: no limit). While it waits for an answer the
    calling thread sleeps, using no CPU. `busy_poll_us` (default 0: never) makes it poll
    for the answer that long first, trading a busy CPU for tens of µs on virtual machines;
    see docs/formats.md. `transport` replaces the network, as httpx's `MockTransport`
    does in tests. One Client may be shared by threads; close it once they are done.
    """

    def __init__(
        self,
        url: str,
        *,
        format: str = "binary",
        timeout_s: float | None = 30.0,
        busy_poll_us: float = 0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._p = _Protocol(url, format, timeout_s, httpx_client=transport is not None)
        self._http: httpx.Client | None = None
        self._fast: KeepAliveHTTP | None = None
        if transport is not None:
            if busy_poll_us:
                raise ValueError("busy_poll_us needs the client's own connection, not a transport")
            self._http = httpx.Client(
                base_url=self._p.base_url, transport=transport, timeout=timeout_s, trust_env=False
            )
        else:
            self._fast = KeepAliveHTTP(self._p.base_url, self._p.uds, timeout_s, busy_poll_us)

    @property
    def url(self) -> str:
        return self._p.url

    @property
    def format(self) -> str:
        return self._p.format

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._fast is not None:
            try:
                return self._fast.request(method, path, **kwargs)
            except FastTransportError as exc:
                if exc.timeout:
                    raise RequestTimeout(self._p.url, self._p.timeout_s) from exc
                raise ConnectionFailed(self._p.url, str(exc)) from exc
        assert self._http is not None
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._p.transport_error(exc) from exc

    def infer(
        self,
        model: str,
        inputs: Mapping[str, Any],
        outputs: Sequence[str] | None = None,
        *,
        version: str | None = None,
        request_id: str | None = None,
        timeout_us: int | None = None,
        parameters: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run `model` on `inputs` (name -> array); returns the outputs by name.

        `outputs` limits and orders what comes back (default: all). `timeout_us` is the
        server-side deadline (V2 parameter `timeout`). `parameters` are the request's V2
        parameters and `headers` extra HTTP headers: an endpoint's sticky key goes in one or
        the other (docs/traffic.md). `request_id` is echoed in the answer and is the id that
        ground-truth labels are joined by: give each request its own. BYTES outputs are object
        arrays of bytes. Raises InferenceError with the server's status and message.
        """
        body, headers = self._p.build(inputs, outputs, request_id, timeout_us, parameters, headers)
        response = self._request("POST", self._p.infer_path(model, version), content=body, headers=headers)
        return self._p.parse(response)

    def is_live(self) -> bool:
        return self._request("GET", "/v2/health/live").status_code == 200

    def is_ready(self) -> bool:
        return self._request("GET", "/v2/health/ready").status_code == 200

    def is_model_ready(self, model: str, version: str | None = None) -> bool:
        return self._request("GET", self._p.model_path(model, version) + "/ready").status_code == 200

    def server_metadata(self) -> dict[str, Any]:
        return self._p.parse_json(self._request("GET", "/v2"))  # type: ignore[no-any-return]

    def model_metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        return self._p.parse_json(self._request("GET", self._p.model_path(model, version)))  # type: ignore[no-any-return]

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient:
    """The asyncio twin of `Client`: the same methods, as coroutines.

    Each method mirrors Client's and differs only by `await`: a line or two around the
    shared _Protocol, which holds everything else. They stay spelled out, signatures and
    all (a clone detector pairs the two classes), so help() and type checkers see them.
    """

    def __init__(
        self,
        url: str,
        *,
        format: str = "binary",
        timeout_s: float | None = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._p = _Protocol(url, format, timeout_s, httpx_client=True)
        if transport is None and self._p.uds:
            transport = httpx.AsyncHTTPTransport(uds=self._p.uds)
        self._http = httpx.AsyncClient(
            base_url=self._p.base_url, transport=transport, timeout=timeout_s, trust_env=False
        )

    @property
    def url(self) -> str:
        return self._p.url

    @property
    def format(self) -> str:
        return self._p.format

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._p.transport_error(exc) from exc

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, Any],
        outputs: Sequence[str] | None = None,
        *,
        version: str | None = None,
        request_id: str | None = None,
        timeout_us: int | None = None,
        parameters: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, np.ndarray]:
        """See `Client.infer`."""
        body, headers = self._p.build(inputs, outputs, request_id, timeout_us, parameters, headers)
        response = await self._request(
            "POST", self._p.infer_path(model, version), content=body, headers=headers
        )
        return self._p.parse(response)

    async def is_live(self) -> bool:
        return (await self._request("GET", "/v2/health/live")).status_code == 200

    async def is_ready(self) -> bool:
        return (await self._request("GET", "/v2/health/ready")).status_code == 200

    async def is_model_ready(self, model: str, version: str | None = None) -> bool:
        return (await self._request("GET", self._p.model_path(model, version) + "/ready")).status_code == 200

    async def server_metadata(self) -> dict[str, Any]:
        return self._p.parse_json(await self._request("GET", "/v2"))  # type: ignore[no-any-return]

    async def model_metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        return self._p.parse_json(await self._request("GET", self._p.model_path(model, version)))  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
