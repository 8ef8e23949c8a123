"""The OpenAPI 3.0 description of the HTTP API, served at `GET /openapi.json`: every route
the server answers (the Open Inference Protocol v2 ones, Triton's extensions, mlrt's own),
what each takes and the statuses it answers with. tests/integration/test_openapi.py runs
schemathesis against it: generated requests for every operation, and no server error."""

from __future__ import annotations

from typing import Any

from .. import __version__

DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES"]  # fmt: skip

_ERROR = {
    "description": "the error, said",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
        }
    },
}
_JSON = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
_JSON_LIST = {"description": "OK", "content": {"application/json": {"schema": {"type": "array"}}}}
_EMPTY = {"description": "OK"}

_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": DATATYPES},
        "parameters": {"type": "object"},
        "data": {},
    },
}
_INFER = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {"type": "array", "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}


def _param(name: str, where: str = "path") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": {"type": "string"}}


def _op(summary: str, responses: dict[str, Any], *, params: tuple[str, ...] = (), body: Any = None) -> dict:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = [_param(p) for p in params]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def openapi(dashboard_path: str | None = "/") -> dict[str, Any]:
    """The description, as a JSON-ready dict (with the dashboard's routes where it is served)."""
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": _op("the process is up", {"200": _EMPTY})},
        "/v2/health/ready": {
            "get": _op("every model is ready and the server is not stopping", {"200": _EMPTY, "503": _EMPTY})
        },
        "/v2": {"get": _op("server metadata: name, version, extensions", {"200": _JSON})},
        "/v2/models/stats": {"get": _op("Triton's statistics of every model", {"200": _JSON})},
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            )
        },
        "/openapi.json": {"get": _op("this description", {"200": _JSON})},
        "/v2/repository/index": {
            method: _op(
                "the models and their state (admin)", {"200": _JSON_LIST, "401": _ERROR, "403": _ERROR}
            )
            for method in ("get", "post")
        },
        "/v2/repository/models/{model}/load": {
            "post": _op(
                "load a model, or load its newest target again (admin)",
                {"200": _JSON, "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR},
                params=("model",),
            )
        },
        "/v2/repository/models/{model}/unload": {
            "post": _op(
                "stop serving a model (admin)",
                {"200": _EMPTY, "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR},
                params=("model",),
            )
        },
        "/v2/endpoints/{endpoint}": {
            "get": _op(
                "an endpoint's variants, weights and counts",
                {"200": _JSON, "404": _ERROR},
                params=("endpoint",),
            ),
            "put": _op(
                "set an endpoint's weights (admin)",
                {"200": _JSON, "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR},
                params=("endpoint",),
                body={"type": "object", "properties": {"weights": {"type": "object"}}},
            ),
        },  # fmt: skip
        "/v2/endpoints/{endpoint}/feedback": {
            "post": _op(
                "labels for earlier answers, by request id",
                {"200": _JSON, "400": _ERROR, "404": _ERROR},
                params=("endpoint",),
                body={"type": "array", "items": {"type": "object"}},
            )
        },
        "/v2/models/{model}/feedback": {
            "post": _op(
                "labels for a model's earlier answers, by request id",
                {"200": _JSON, "400": _ERROR, "404": _ERROR},
                params=("model",),
                body={"type": "array", "items": {"type": "object"}},
            ),
            "get": _op("a model's feedback state", {"200": _JSON, "404": _ERROR}, params=("model",)),
        },
    }
    for prefix, params in (
        ("/v2/models/{model}", ("model",)),
        ("/v2/models/{model}/versions/{version}", ("model", "version")),
    ):
        found = {"200": _JSON, "404": _ERROR, "503": _ERROR}
        paths[prefix] = {"get": _op("model metadata: versions, inputs, outputs", found, params=params)}
        paths[prefix + "/ready"] = {
            "get": _op("the model is ready", {"200": _EMPTY, "404": _ERROR, "503": _ERROR}, params=params)
        }
        paths[prefix + "/config"] = {"get": _op("Triton's model configuration", found, params=params)}
        paths[prefix + "/stats"] = {"get": _op("Triton's statistics of the model", found, params=params)}
        paths[prefix + "/drift"] = {"get": _op("drift of the current window", found, params=params)}
        paths[prefix + "/infer"] = {
            "post": _op(
                "inference (V2 JSON; the binary tensor extension and msgpack/Arrow bodies too)",
                {
                    "200": _JSON,
                    "400": _ERROR,
                    "404": _ERROR,
                    "413": _ERROR,
                    "500": _ERROR,
                    "503": _ERROR,
                    "504": _ERROR,
                },
                params=params,
                body=_INFER,
            )
        }
    if dashboard_path is not None:
        page = {"description": "OK", "content": {"text/html": {"schema": {"type": "string"}}}}
        paths[dashboard_path] = {"get": _op("the dashboard (docs/dashboard.md)", {"200": page})}
        for name, media in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            asset = {"description": "OK", "content": {media: {"schema": {"type": "string"}}}}
            paths[dashboard_path + name] = {"get": _op(f"the dashboard's {name}", {"200": asset})}
        paths[dashboard_path + "dashboard.json"] = {"get": _op("what the dashboard draws", {"200": _JSON})}
    return {
        "openapi": "3.0.3",
        "info": {"title": "mlrt", "version": __version__},
        "paths": paths,
    }
