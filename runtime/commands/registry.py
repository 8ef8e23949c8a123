"""Manage a filesystem model registry: register versions, list them, promote and roll back aliases.

The registry is the directory given by --registry, or MLRT_REGISTRY. Statuses (staging, production,
archived, ...) are aliases; every promotion and rollback is appended to <registry>/<name>/events.jsonl.

examples:
  mlrt registry register model.onnx --name fraud --profile ref.json \\
      --params max_depth=6 --metrics auc=0.91 --data s3://bucket/train.parquet --git-commit auto
  mlrt registry list fraud
  mlrt registry promote fraud 3 --alias production --reason "AUC +0.02 over v2"
  mlrt registry rollback fraud --alias production
  mlrt registry card fraud 3 --format md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from typing import Any

NAME = "registry"
HELP = "manage a filesystem model registry (register, list, promote, rollback, card)"
ENV_VAR = "MLRT_REGISTRY"

_INT = re.compile(r"[-+]?\d+")
_FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?")


class UsageError(Exception):
    """A bad command-line value: reported with exit status 2, like argparse's own errors."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _registry_option(parser, None)
    sub = parser.add_subparsers(dest="registry_command", metavar="ACTION", required=True)

    p = _action(sub, "register", "copy a model file or directory in as the next version and write its card")
    p.add_argument("source", metavar="DIR|FILE", help="the model file (e.g. model.onnx) or directory")
    p.add_argument("--name", required=True, help="model name")
    p.add_argument("--profile", metavar="REF.json", help="reference profile stored with the version")
    p.add_argument("--params", nargs="+", action="extend", default=[], metavar="K=V",
                   help="hyperparameters; values that look like numbers are stored as numbers")
    p.add_argument("--metrics", nargs="+", action="extend", default=[], metavar="K=V",
                   help="evaluation metrics, e.g. auc=0.91")
    p.add_argument("--data", metavar="URI", help="reference to the training data")
    p.add_argument("--git-commit", metavar="SHA|auto",
                   help="commit the model was built from; 'auto' reads git HEAD of the current directory")
    p.add_argument("--pipeline", metavar="TEXT", help="pipeline or command that produced the model")
    p.add_argument("--parent", metavar="V", help="version this one was derived from")
    p.add_argument("--description", metavar="TEXT", help="one-paragraph description for the card")
    p.add_argument("--gate", metavar="GATE.json", help="the report of mlrt gate -o, kept on the card")
    p.add_argument("--actor", help="who registers (default: the OS user)")

    p = _action(sub, "list", "list models, or the versions of one model with their aliases")
    p.add_argument("name", nargs="?", help="model name")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = _action(sub, "promote", "point an alias (production, staging, archived, ...) at a version")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--alias", default="production", help="alias to set (default: production)")
    p.add_argument("--reason", metavar="TEXT", help="why; kept in the audit log")
    p.add_argument("--actor", help="who promotes (default: the OS user)")
    p.add_argument(
        "--require-gate", action="store_true", help="refuse a version whose card has no passing gate"
    )

    p = _action(sub, "rollback", "point an alias back at its target before the latest promotion")
    p.add_argument("name")
    p.add_argument("--alias", default="production", help="alias to roll back (default: production)")
    p.add_argument("--reason", metavar="TEXT", help="why; kept in the audit log")
    p.add_argument("--actor", help="who rolls back (default: the OS user)")

    p = _action(sub, "card", "print a version's model card")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--format", choices=("md", "json"), default="md")

    p = _action(sub, "aliases", "print a model's aliases and the versions they point at")
    p.add_argument("name")
    p.add_argument("--format", choices=("table", "json"), default="table")

    p = _action(sub, "history", "print a model's audit log: registrations, promotions, rollbacks")
    p.add_argument("name")
    p.add_argument("--alias", help="only the events of this alias")
    p.add_argument("--format", choices=("table", "json"), default="table")


def _registry_option(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--registry", metavar="DIR", default=default,
        help=f"registry root directory (default: ${ENV_VAR})",
    )


