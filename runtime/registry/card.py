"""Model cards: what a version is, where it came from and how good it was.

``card.json`` is written once, when the version is registered::

    {"schema": "mlrt.card", "schema_version": 1, "name": "fraud", "version": "3",
     "created_at": "2024-05-01T12:00:00Z", "model": "model.onnx",
     "params": {"max_depth": 6}, "metrics": {"auc": 0.91}, "data": "s3://bucket/train.parquet",
     "lineage": {"git_commit": "4f2c...", "pipeline": "make train", "parent": "2"},
     "profile": {"features": 12, "outputs": 1, "row_count": 50000, "fingerprint": "blake2b:..."},
     "gate": {"passed": true, "metric": "auc", "candidate": 0.93, "baseline": 0.91, ...}}

``gate`` is present when the version was registered with the report of `mlrt gate`
(card_gate below): what it was judged on and against which baseline.

``card.md`` is the same card rendered as Markdown, with the aliases pointing at the version when it was
rendered (the filesystem registry re-renders it when an alias moves).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import Any

from .errors import RegistryError

SCHEMA = "mlrt.card"
SCHEMA_VERSION = 1


def utc_now() -> str:
    """The current time as ISO-8601 UTC with a ``Z`` suffix, to the microsecond."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def profile_summary(path: str | PathLike[str]) -> dict[str, Any]:
    """Summarise (and so check) a reference profile: feature and output counts, rows, fingerprint."""
    from runtime.monitor.profile import Profile  # numpy and the kernels load only when a profile is given

    try:
        profile = Profile.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RegistryError(f"cannot read the profile {str(path)!r}: {exc}") from exc
    return {
        "features": len(profile.features),
        "outputs": len(profile.outputs),
        "row_count": profile.row_count,
        "fingerprint": profile.fingerprint,
    }


def build_card(
    *,
    name: str,
    version: str,
    model: str,
    created_at: str | None = None,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    data: str | None = None,
    git_commit: str | None = None,
    pipeline: str | None = None,
    parent: str | None = None,
    profile: Mapping[str, Any] | None = None,
    description: str | None = None,
    gate: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a card dict; the values must be JSON (finite numbers, strings, lists, dicts)."""
    card: dict[str, Any] = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "created_at": created_at or utc_now(),
        "model": model,
        "params": dict(params or {}),
        "metrics": dict(metrics or {}),
        "data": data,
        "lineage": {"git_commit": git_commit, "pipeline": pipeline, "parent": parent},
        "profile": dict(profile) if profile is not None else None,
    }
    if description:
        card["description"] = description
    if gate is not None:
        card["gate"] = card_gate(gate)
    for section in ("params", "metrics"):
        for key, value in card[section].items():
            if not isinstance(key, str) or not key:
                raise RegistryError(f"{section} keys must be non-empty strings, got {key!r}")
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise RegistryError(
                    f"{section[:-1]} {key!r} must be a finite number, a string or other JSON, got {value!r}"
                ) from exc
    return card


def card_gate(report: Mapping[str, Any]) -> dict[str, Any]:
    """What a card keeps of an `mlrt gate` report (runtime/gates/gate.py, GateResult.to_json):
    the verdict, the metric of both models with the interval of their difference, the
    baseline it was judged against, the data's content hash, and the latency ratio."""
    try:
        metric, data = report["metric"], report["data"]
        return {
            "passed": bool(report["passed"]),
            "failures": list(report.get("failures", [])),
            "metric": metric["name"],
            "candidate": metric["candidate"],
            "baseline": metric["baseline"],
            "delta": metric["delta"],
            "interval": list(metric["interval"]),
            "min_delta": metric["min_delta"],
            "candidate_sha256": report.get("candidate_sha256"),
            "baseline_model": report["baseline"],
            "baseline_version": report.get("versions", {}).get("baseline"),
            "data_sha256": data["sha256"],
            "rows": data["rows"],
            "latency_ratio": report.get("latency", {}).get("ratio"),
        }
    except (KeyError, TypeError) as exc:
        raise RegistryError(f"not an `mlrt gate` report: missing {exc}") from None


def artifact_sha256(path: str | PathLike[str]) -> str:
    """The content hash of a model file, or of a model directory (every file's relative
    path and bytes, in sorted order): what a gate report names as the candidate it judged,
    and what registration compares it with."""
    root = Path(path)
    files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for f in files:
        if root.is_dir():
            digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        hash_file_into(digest, f)
    return digest.hexdigest()


def hash_file_into(digest: Any, path: str | PathLike[str]) -> None:
    """Feed a file's bytes to `digest`, a megabyte at a time (a model or data file may be
    larger than memory allows at once)."""
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)


