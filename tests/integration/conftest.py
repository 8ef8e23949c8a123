"""Session fixtures: a real mlrt server in a subprocess on 127.0.0.1, serving ONNX
models built by bench.models and in-process Python models from pymodels.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench import models as bench_models
from tests.integration.serving import PYMODELS, Server, start_server, stop_server


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models")
    bench_models.mlp(path / "mlp.onnx")
    bench_models.two_io(path / "two_io.onnx")
    bench_models.strings(path / "strings.onnx")
    return path


@pytest.fixture(scope="session")
def server(model_dir: Path) -> Iterator[Server]:
    srv = start_server(
        [
            f"mlp={model_dir / 'mlp.onnx'}",
            f"two_io={model_dir / 'two_io.onnx'}",
            f"strings={model_dir / 'strings.onnx'}",
            f"iris={PYMODELS}:iris",
            f"picky={PYMODELS}:picky",
        ],
        model_dir,
    )
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def small_server(model_dir: Path) -> Iterator[Server]:
    """A server whose request bodies may not exceed 1000 bytes."""
    srv = start_server([f"mlp={model_dir / 'mlp.onnx'}"], model_dir, ["--max-body-bytes", "1000"])
    yield srv
    stop_server(srv)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client
