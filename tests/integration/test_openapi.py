"""schemathesis against the OpenAPI description the server serves (`/openapi.json`): for every
operation, generated requests (valid and not) get no server error, answer only with statuses
the description lists, and in the content types it lists. A real server on loopback, with ONNX
and Python models, an endpoint with feedback, and a registry."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    status_code_conformance,
)

from bench import models as bench_models  # noqa: E402
from tests.integration.serving import PYMODELS, Server, start_server, stop_server  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("openapi")
    mlp = bench_models.mlp(tmp / "mlp.onnx")
    config = tmp / "mlrt.toml"
    config.write_text(
        f"""
[[models]]
name = "mlp"
source = "{mlp}"

[[models]]
name = "iris"
source = "{PYMODELS}:iris"

[[models]]
name = "cancer"
source = "{PYMODELS}:cancer_a"
log = {{ dir = "{tmp / "log"}" }}
feedback = {{ window = 100 }}
"""
    )
    srv = start_server([], tmp, ["--config", str(config), "--registry", str(tmp / "registry")])
    yield srv
    stop_server(srv)


def test_no_operation_answers_with_a_server_error(api: Server) -> None:
    # schemathesis's pytest integration (from_fixture) does not run on pytest 9: each
    # operation's strategy is driven by hypothesis here instead, all failures gathered.
    from hypothesis import given

    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    checks = [not_a_server_error, status_code_conformance, content_type_conformance]
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    doc = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
    described = {f"{m.upper()} {path}" for path, ops in doc["paths"].items() for m in ops}
    # schemathesis leaves out the operation that serves the description it was loaded from.
    assert {op.label for op in operations} == described - {"GET /openapi.json"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(base_url=api.url, checks=checks)

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - every operation's failure is gathered
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
    assert httpx.get(f"{api.url}/v2/health/ready", timeout=10).status_code in (200, 503)


def test_the_description_covers_every_route(api: Server) -> None:
    from starlette.routing import Route

    from runtime.server.app import _model_routes

    doc = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
    described = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    routes = {(r.path, m) for r in _model_routes() if isinstance(r, Route) for m in r.methods or ()}
    routes |= {("/v2/models/{model}/infer", "POST"), ("/v2/models/{model}/versions/{version}/infer", "POST")}
    assert {r for r in routes if r[1] != "HEAD"} <= described
    # The other routes of the app: health, metadata, metrics, admin, traffic, the dashboard.
    others = {
        "/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/stats", "/metrics", "/openapi.json",
        "/v2/repository/index", "/v2/repository/models/{model}/load", "/v2/repository/models/{model}/unload",
        "/v2/endpoints/{endpoint}", "/v2/endpoints/{endpoint}/feedback", "/v2/models/{model}/feedback",
        "/", "/dashboard.js", "/dashboard.css", "/dashboard.json",
    }  # fmt: skip
    assert {path for path, _ in described} == {path for path, _ in routes} | others