def check_gate_judged(report: Mapping[str, Any], source: str | PathLike[str]) -> None:
    """Refuse a gate report about another model than `source`, the file being registered: a
    passing report of any model would otherwise satisfy `--require-gate`. Reports older than
    schema 2 do not name their candidate's content and are taken as they are."""
    if not isinstance(report, Mapping) or int(report.get("schema", 1) or 1) < 2:
        return
    judged = report.get("candidate_sha256")
    if judged is None:
        raise RegistryError(
            f"the gate report judged {report.get('candidate')!r}, not a model file: gate the file "
            f"you register (mlrt gate --candidate {source} ...)"
        )
    if judged != artifact_sha256(source):
        raise RegistryError(
            f"the gate report judged another model ({report.get('candidate')!r}, sha256 {judged[:12]}...) "
            f"than {str(source)!r}: gate this file (mlrt gate --candidate {source} ...)"
        )


def require_passing_gate(name: str, version: str, gate: Mapping[str, Any] | None) -> None:
    """Raise RegistryError unless `gate` (a card's `gate` section) passed: what promotion
    with ``require_gate`` asks of a version, in every registry."""
    if not gate:
        raise RegistryError(
            f"{name} version {version} has no gate on its card: register it with "
            "--gate gate.json (the report of mlrt gate)"
        )
    if not gate.get("passed"):
        failures = "; ".join(gate.get("failures") or [])
        raise RegistryError(f"{name} version {version} failed its gate: {failures}")


def dumps(card: Mapping[str, Any]) -> str:
    return json.dumps(card, indent=2, sort_keys=False, allow_nan=False) + "\n"


def render_markdown(card: Mapping[str, Any], aliases: Iterable[str] = ()) -> str:
    """Render a card as Markdown: title, aliases, params and metrics tables, lineage, profile summary."""
    name, version = card.get("name", "?"), card.get("version", "?")
    lines = [f"# {name} version {version}", ""]
    if card.get("description"):
        lines += [str(card["description"]), ""]
    alias_list = sorted(aliases)
    lines += [
        f"- **Created**: {card.get('created_at') or 'unknown'}",
        f"- **Model**: `{card.get('model') or 'unknown'}`",
        f"- **Aliases**: {', '.join(f'`{a}`' for a in alias_list) if alias_list else 'none'}",
        f"- **Training data**: {_md(card.get('data')) if card.get('data') else 'not recorded'}",
        "",
    ]
    for title in ("params", "metrics"):
        values = card.get(title) or {}
        lines.append(f"## {title.capitalize()}")
        lines.append("")
        if values:
            lines += ["| name | value |", "|---|---|"]
            lines += [f"| {_md(k)} | {_md(_fmt(v))} |" for k, v in sorted(values.items())]
        else:
            lines.append("None recorded.")
        lines.append("")
    lineage = card.get("lineage") or {}
    lines += ["## Lineage", ""]
    lines.append(f"- **Git commit**: {_code(lineage.get('git_commit'))}")
    lines.append(f"- **Pipeline**: {_code(lineage.get('pipeline'))}")
    lines.append(f"- **Parent version**: {_md(lineage.get('parent')) if lineage.get('parent') else 'none'}")
    gate = card.get("gate")
    if gate:
        verdict = "passed" if gate.get("passed") else "FAILED"
        lo, hi = (gate.get("interval") or [None, None])[:2]
        lines += ["", "## Gate", ""]
        against = _code(gate.get("baseline_model"))
        if gate.get("baseline_version"):
            against += f" (version {_md(gate['baseline_version'])})"
        lines.append(f"- **Verdict**: {verdict} against {against}")
        lines.append(
            f"- **{_md(gate.get('metric'))}**: {_fmt(gate.get('candidate'))} "
            f"against {_fmt(gate.get('baseline'))} (difference {_fmt(gate.get('delta'))}, "
            f"interval {_fmt(lo)} to {_fmt(hi)})"
        )
        lines.append(f"- **Data**: {gate.get('rows')} rows, sha256 {_code(gate.get('data_sha256'))}")
        if gate.get("latency_ratio") is not None:
            ratio = _fmt(gate["latency_ratio"])
            lines.append(f"- **Latency**: candidate p99 per batch {ratio}x the baseline's")
        for failure in gate.get("failures") or []:
            lines.append(f"- **Failed**: {_md(failure)}")
    lines += ["", "## Reference profile", ""]
    profile = card.get("profile")
    if profile:
        lines.append(f"- **Features**: {profile.get('features')}")
        lines.append(f"- **Outputs**: {profile.get('outputs')}")
        lines.append(f"- **Rows**: {profile.get('row_count')}")
        lines.append(f"- **Fingerprint**: {_code(profile.get('fingerprint'))}")
    else:
        lines.append("No reference profile: drift is not monitored for this version.")
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _md(value: Any) -> str:
    # Table cells and list items: escape the pipe, keep everything on one line.
    return str(value).replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    return f"`{_md(value)}`" if value else "not recorded"
