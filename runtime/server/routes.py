"""Open Inference Protocol v2 REST routes other than infer (runtime/server/infer.py),
plus Triton's model configuration."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..errors import InvalidInput, ModelNotFound
from ..repository import LoadedModel, Repository
from .http import json_answer, response

EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics", "model_repository"]

_TRITON_TYPES = {"BYTES": "TYPE_STRING"}


def _json(doc: Any, status: int = 200) -> Response:
    return response(json_answer(doc, status))


def _repo(request: Request) -> Repository:
    return request.app.state.repository  # type: ignore[no-any-return]


def _entry(request: Request) -> LoadedModel:
    p = request.path_params
    return _repo(request).get(p["model"], p.get("version"))


async def openapi_json(request: Request) -> Response:
    from .openapi import openapi

    return _json(openapi(request.app.state.config.dashboard_path))


async def live(request: Request) -> Response:
    return Response(status_code=200)


async def ready(request: Request) -> Response:
    ok = _repo(request).ready and not request.app.state.shutting_down
    return Response(status_code=200 if ok else 503)


async def server_metadata(request: Request) -> Response:
    return _json({"name": "mlrt", "version": __version__, "extensions": EXTENSIONS})


def _described(request: Request) -> tuple[LoadedModel, bool]:
    p = request.path_params
    return request.app.state.pipeline.describe(p["model"], p.get("version"))  # type: ignore[no-any-return]


def metadata(repository: Repository, entry: LoadedModel, endpoint: str | None = None) -> dict[str, Any]:
    """A model's V2 metadata, the same over HTTP and gRPC; for an endpoint (Pipeline.describe),
    its variant's signature under the endpoint's name, with no versions (it takes none)."""
    m = entry.model
    return {
        "name": endpoint or m.name,
        "versions": [] if endpoint else list(repository.models[m.name]),
        "platform": m.platform,
        "inputs": [s.to_dict() for s in m.inputs],
        "outputs": [s.to_dict() for s in m.outputs],
    }


async def model_metadata(request: Request) -> Response:
    entry, is_endpoint = _described(request)
    return _json(metadata(_repo(request), entry, request.path_params["model"] if is_endpoint else None))


async def model_ready(request: Request) -> Response:
    _described(request)  # 404 for unknown, 503 for not ready
    return Response(status_code=200)


def _triton_tensor(spec: Any, batched: bool) -> dict[str, Any]:
    dims = list(spec.shape[1:] if batched else spec.shape)
    return {
        "name": spec.name,
        "data_type": _TRITON_TYPES.get(spec.datatype, f"TYPE_{spec.datatype}"),
        "dims": dims,
    }


async def model_config(request: Request) -> Response:
    # An endpoint is called like a model, so tritonclient's get_model_config works on it
    # too: its variant's configuration (as its metadata, Pipeline.describe), under its name.
    entry, is_endpoint = _described(request)
    m = entry.model
    batched = entry.batchable
    doc: dict[str, Any] = {
        "name": request.path_params["model"] if is_endpoint else m.name,
        "platform": m.platform,
        "backend": "onnxruntime" if m.platform.startswith("onnx") else "python",
        "version_policy": (
            {"latest": {"num_versions": 1}} if is_endpoint else {"specific": {"versions": [m.version]}}
        ),
        "max_batch_size": entry.config.max_batch_size if batched else 0,
        "input": [_triton_tensor(s, batched) for s in m.inputs],
        "output": [_triton_tensor(s, batched) for s in m.outputs],
        "instance_group": [{"count": entry.config.instances, "kind": "KIND_CPU"}],
    }
    if batched:
        doc["dynamic_batching"] = {}
    return _json(doc)


async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    state = request.app.state
    if state.peers is not None:  # one of several workers: the whole server's figures
        from .merged import metrics_text

        return Response(await metrics_text(state.repository, state.peers), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(_repo(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def peer_snapshot(request: Request) -> Response:
    """This worker's figures, for the other workers of the server (runtime/server/peers.py)."""
    peers = request.app.state.peers
    if peers is None or not peers.is_peer(request.headers):
        return Response(status_code=404)
    from .merged import snapshot_bytes

    return Response(snapshot_bytes(_repo(request), peers), media_type="application/msgpack")


async def model_stats(request: Request) -> Response:
    """Triton's statistics extension: all models, one model, or one version."""
    repo = _repo(request)
    p = request.path_params
    endpoint = request.app.state.router.get(p["model"]) if "model" in p else None
    if endpoint is not None:
        # An endpoint is called like a model: its statistics are its variants', each under
        # the variant's own name (their counts are the requests the endpoint sent them).
        if "version" in p:
            raise InvalidInput(f"'{p['model']}' is an endpoint: ask without a version, or ask a variant")
        entries = [e for v in endpoint.variants for e in repo.models.get(v.model, {}).values()]
    elif "model" in p:
        versions = repo.models.get(p["model"])
        if not versions:
            raise ModelNotFound(p["model"], served=repo.models, endpoints=repo.endpoint_names)
        if "version" in p:
            if p["version"] not in versions:
                raise ModelNotFound(p["model"], p["version"], served=versions)
            entries = [versions[p["version"]]]
        else:
            entries = list(versions.values())
    else:
        entries = repo.entries()
    return _json({"model_stats": [e.metrics.triton_stats() for e in entries]})


async def model_drift(request: Request) -> Response:
    """Drift of the model's inputs and outputs over the current window."""
    endpoint = request.app.state.router.get(request.path_params["model"])
    if endpoint is not None:
        # Each variant sees its own share of the traffic and keeps its own window: there is
        # no one drift report of the endpoint to give, so say where each variant's is.
        where = ", ".join(f"/v2/models/{v.model}/drift" for v in endpoint.variants)
        raise ModelNotFound(
            endpoint.name,
            message=f"'{endpoint.name}' is an endpoint; each of its variants keeps its own drift "
            f"report: {where}",
        )
    entry = _entry(request)
    if entry.monitor is None:
        raise ModelNotFound.no_drift(entry.model.name)
    monitor: Any = entry.monitor
    if request.app.state.peers is not None:  # the drift of every worker's traffic
        from .merged import gather, summed

        monitor = summed(entry, await gather(_repo(request), request.app.state.peers))
    loop = asyncio.get_running_loop()
    # A report walks every feature's bins: keep it off the event loop.
    doc = await loop.run_in_executor(None, monitor.to_json)
    return _json(doc)
