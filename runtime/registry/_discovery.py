"""Find the adapter for a registry URI or path.

Built-in adapters resolve through one table of import paths, so an adapter's SDK loads only when it is
used; any other scheme names an entry point in the group ``mlrt.registries``. The entry point loads to a
callable that takes the URI string and returns a Registry (a class with a ``from_uri`` classmethod works).
A scheme ``base+transport`` (``mlflow+http://host:5000``) picks the adapter for ``base``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .base import Registry
from .errors import RegistryError, UnknownRegistryScheme

ENTRY_POINT_GROUP = "mlrt.registries"

BUILTIN_REGISTRIES: Mapping[str, str] = {
    "file": "runtime.registry.filesystem:FilesystemRegistry",
    "mlflow": "runtime.registry.mlflow:MlflowRegistry",
    "models": "runtime.registry.mlflow:MlflowRegistry",
}


def scheme_of(uri: str) -> str:
    """The adapter key of a URI: "" for a plain path (including ``C:\\dir``), else the scheme before ``+``."""
    scheme = urlsplit(uri).scheme
    if len(scheme) <= 1:  # no scheme, or a Windows drive letter
        return "file"
    return scheme.lower().partition("+")[0]


def get_registry(uri_or_path: str) -> Registry:
    """The registry at ``uri_or_path``.

    >>> get_registry("/srv/models")                      # doctest: +SKIP
    FilesystemRegistry('/srv/models')

    A plain path or ``file://`` is the filesystem registry; ``models:/...``, ``mlflow://`` and
    ``mlflow+<tracking-uri>`` the MLflow adapter; other schemes come from ``mlrt.registries`` entry points.
    """
    uri = str(uri_or_path)
    if not uri:
        raise RegistryError("no registry given: pass --registry DIR or set MLRT_REGISTRY")
    scheme = scheme_of(uri)
    if scheme in BUILTIN_REGISTRIES:
        module_name, _, attr = BUILTIN_REGISTRIES[scheme].partition(":")
        return _build(getattr(importlib.import_module(module_name), attr), uri, BUILTIN_REGISTRIES[scheme])
    found = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == scheme]
    if not found:
        raise UnknownRegistryScheme(scheme, known_schemes())
    ep = found[0]
    try:
        factory = ep.load()
    except Exception as exc:
        raise RegistryError(
            f"cannot load registry entry point {ep.value!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return _build(factory, uri, ep.value)


def known_schemes() -> list[str]:
    third_party = {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(set(BUILTIN_REGISTRIES) | third_party)


def locate(spec: str, registry: str | None = None) -> tuple[Registry, str]:
    """Split a served model spec into its registry and reference.

    ``models:/fraud@champion`` carries its registry (MLflow); ``fraud@production`` needs ``registry``
    (a directory or URI, e.g. from --registry or MLRT_REGISTRY)::

        reg, ref = locate("fraud@production", registry="/srv/models")
        model = reg.resolve(ref)
    """
    # The environment is the fallback every command names in its errors and --help
    # (the server reads it through its config; `mlrt predict` and `mlrt gate` come here).
    registry = registry or os.environ.get("MLRT_REGISTRY")
    if spec.startswith("models:/"):
        # MLflow's own reference: the MLflow registry given (mlflow+sqlite:///mlflow.db), else
        # MLflow's (MLFLOW_TRACKING_URI). Ignoring the one given would resolve against
        # another store, MLflow's default one in the working directory.
        if registry and scheme_of(registry) in ("mlflow", "models"):
            return get_registry(registry), spec
        return get_registry(spec), spec
    if not registry:
        if "@" not in spec and "/" not in spec:  # the shorthand, or a model file misnamed
            raise RegistryError(
                f"{spec!r} is no model file, and as a registry reference ({spec}@production) it "
                "needs a registry: pass --registry DIR or set MLRT_REGISTRY. A model file is a "
                "path ending in .onnx, a pickled model (.pkl, .joblib), an MLflow model directory "
                "or package.module:object"
            )
        raise RegistryError(f"{spec!r} names a registry model, but no registry is given: "
                            "pass --registry DIR or set MLRT_REGISTRY")
    return get_registry(registry), spec


def _build(factory: Any, uri: str, origin: str) -> Registry:
    make = getattr(factory, "from_uri", factory)
    try:
        registry = make(uri)
    except RegistryError:
        raise
    except Exception as exc:
        raise RegistryError(
            f"registry adapter {origin!r} failed for {uri!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(registry, Registry):
        raise RegistryError(f"registry adapter {origin!r} returned {type(registry).__name__}, not a Registry")
    return registry
