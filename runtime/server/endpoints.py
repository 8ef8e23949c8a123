"""The endpoint API (runtime/traffic): read an endpoint's variants, weights and counts,
and change its weights at run time.

    GET /v2/endpoints/{endpoint}
    PUT /v2/endpoints/{endpoint}   {"weights": {"churn-v1": 50, "churn-v2": 50}}
    POST /v2/endpoints/{endpoint}/feedback   [{"id": "<request id>", "label": 1}, ...]
    POST /v2/models/{model}/feedback         the same for a model called by its own name
    GET  /v2/models/{model}/feedback         that model's log and quality

PUT needs the admin token when one is configured, as the repository routes do; a
change takes effect with the next request and is logged.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ConfigError, InvalidInput
from ..traffic import Endpoint
from .admin import authorized, denied, fan_out
from .codec import loads_json
from .http import error_response

log = logging.getLogger("mlrt.traffic")


def _endpoint(request: Request) -> Endpoint | Response:
    router = request.app.state.router
    if "model" in request.path_params:
        name = request.path_params["model"]
        recorder = router.recorders.get(name)
        if recorder is None:
            # A served model that records nothing is a 400 (what to add), an unknown one a 404.
            served = name in request.app.state.repository.models
            if served:
                raise InvalidInput(
                    f"model '{name}' takes no feedback: add feedback = {{ window = 1000 }} to its [[models]] "
                    "table (or call it through an endpoint that has feedback)"
                )
            return error_response(404, f"no model '{name}'")
        return recorder  # type: ignore[no-any-return]
    name = request.path_params["endpoint"]
    endpoint = router.get(name)
    if endpoint is None:
        known = sorted(router.endpoints)
        return error_response(404, f"no endpoint '{name}'; endpoints: {known}")
    return endpoint  # type: ignore[no-any-return]


async def show(request: Request) -> Response:
    """An endpoint's variants, weights, shadows, log and quality; for a model, its log and
    quality."""
    endpoint = _endpoint(request)
    if isinstance(endpoint, Response):
        return endpoint
    doc = endpoint.to_json()
    if endpoint.own:
        doc = {"model": endpoint.name, "log": doc["log"], "feedback": doc["feedback"]}
    return Response(orjson.dumps(doc), media_type="application/json")


async def set_weights(request: Request) -> Response:
    if not authorized(request):
        return denied(request)
    endpoint = _endpoint(request)
    if isinstance(endpoint, Response):
        return endpoint
    doc = loads_json(await request.body(), "request")
    weights = doc.get("weights") if isinstance(doc, dict) else None
    if not isinstance(weights, dict) or not weights:
        raise InvalidInput('the body must be {"weights": {"<variant model>": <weight>, ...}}')
    try:
        endpoint.set_weights(weights)
    except ConfigError as exc:
        raise InvalidInput(str(exc)) from None
    log.info("endpoint %s: weights now %s", endpoint.name, {v.model: v.weight for v in endpoint.variants})
    await fan_out(request)
    return Response(orjson.dumps(endpoint.to_json()), media_type="application/json")


# Labels joined per slice before the event loop gets a turn: a call with 100,000 labels
# must not hold it for long.
_FEEDBACK_SLICE = 256


async def feedback(request: Request) -> Response:
    """Labels for earlier answers, joined by request id (runtime/traffic/feedback.py).
    200 with the count accepted and one error per refused item: a bad item never costs
    the others."""
    endpoint = _endpoint(request)
    if isinstance(endpoint, Response):
        return endpoint
    if endpoint.feedback is None and endpoint.own:
        raise InvalidInput(
            f"model '{endpoint.name}' takes no feedback, only a log: add "
            "feedback = { window = 1000 } to its [[models]] table"
        )
    if endpoint.feedback is None:
        raise InvalidInput(
            f"endpoint '{endpoint.name}' takes no feedback: add feedback = {{ window = 1000 }} to its "
            "[[endpoints]] settings"
        )
    doc = loads_json(await request.body(), "request")
    if not isinstance(doc, list):
        raise InvalidInput('the body must be a list: [{"id": "<request id>", "label": <label>}, ...]')
    accepted, errors = 0, []
    for start in range(0, len(doc), _FEEDBACK_SLICE):
        if start:
            await asyncio.sleep(0)
        n, errs = endpoint.feedback.label(doc[start : start + _FEEDBACK_SLICE], first=start)
        accepted += n
        errors += errs
    body = {"accepted": accepted, "refused": len(errors), "errors": errors}
    return Response(orjson.dumps(body), media_type="application/json")
