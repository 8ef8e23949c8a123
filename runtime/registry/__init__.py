"""Model registries: resolve ``name@alias`` or ``name/version`` to local files, list, promote, roll back.

    from runtime.registry import get_registry
    reg = get_registry("/srv/models")            # filesystem; "models:/" for MLflow
    model = reg.resolve("fraud@production")       # ResolvedModel(name, version, model_path, ...)

See docs/registry.md for the filesystem layout, the audit log and writing a third-party adapter.
"""

from __future__ import annotations

from ._discovery import BUILTIN_REGISTRIES, ENTRY_POINT_GROUP, get_registry, known_schemes, locate
from .base import DEFAULT_ALIAS, Ref, Registry, ResolvedModel, VersionInfo, parse_ref
from .errors import (
    InvalidReference,
    NothingToRollBack,
    RegistryError,
    RegistryUnavailable,
    UnknownAlias,
    UnknownModel,
    UnknownRegistryScheme,
    UnknownVersion,
)
from .filesystem import FilesystemRegistry

__all__ = [
    "BUILTIN_REGISTRIES",
    "DEFAULT_ALIAS",
    "ENTRY_POINT_GROUP",
    "FilesystemRegistry",
    "InvalidReference",
    "NothingToRollBack",
    "Ref",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "ResolvedModel",
    "UnknownAlias",
    "UnknownModel",
    "UnknownRegistryScheme",
    "UnknownVersion",
    "VersionInfo",
    "get_registry",
    "known_schemes",
    "locate",
    "parse_ref",
]
