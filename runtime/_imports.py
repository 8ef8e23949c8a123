"""Importing `package.module:object` targets (Python models, callable hooks)."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


class ImportTargetError(Exception):
    """What went wrong, for the caller to word: `kind` is "format", "module" or
    "attribute". For "module", `missing` says whether the module itself was not found
    (rather than found, but raising while it was imported)."""

    def __init__(
        self, kind: str, module: str = "", attribute: str = "", cause: str = "", missing: bool = False
    ) -> None:
        super().__init__(kind, module, attribute, cause)
        self.kind = kind
        self.module = module
        self.attribute = attribute
        self.cause = cause
        self.missing = missing


def _cwd_on_path() -> bool:
    cwd = os.getcwd()
    return any(os.path.abspath(p or os.curdir) == cwd for p in sys.path)


def cwd_importable() -> None:
    """Make modules in the current directory importable, as `python -m` and uvicorn's app
    dir do, so `mlrt serve name=mymodule:model` finds ./mymodule.py without PYTHONPATH.

    It goes first on sys.path, like a script's directory would. The caller runs inside
    `runtime`, so that package is imported already and a `runtime/` folder here (a source
    checkout) cannot replace it: its submodules resolve through runtime.__path__.
    """
    if not _cwd_on_path():
        sys.path.insert(0, os.getcwd())


def searched() -> tuple[str, bool]:
    """Where an import looks, in a few words for an error message, and whether that
    includes the current directory."""
    cwd, cwd_on = os.getcwd(), _cwd_on_path()
    pythonpath = os.environ.get("PYTHONPATH")
    where = [f"the current directory {cwd}"] if cwd_on else []
    where.append(f"PYTHONPATH={pythonpath}" if pythonpath else "PYTHONPATH (unset)")
    where.append(f"the packages installed for {sys.executable}")
    return ", ".join(where) + ("" if cwd_on else f", but not the current directory ({cwd})"), cwd_on


def _not_found(exc: ImportError, module_name: str) -> bool:
    """True when the module itself (or a package above it) is missing, as opposed to a
    module it imports."""
    missing = getattr(exc, "name", None)
    return isinstance(exc, ModuleNotFoundError) and bool(missing) and (
        module_name == missing or module_name.startswith(f"{missing}.")
    )


def import_target(target: str) -> Any:
    """Import `package.module:object` (or `package.module:obj.attr`) and return the object."""
    module_name, sep, attr_path = target.partition(":")
    if not sep or not module_name or not attr_path:
        raise ImportTargetError("format")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportTargetError(
            "module", module_name, cause=str(exc), missing=_not_found(exc, module_name)
        ) from exc
    except Exception as exc:  # the module's own code raised (a SyntaxError too)
        raise ImportTargetError("module", module_name, cause=f"{type(exc).__name__}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportTargetError("attribute", module_name, part) from None
    return obj