def _action(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    # Also accepted after the action; SUPPRESS keeps an absent one from hiding the one before it.
    _registry_option(p, argparse.SUPPRESS)
    return p


def run(args: argparse.Namespace) -> int:
    from runtime.errors import MlrtError

    try:
        registry = _open(args.registry)
        if args.registry_command != "register" and not registry.root.is_dir():
            # Listing nothing, or "unknown model", would hide a mistyped path.
            raise UsageError(f"no registry at {str(registry.root)!r}: the directory does not exist")
        return _ACTIONS[args.registry_command](registry, args)
    except UsageError as exc:
        print(f"mlrt registry: {exc}", file=sys.stderr)
        return 2
    except MlrtError as exc:
        print(f"mlrt registry {args.registry_command}: {exc}", file=sys.stderr)
        return 1


def _open(root: str | None) -> Any:
    from runtime.registry import FilesystemRegistry

    root = root or os.environ.get(ENV_VAR)
    if not root:
        raise UsageError(f"no registry given: pass --registry DIR or set {ENV_VAR}")
    return FilesystemRegistry.from_uri(root)


def parse_value(text: str) -> int | float | str:
    """'3' -> 3, '0.91' -> 0.91, '1e-3' -> 0.001; anything else stays a string."""
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


def parse_pairs(items: list[str], option: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} takes KEY=VALUE pairs, got {item!r}")
        if key in out:
            raise UsageError(f"{option}: {key!r} given twice")
        out[key] = parse_value(value)
        if option == "--metrics" and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
            # Not a number the card can hold (JSON has none): refused, as the Python API does.
            raise UsageError(f"--metrics: {key!r} must be a finite number, got {value!r}")
    return out


def git_head() -> str | None:
    """The commit checked out in the current directory, or None outside a git work tree."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    except OSError:
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and sha else None


def _register(registry: Any, args: argparse.Namespace) -> int:
    params = parse_pairs(args.params, "--params")
    metrics = parse_pairs(args.metrics, "--metrics")
    commit = args.git_commit
    if commit == "auto":
        commit = git_head()
        if commit is None:
            print("mlrt registry register: --git-commit auto: not in a git repository; not recorded",
                  file=sys.stderr)
    gate = None
    if args.gate:
        try:
            with open(args.gate, encoding="utf-8") as fh:
                gate = json.load(fh)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--gate {args.gate}: {exc}") from None
    if args.profile is not None:
        _check_profile_fits(args.source, args.name, args.profile)
    version = registry.register(
        args.source, args.name, profile=args.profile, params=params, metrics=metrics, data=args.data,
        git_commit=commit, pipeline=args.pipeline, parent=args.parent, description=args.description,
        gate=gate, actor=args.actor,
    )
    print(f"registered {args.name} version {version} in {registry.root / args.name / version}")
    return 0


def _check_profile_fits(source: str, name: str, profile: str) -> None:
    """Refuse a profile the model cannot be served with (other features, another count of
    columns), as `mlrt serve` would, before it is stored beside the version: found here, not
    when the version is promoted and the server refuses to start. A model that does not load
    here (a module it needs is not installed on this machine) is registered unchecked."""
    from runtime.config import ModelConfig, MonitorConfig
    from runtime.errors import ConfigError, MlrtError
    from runtime.loading import build_monitor
    from runtime.models import load_model

    config = ModelConfig(name=name, source=str(source))
    try:
        model = load_model(config)
    except (MlrtError, ImportError, OSError) as exc:
        print(
            f"mlrt registry register: the model did not load here ({exc}); the profile is "
            "stored without checking it fits the model",
            file=sys.stderr,
        )
        return
    try:
        build_monitor(replace(config, profile=str(profile)), model, MonitorConfig())
    except (ConfigError, ValueError) as exc:
        raise UsageError(f"--profile {profile} does not fit the model: {exc}") from None
    finally:
        model.close()


def _list(registry: Any, args: argparse.Namespace) -> int:
    if args.name is None:
        rows = []
        for name in registry.list_models():
            versions = registry.list_versions(name)
            aliases = registry.aliases(name)
            rows.append({"name": name, "versions": len(versions), "latest": versions[-1].version,
                         "aliases": aliases})
        if args.format == "json":
            print(json.dumps(rows, indent=2))
        else:
            _table(f"models in {registry.root}", ("model", "versions", "latest", "aliases"),
                   [(r["name"], str(r["versions"]), r["latest"], _alias_text(r["aliases"])) for r in rows])
        return 0
    infos = registry.list_versions(args.name)
    if args.format == "json":
        print(json.dumps([{"version": i.version, "created_at": i.created_at, "aliases": list(i.aliases)}
                          for i in infos], indent=2))
    else:
        _table(f"{args.name} in {registry.root}", ("version", "created_at", "aliases"),
               [(i.version, i.created_at or "-", ", ".join(i.aliases)) for i in infos])
    return 0


def _promote(registry: Any, args: argparse.Namespace) -> int:
    before = registry.alias_target(args.name, args.alias)
    registry.set_alias(
        args.name, args.alias, args.version,
        actor=args.actor, reason=args.reason, require_gate=args.require_gate,
    )  # fmt: skip
    if before == args.version:
        print(f"{args.name}@{args.alias} already points at version {args.version}; nothing changed")
    else:
        print(f"{args.name}@{args.alias}: {before or '(unset)'} -> {args.version}")
    return 0


def _rollback(registry: Any, args: argparse.Namespace) -> int:
    before = registry.alias_target(args.name, args.alias)
    target = registry.rollback(args.name, args.alias, actor=args.actor, reason=args.reason)
    print(f"{args.name}@{args.alias}: {before} -> {target} (rolled back)")
    return 0


def _card(registry: Any, args: argparse.Namespace) -> int:
    if args.format == "json":
        print(json.dumps(registry.card(args.name, args.version), indent=2))
    else:
        sys.stdout.write(registry.card_markdown(args.name, args.version))
    return 0


def _aliases(registry: Any, args: argparse.Namespace) -> int:
    aliases = registry.aliases(args.name)
    if args.format == "json":
        print(json.dumps(aliases, indent=2, sort_keys=True))
    else:
        _table(f"aliases of {args.name}", ("alias", "version"), sorted(aliases.items()))
    return 0


def _history(registry: Any, args: argparse.Namespace) -> int:
    events = registry.history(args.name, args.alias)
    if args.format == "json":
        print(json.dumps(events, indent=2))
        return 0
    columns = ("time", "action", "alias", "from", "to", "actor", "reason")
    _table(f"history of {args.name}", columns,
           [tuple("-" if e.get(c) is None else str(e.get(c)) for c in columns) for e in events])
    return 0


def _alias_text(aliases: dict[str, str]) -> str:
    return ", ".join(f"{a}={v}" for a, v in sorted(aliases.items()))


def _table(title: str, columns: tuple[str, ...], rows: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


_ACTIONS = {
    "register": _register,
    "list": _list,
    "promote": _promote,
    "rollback": _rollback,
    "card": _card,
    "aliases": _aliases,
    "history": _history,
}
