"""The Registry protocol and the value types every adapter returns.

A model reference (``ref``) names one version of one model:

    name@alias      the version an alias points at now ("fraud@production")
    name/version    one version ("fraud/3")
    name            shorthand for name@production (DEFAULT_ALIAS)

Names and aliases are 1-128 characters of letters, digits, ``.``, ``_`` and ``-``, starting with a letter
or digit. An alias may not be all digits, so ``name@3`` can never be mistaken for a version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..names import RULE, is_valid_name
from .errors import InvalidReference

#: The alias a plain ``name`` reference resolves through.
DEFAULT_ALIAS = "production"



@dataclass(frozen=True)
class ResolvedModel:
    """One version of a model, available as local files.

    ``model_path`` is the model file (or directory) to load; ``profile_path`` the reference profile
    stored with the version, if any; ``card`` the version's model card (see runtime.registry.card).
    """

    name: str
    version: str
    model_path: Path
    profile_path: Path | None
    card: dict[str, Any] = field(default_factory=dict, compare=False)
    alias: str | None = None


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    created_at: str | None
    aliases: tuple[str, ...] = ()


@runtime_checkable
class Registry(Protocol):
    """What the server and the CLI need from a model registry.

    Usage::

        reg = get_registry("/srv/models")          # or "models:/" for MLflow
        m = reg.resolve("fraud@production")         # -> ResolvedModel(name, version, model_path, ...)
        reg.set_alias("fraud", "production", "4", actor="ci", reason="AUC +0.02")
        reg.rollback("fraud", "production")          # back to the previous target
        reg.alias_target("fraud", "production")      # cheap: poll this to follow an alias
    """

    def resolve(self, ref: str) -> ResolvedModel: ...

    def list_models(self) -> list[str]: ...

    def list_versions(self, name: str) -> list[VersionInfo]: ...

    def aliases(self, name: str) -> dict[str, str]: ...

    def alias_target(self, name: str, alias: str) -> str | None: ...

    def set_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        require_gate: bool = False,
    ) -> None: ...

    def rollback(
        self, name: str, alias: str, *, actor: str | None = None, reason: str | None = None
    ) -> str: ...


@dataclass(frozen=True)
class Ref:
    """A parsed model reference: exactly one of ``alias`` and ``version`` is set."""

    name: str
    alias: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias is not None else f"{self.name}/{self.version}"


def check_name(name: str, what: str = "model name") -> str:
    if not is_valid_name(name):
        raise InvalidReference(f"invalid {what} {name!r}: use {RULE}")
    return name


def check_alias(alias: str) -> str:
    check_name(alias, "alias")
    if alias.isdigit():
        raise InvalidReference(f"invalid alias {alias!r}: an alias may not be all digits (that is a version)")
    return alias


def check_version(version: str) -> str:
    """Versions are positive integers written in decimal without leading zeros: "1", "2", ..."""
    if not isinstance(version, str) or not version.isdigit() or version.startswith("0"):
        raise InvalidReference(f"invalid version {version!r}: versions are integers 1, 2, 3, ...")
    return version


def parse_ref(ref: str) -> Ref:
    """Parse ``name@alias``, ``name/version`` or ``name`` (= name@production).

    >>> parse_ref("fraud@staging"), parse_ref("fraud/3"), parse_ref("fraud")
    (Ref(name='fraud', alias='staging', version=None), Ref(name='fraud', alias=None, version='3'), \
Ref(name='fraud', alias='production', version=None))
    """
    if not isinstance(ref, str):
        raise InvalidReference(f"a model reference must be a string, got {type(ref).__name__}")
    if "@" in ref and "/" in ref:
        raise InvalidReference(f"invalid model reference {ref!r}: use name@alias or name/version, not both")
    if "@" in ref:
        name, _, alias = ref.partition("@")
        return Ref(check_name(name), alias=check_alias(alias))
    if "/" in ref:
        name, _, version = ref.partition("/")
        return Ref(check_name(name), version=check_version(version))
    if not is_valid_name(ref):
        raise InvalidReference(f"invalid model reference {ref!r}: use name@alias, name/version or name")
    return Ref(ref, alias=DEFAULT_ALIAS)
