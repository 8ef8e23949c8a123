"""Reading deploy/docker/'s Dockerfiles in tests, with the reader of check_install.py."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import Any

from tests.integration.serving import REPO_ROOT

DOCKER = REPO_ROOT / "deploy" / "docker"


def check_install() -> ModuleType:
    """deploy/docker/check_install.py, a script rather than a package, as a module."""
    name = "mlrt_deploy_check_install"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DOCKER / "check_install.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while being built
        spec.loader.exec_module(module)
    return sys.modules[name]


def stages(name: str = "Dockerfile") -> tuple[dict[str, str], list[Any]]:
    """A Dockerfile's global ARG defaults and its stages."""
    return check_install().parse_dockerfile((DOCKER / name).read_text())
