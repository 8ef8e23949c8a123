"""Importing `package.module:object` targets (Python models, callable hooks)."""

from __future__ import annotations

import importlib
from typing import Any


class ImportTargetError(Exception):
    """What went wrong, for the caller to word: `kind` is "format", "module" or "attribute"."""

    def __init__(self, kind: str, module: str = "", attribute: str = "", cause: str = "") -> None:
        super().__init__(kind, module, attribute, cause)
        self.kind = kind
        self.module = module
        self.attribute = attribute
        self.cause = cause


def import_target(target: str) -> Any:
    """Import `package.module:object` (or `package.module:obj.attr`) and return the object."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise ImportTargetError("format")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportTargetError("module", module_name, cause=str(exc)) from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportTargetError("attribute", module_name, part) from None
    return obj
