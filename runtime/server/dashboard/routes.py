"""The dashboard's routes: the page and its two assets (files of `static/`, read once), and
`dashboard.json`, everything the page draws, built at each poll. All under the configured
`dashboard_path` (default `/`), and all relative to it, so the page also works behind a
proxy that serves it under a prefix. Read-only: nothing here changes what is served.

The JSON carries counters, not rates: the page keeps the last minutes of polls and draws
throughput, latency percentiles, errors and refusals from the differences between them, so
the server keeps no history and a poll costs what reading the counters costs (plus each
monitored model's drift report, built off the event loop)."""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ... import __version__
from ...repository import LoadedModel

ASSETS = {
    "": ("index.html", "text/html; charset=utf-8"),
    "dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
_STARTED = time.time()


def _asset(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def _source(entry: LoadedModel) -> str:
    origin = entry.origin
    if origin is not None and origin.registry_ref is not None:
        return origin.registry_ref
    source = entry.config.source
    # A file's name, not where it lies on the server's disk.
    return source.rsplit("/", 1)[-1] if source.endswith(".onnx") else source


def _model(entry: LoadedModel) -> dict[str, Any]:
    m, mm = entry.model, entry.metrics
    return {
        "name": m.name,
        "version": m.version,
        "platform": m.platform,
        "source": _source(entry),
        "ready": entry.ready and entry.batcher.healthy,
        "monitored": entry.monitor is not None,
        "queue_rows": entry.batcher.queued_rows,
        "stuck_calls": entry.batcher.stuck_calls,
        "requests": {str(code): n for code, n in sorted(mm.codes.items())},
        "rejected": dict(mm.reasons),
        "latency": {"bounds": list(mm.request.bounds), "counts": list(mm.request.counts)},
    }


def _drift(monitors: list[Any]) -> list[dict[str, Any]]:
    return [m.to_json() for m in monitors]


def document(request: Request) -> dict[str, Any]:
    """Everything but drift (which the caller builds off the loop)."""
    state = request.app.state
    repo, router = state.repository, state.router
    endpoints = []
    for e in router.endpoints.values():
        doc = e.to_json()
        endpoints.append({k: doc[k] for k in ("name", "sticky", "variants", "shadows", "rollbacks")})
    lag = getattr(repo.metrics, "loop_lag", None)
    return {
        "time": time.time(),
        "started": _STARTED,
        "version": __version__,
        "ready": repo.ready and not state.shutting_down,
        "models": [_model(e) for e in repo.entries()],
        "endpoints": endpoints,
        "events": state.events.recent(),
        "loop_stall_s": lag.longest_stall() if lag is not None else None,
    }


def _whole_server(models: list[dict[str, Any]], families: list[Any]) -> None:
    """A server of several workers: each model's counters are all the workers' (the merged
    /metrics families), not those of the worker that answered this poll."""
    by_key: dict[tuple[str, str], dict[str, Any]] = {(m["name"], m["version"]): m for m in models}
    for m in models:
        m.update(requests={}, rejected={}, queue_rows=0, stuck_calls=0)
        m["latency"]["counts"] = [0] * len(m["latency"]["counts"])
    for family in families:
        for s in family.samples:
            m = by_key.get((s.labels.get("model"), s.labels.get("version")))  # type: ignore[arg-type]
            if m is None:
                continue
            if s.name == "mlrt_requests_total":
                m["requests"][s.labels["code"]] = int(s.value)
            elif s.name == "mlrt_rejected_total":
                m["rejected"][s.labels["reason"]] = int(s.value)
            elif s.name == "mlrt_queue_depth":
                m["queue_rows"] = int(s.value)
            elif s.name == "mlrt_stuck_calls":
                m["stuck_calls"] = int(s.value)
            elif s.name == "mlrt_request_duration_seconds_bucket":
                bounds = m["latency"]["bounds"]
                le = float(s.labels["le"])
                i = len(bounds) if le == float("inf") else bounds.index(le)
                m["latency"]["counts"][i] = int(s.value)  # cumulative for now
    for m in models:
        c = m["latency"]["counts"]
        m["latency"]["counts"] = [c[0], *(b - a for a, b in zip(c, c[1:], strict=False))]


async def dashboard_json(request: Request) -> Response:
    doc = document(request)
    state = request.app.state
    entries = state.repository.entries()
    monitors: list[Any] = [e.monitor for e in entries if e.monitor is not None]
    if state.peers is not None:
        from ..merged import gather, merge_families, summed

        snaps = await gather(state.repository, state.peers)
        _whole_server(doc["models"], merge_families(snaps))
        monitors = [summed(e, snaps) for e in entries if e.monitor is not None]
    # Reports walk every feature's bins: off the event loop, as GET .../drift does.
    doc["drift"] = await asyncio.get_running_loop().run_in_executor(None, _drift, monitors)
    return Response(orjson.dumps(doc), media_type="application/json", headers={"cache-control": "no-store"})


def routes(path: str) -> list[Route]:
    """The dashboard's routes under `path` (which ends in '/')."""
    out = [Route(path + "dashboard.json", dashboard_json, methods=["GET"])]
    for name, (file, media_type) in ASSETS.items():
        body = _asset(file)

        async def serve(request: Request, body: bytes = body, media_type: str = media_type) -> Response:
            return Response(body, media_type=media_type, headers={"cache-control": "no-cache"})

        out.append(Route(path + name, serve, methods=["GET"]))
    return out
