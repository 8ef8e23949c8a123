"""A model registry in a directory: versions are directories, aliases one JSON file, audit a JSON-lines log.

    <root>/<name>/<version>/        "1", "2", ...: the model file or directory, profile.json, card.json/.md
    <root>/<name>/aliases.json      {"production": "3", "staging": "4"}
    <root>/<name>/events.jsonl      one JSON object per line: register, promote, rollback
    <root>/<name>/.lock             flock(2) target that serialises writers of this model

Concurrency: a version is copied into ``<root>/<name>/.tmp-*`` and becomes visible in one ``rename(2)``,
so readers never see half a version. Choosing the version number, the rename, ``aliases.json`` writes
(temp file + ``os.replace``) and appends to ``events.jsonl`` all happen under an exclusive ``flock`` on
``.lock``, so concurrent writers - threads or processes on one host, or hosts sharing a filesystem with
working POSIX locks - get distinct versions and never lose an alias change. Readers take no lock.
A writer that dies mid-copy leaves only a ``.tmp-*`` directory, which every listing ignores.

``card.md`` shows the aliases pointing at its version, so an alias move re-renders two of them
after ``aliases.json`` changes. A writer that dies in between would leave them showing the old
aliases; so before the move it names them in ``.cards-pending``, removed once both are rendered,
and the next writer of the model renders any it finds named there before it does anything else.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from os import PathLike
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from . import card as cards
from .base import ResolvedModel, VersionInfo, check_alias, check_name, check_version, parse_ref
from .errors import (
    InvalidReference,
    NothingToRollBack,
    RegistryError,
    UnknownAlias,
    UnknownModel,
    UnknownVersion,
)

ALIASES_FILE = "aliases.json"
EVENTS_FILE = "events.jsonl"
LOCK_FILE = ".lock"
#: The versions whose card.md an alias move has still to re-render (see the module's docstring).
PENDING_FILE = ".cards-pending"
CARD_FILE = "card.json"
CARD_MD_FILE = "card.md"
PROFILE_FILE = "profile.json"
TMP_PREFIX = ".tmp-"
#: Names a model source may not have, because the version directory uses them.
RESERVED = frozenset({CARD_FILE, CARD_MD_FILE, PROFILE_FILE})


class FilesystemRegistry:
    """The filesystem registry (see the module docstring for the layout).

    Usage::

        reg = FilesystemRegistry("/srv/models")
        v = reg.register(Path("model.onnx"), "fraud", profile=Path("ref.json"), metrics={"auc": 0.91})
        reg.set_alias("fraud", "production", v, reason="beats v2 on AUC")
        reg.resolve("fraud@production").model_path   # /srv/models/fraud/3/model.onnx
    """

    def __init__(self, root: str | PathLike[str]) -> None:
        self.root = Path(root)

    @classmethod
    def from_uri(cls, uri: str) -> FilesystemRegistry:
        """A plain path or a ``file://`` URI (``file:///srv/models``, ``file:relative/dir``)."""
        parts = urlsplit(uri)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise InvalidReference(f"file URI {uri!r} names a host ({parts.netloc}); use a local path")
            return cls(unquote(parts.path))
        return cls(uri)

    def __repr__(self) -> str:
        return f"FilesystemRegistry({str(self.root)!r})"

    # -- reading -------------------------------------------------------------------------------------

    def list_models(self) -> list[str]:
        """Names of the models with at least one committed version, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and self._versions(p))

    def list_versions(self, name: str) -> list[VersionInfo]:
        model_dir = self._require_model(name)
        by_version: dict[str, list[str]] = {}
        for alias, version in self._read_aliases(model_dir).items():
            by_version.setdefault(version, []).append(alias)
        out = []
        for v in self._versions(model_dir):
            card = self._read_card(model_dir / v, missing_ok=True)
            out.append(VersionInfo(name, v, card.get("created_at"), tuple(sorted(by_version.get(v, ())))))
        return out

    def aliases(self, name: str) -> dict[str, str]:
        return self._read_aliases(self._require_model(name))

    def alias_target(self, name: str, alias: str) -> str | None:
        """The version ``alias`` points at, or None. One small file read and no listing: cheap to poll."""
        return self._read_aliases(self.root / check_name(name)).get(check_alias(alias))

    def resolve(self, ref: str) -> ResolvedModel:
        r = parse_ref(ref)
        model_dir = self._require_model(r.name)
        version = r.version
        if r.alias is not None:
            aliases = self._read_aliases(model_dir)
            if r.alias not in aliases:
                raise UnknownAlias(r.name, r.alias, aliases)
            version = aliases[r.alias]
        assert version is not None
        version_dir = self._require_version(model_dir, r.name, version)
        card = self._read_card(version_dir)
        model = card.get("model")
        if not isinstance(model, str) or not (version_dir / model).exists():
            raise RegistryError(f"{version_dir / CARD_FILE}: 'model' must name a file in {version_dir}")
        profile = version_dir / PROFILE_FILE
        return ResolvedModel(
            name=r.name,
            version=version,
            model_path=version_dir / model,
            profile_path=profile if profile.is_file() else None,
            card=card,
            alias=r.alias,
        )

    def card(self, name: str, version: str) -> dict[str, Any]:
        model_dir = self._require_model(name)
        return self._read_card(self._require_version(model_dir, name, version))

    def card_markdown(self, name: str, version: str) -> str:
        """The card rendered now, with the aliases that point at the version now."""
        card = self.card(name, version)
        return cards.render_markdown(card, [a for a, v in self.aliases(name).items() if v == version])

    def history(self, name: str, alias: str | None = None) -> list[dict[str, Any]]:
        """The audit log of a model, oldest first; only the events of ``alias`` if given."""
        events = self._read_events(self._require_model(name))
        return events if alias is None else [e for e in events if e.get("alias") == alias]

    # -- writing -------------------------------------------------------------------------------------

    # The keywords after `profile` are the card's fields (card.build_card), passed through:
    # spelled out again so that help(), the CLI and type checkers see the public signature.
    def register(
        self,
        source: str | PathLike[str],
        name: str,
        *,
        profile: str | PathLike[str] | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        data: str | None = None,
        git_commit: str | None = None,
        pipeline: str | None = None,
        parent: str | None = None,
        description: str | None = None,
        gate: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> str:
        """Copy ``source`` (a model file or directory) in as the next version of ``name``; return the version.

        The version appears complete or not at all: everything is copied into a temporary directory
        beside the versions, and a rename under the model's lock commits it.
        """
        check_name(name)
        src = Path(source)
        if not src.exists():
            raise RegistryError(f"model source {str(src)!r} does not exist")
        if src.name in RESERVED:
            raise RegistryError(f"model source may not be named {src.name!r}: the registry uses that name")
        model_dir = self.root / name
        if parent is not None:
            parent = str(parent)
            if parent.isdigit() and not (model_dir / parent).is_dir():
                raise UnknownVersion(name, parent, self._versions(model_dir))
        if gate is not None:
            cards.check_gate_judged(gate, src)
        summary = cards.profile_summary(profile) if profile is not None else None
        # Validate params and metrics before copying anything; the version is filled in under the lock.
        card = cards.build_card(
            name=name, version="0", model=src.name, params=params, metrics=metrics, data=data,
            git_commit=git_commit, pipeline=pipeline, parent=parent, profile=summary, description=description,
            gate=gate,
        )
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=model_dir))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0o700; a server running as another user must read it
            _copy_source(src, tmp / src.name)
            if profile is not None:
                shutil.copyfile(profile, tmp / PROFILE_FILE)
            with self._lock(model_dir):
                version = str(max((int(v) for v in self._versions(model_dir)), default=0) + 1)
                card["version"] = version
                card["created_at"] = cards.utc_now()
                (tmp / CARD_FILE).write_text(cards.dumps(card), encoding="utf-8")
                (tmp / CARD_MD_FILE).write_text(cards.render_markdown(card), encoding="utf-8")
                # The commit point. The lock makes the number ours, and rename(2) onto an existing
                # non-empty directory fails rather than merging, so a version is never overwritten.
                os.rename(tmp, model_dir / version)
                self._append_event(model_dir, "register", None, None, version, actor, None)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def set_alias(
        self,
        name: str,
        alias: str,
        version: str,
        *,
        actor: str | None = None,
        reason: str | None = None,
        require_gate: bool = False,
    ) -> None:
        """Point ``alias`` at ``version`` (promote) and record it in the audit log. Setting an alias to the
        version it already points at changes and records nothing. With ``require_gate``, a version whose
        card holds no passing `mlrt gate` report is refused."""
        check_alias(alias)
        check_version(version)
        model_dir = self._require_model(name)
        with self._lock(model_dir):
            version_dir = self._require_version(model_dir, name, version)
            if require_gate:
                gate = self._read_card(version_dir, missing_ok=True).get("gate")
                cards.require_passing_gate(name, version, gate)
            aliases = self._read_aliases(model_dir)
            previous = aliases.get(alias)
            if previous == version:
                return
            self._move_alias(model_dir, aliases, alias, previous, version, "promote", actor, reason)

    def rollback(self, name: str, alias: str, *, actor: str | None = None, reason: str | None = None) -> str:
        """Point ``alias`` back at the target it had before its latest promotion; return that version.

        Rollbacks undo promotions one at a time: after promoting 1, 2, 3, rolling back twice gives 2, then 1.
        """
        check_alias(alias)
        model_dir = self._require_model(name)
        with self._lock(model_dir):
            aliases = self._read_aliases(model_dir)
            current = aliases.get(alias)
            if current is None:
                raise UnknownAlias(name, alias, aliases)
            stack = _alias_stack(self._read_events(model_dir), alias)
            if not stack or stack[-1] != current:
                raise RegistryError(
                    f"alias '{alias}' of model '{name}' points at version {current} in {ALIASES_FILE}, but "
                    f"the audit log says {stack[-1] if stack else 'nothing'}; promote the version you want"
                )
            if len(stack) < 2:
                raise NothingToRollBack(name, alias)
            target = stack[-2]
            self._require_version(model_dir, name, target)
            self._move_alias(model_dir, aliases, alias, current, target, "rollback", actor, reason)
            return target

    # -- internals -----------------------------------------------------------------------------------

    def _move_alias(
        self, model_dir: Path, aliases: dict[str, str], alias: str, previous: str | None, version: str,
        action: str, actor: str | None, reason: str | None,
    ) -> None:
        # Caller holds the lock. aliases.json first: if we die before the event is appended, rollback
        # reports the mismatch instead of silently undoing the wrong promotion.
        aliases = {**aliases, alias: version}
        touched = sorted({previous, version} - {None})  # type: ignore[type-var]
        _write_atomic(model_dir / PENDING_FILE, json.dumps(touched) + "\n")
        _write_atomic(model_dir / ALIASES_FILE, json.dumps(aliases, indent=2, sort_keys=True) + "\n")
        self._append_event(model_dir, action, alias, previous, version, actor, reason)
        self._render_cards(model_dir, aliases, touched)
        os.unlink(model_dir / PENDING_FILE)

    def _render_cards(self, model_dir: Path, aliases: Mapping[str, str], versions: list[str]) -> None:
        """Write card.md of `versions` with the aliases that point at each (caller holds the lock)."""
        for v in versions:
            if (model_dir / v / CARD_FILE).is_file():
                card = self._read_card(model_dir / v)
                text = cards.render_markdown(card, [a for a, t in aliases.items() if t == v])
                _write_atomic(model_dir / v / CARD_MD_FILE, text)

    def _finish_pending(self, model_dir: Path) -> None:
        """Render the cards an alias move named and did not finish (its writer died)."""
        try:
            raw = (model_dir / PENDING_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        try:
            versions = [v for v in json.loads(raw) if isinstance(v, str)]
        except ValueError:  # not what a move writes (it is replaced whole): every card, then
            versions = self._versions(model_dir)
        self._render_cards(model_dir, self._read_aliases(model_dir), versions)
        os.unlink(model_dir / PENDING_FILE)

    def _append_event(
        self, model_dir: Path, action: str, alias: str | None, previous: str | None, version: str,
        actor: str | None, reason: str | None,
    ) -> None:
        event = {
            "time": cards.utc_now(),
            "action": action,
            "alias": alias,
            "from": previous,
            "to": version,
            "actor": actor if actor is not None else _default_actor(),
            "reason": reason,
        }
        line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        # O_APPEND: each write lands at the end even if someone bypasses the lock; one write per line.
        fd = os.open(model_dir / EVENTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise RegistryError(f"short write to {model_dir / EVENTS_FILE}: {written}/{len(line)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _lock(self, model_dir: Path) -> Iterator[None]:
        fd = os.open(model_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._finish_pending(model_dir)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    @staticmethod
    def _versions(model_dir: Path) -> list[str]:
        """Committed versions in numeric order; ``.tmp-*`` leftovers and stray files are not versions."""
        try:
            entries = list(os.scandir(model_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = [e.name for e in entries if e.name.isdigit() and e.name[0] != "0" and e.is_dir()]
        return sorted(found, key=int)

    def _require_model(self, name: str) -> Path:
        model_dir = self.root / check_name(name)
        if not self._versions(model_dir):
            if not self.root.is_dir():  # a mistyped --registry or MLRT_REGISTRY, most likely
                missing = f"no registry at {str(self.root)!r}: the directory does not exist"
                raise UnknownModel(name, where=missing)
            raise UnknownModel(name, self.list_models())
        return model_dir

    def _require_version(self, model_dir: Path, name: str, version: str) -> Path:
        check_version(version)
        version_dir = model_dir / version
        if not version_dir.is_dir():
            raise UnknownVersion(name, version, self._versions(model_dir))
        return version_dir

    @staticmethod
    def _read_aliases(model_dir: Path) -> dict[str, str]:
        path = model_dir / ALIASES_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return {}
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise RegistryError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
            raise RegistryError(f"{path} must be a JSON object of alias -> version string")
        return obj

    @staticmethod
    def _read_card(version_dir: Path, missing_ok: bool = False) -> dict[str, Any]:
        path = version_dir / CARD_FILE
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if missing_ok:
                return {}
            raise RegistryError(f"{path} is missing; every version needs a card") from None
        except ValueError as exc:
            raise RegistryError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise RegistryError(f"{path} must hold a JSON object")
        return obj

    @staticmethod
    def _read_events(model_dir: Path) -> list[dict[str, Any]]:
        path = model_dir / EVENTS_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        # A writer that died mid-line leaves a last line without its newline: not an event yet.
        complete = text.split("\n")[:-1]
        events = []
        for number, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError as exc:
                raise RegistryError(f"{path}:{number} is not a JSON object: {exc}") from exc
            events.append(event)
        return events


def _alias_stack(events: list[dict[str, Any]], alias: str) -> list[str]:
    """Replay an alias's promotions (push) and rollbacks (pop): the top is its current target."""
    stack: list[str] = []
    for event in events:
        if event.get("alias") != alias:
            continue
        if event.get("action") == "promote":
            stack.append(str(event["to"]))
        elif event.get("action") == "rollback" and stack:
            stack.pop()
    return stack


def _copy_source(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copyfile(src, dst)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _default_actor() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (containers)
        return None
