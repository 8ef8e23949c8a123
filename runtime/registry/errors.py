"""Registry errors. Like runtime.errors, they carry data (the name, version or alias
that was not found) and never HTTP status codes."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import MlrtError


def _known(items: Iterable[str], what: str) -> str:
    names = sorted(items)
    if not names:
        return f"no {what} yet"
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return f"known {what}: {shown}"


class RegistryError(MlrtError):
    """Base class of every registry error: bad references, missing entries, failed writes."""


class InvalidReference(RegistryError):
    """A model reference, model name, alias or version that is not well formed."""


class UnknownModel(RegistryError):
    def __init__(self, name: str, known: Iterable[str] = (), *, where: str | None = None) -> None:
        self.name = name
        super().__init__(f"unknown model '{name}' ({where or _known(known, 'models')})")


class UnknownVersion(RegistryError):
    def __init__(self, name: str, version: str, known: Iterable[str] = ()) -> None:
        self.name = name
        self.version = version
        super().__init__(f"model '{name}' has no version '{version}' ({_known(known, 'versions')})")


class UnknownAlias(RegistryError):
    def __init__(self, name: str, alias: str, known: Iterable[str] = ()) -> None:
        self.name = name
        self.alias = alias
        super().__init__(f"model '{name}' has no alias '{alias}' ({_known(known, 'aliases')})")


class NothingToRollBack(RegistryError):
    def __init__(self, name: str, alias: str) -> None:
        self.name = name
        self.alias = alias
        super().__init__(
            f"alias '{alias}' of model '{name}' has no earlier target in the audit log to roll back to"
        )


class UnknownRegistryScheme(RegistryError):
    def __init__(self, scheme: str, known: Iterable[str]) -> None:
        self.scheme = scheme
        super().__init__(
            f"no registry adapter for the scheme '{scheme}:'; known schemes: {', '.join(sorted(known))} "
            "(a plain path is a filesystem registry; third-party adapters are entry points "
            "in the group 'mlrt.registries')"
        )


class RegistryUnavailable(RegistryError):
    """The registry's backend cannot be reached or its SDK is not installed."""
