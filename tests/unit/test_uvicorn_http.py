"""uvicorn's internals that the HTTP fast path uses are all there: this fails loudly,
naming what is missing, on a uvicorn release that moved them (pyproject.toml pins the
range this was written for)."""

from __future__ import annotations

import asyncio

import uvicorn
from uvicorn.server import ServerState

from runtime.server import uvicorn_http


def test_the_installed_uvicorn_has_what_mlrt_uses() -> None:
    assert uvicorn_http.check() == [], f"uvicorn {uvicorn.__version__}"


def test_a_protocol_instance_has_the_attributes_the_direct_path_reads() -> None:
    async def app(scope, receive, send):  # pragma: no cover - never called
        pass

    config = uvicorn.Config(app, lifespan="off", log_config=None)
    config.load()
    loop = asyncio.new_event_loop()
    try:
        proto = uvicorn_http.MlrtHttpProtocol(
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
        proto.on_message_begin()  # as the parser calls it: the per-message attributes appear
        proto.on_url(b"/v2/models/m/infer")
        missing = [n for n in uvicorn_http.REQUIRED["HttpToolsProtocol instance"] if not hasattr(proto, n)]
        assert missing == [], f"uvicorn {uvicorn.__version__} protocols lack {missing}"
        assert isinstance(proto.server_state.default_headers, list)
    finally:
        loop.close()
