"""MLflow Model Registry adapter: ``models:/name@alias`` and ``models:/name/version``.

Needs the optional extra ``mlrt[mlflow]``; ``mlflow`` is imported when the adapter is built, never
before. Uses MLflow's aliases (stages are deprecated since MLflow 2.9).

Where things are, for a model version:
- the model: the version's artifacts (its ``source``) are downloaded to a local cache; ``model_path`` is
  the single ``*.onnx`` file in them, or the downloaded directory when there is none or several;
- the profile: ``profile.json`` in the version's artifacts, else ``profile.json`` at the root of the
  version's run's artifacts, else none;
- the card: params and metrics of the version's run; lineage from its tags (``mlflow.source.git.commit``,
  ``mlflow.source.name``, ``mlrt.data``, ``mlrt.parent``); the version's description.

Registry URIs: ``models:/`` or ``mlflow://`` use the default tracking URI (MLFLOW_TRACKING_URI);
``mlflow+http://host:5000``, ``mlflow+sqlite:///path.db``, ... name it.

A gate (the report of ``mlrt gate``) is kept on the version as the tag ``mlrt.gate`` (the card's
``gate`` section as JSON), written by ``record_gate``; ``set_alias(..., require_gate=True)`` refuses a
version without a passing one, as the filesystem registry does.

MLflow keeps no history of an alias, so promotions made through this adapter are recorded in a
registered-model tag ``mlrt.alias.<alias>.history`` (the last 50 targets), which ``rollback`` pops.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import card as cards
from . import errors
from .base import ResolvedModel, VersionInfo, check_alias, check_name, check_version, parse_ref

MODELS_PREFIX = "models:/"
HISTORY_TAG = "mlrt.alias.{alias}.history"
HISTORY_LENGTH = 50
GATE_TAG = "mlrt.gate"
_NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        raise errors.RegistryUnavailable(
            "the MLflow registry adapter needs mlflow: pip install mlflow"
        ) from exc
    return mlflow


class MlflowRegistry:
    """A Registry over MLflow's Model Registry.

    Usage::

        reg = MlflowRegistry(tracking_uri="sqlite:///mlflow.db")
        m = reg.resolve("models:/fraud@champion")     # downloads once into the cache
        reg.set_alias("fraud", "champion", "4", reason="AUC +0.02")
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        registry_uri: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        mlflow = _import_mlflow()
        self._exc_type: type[Exception] = mlflow.exceptions.MlflowException
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
        self.tracking_uri = tracking_uri
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()

    @classmethod
    def from_uri(cls, uri: str) -> MlflowRegistry:
        if uri.startswith(MODELS_PREFIX) or uri in ("models:", "mlflow:", "mlflow://"):
            return cls()
        if uri.startswith("mlflow+"):
            return cls(uri[len("mlflow+") :])
        raise errors.InvalidReference(
            f"not an MLflow registry URI: {uri!r}; use models:/, mlflow:// or mlflow+<tracking-uri>"
        )

    def __repr__(self) -> str:
        return f"MlflowRegistry({self.tracking_uri!r})"

    # -- reading -------------------------------------------------------------------------------------

    def resolve(self, ref: str) -> ResolvedModel:
        r = parse_ref(ref[len(MODELS_PREFIX) :] if ref.startswith(MODELS_PREFIX) else ref)
        if r.alias is not None:
            mv = self._call(self.client.get_model_version_by_alias, r.name, r.alias, alias=r.alias)
        else:
            mv = self._call(self.client.get_model_version, r.name, r.version, version=r.version)
        version = str(mv.version)
        local = self._download(r.name, version)
        onnx = sorted(p for p in (local / "model").rglob("*.onnx"))
        model_path = onnx[0] if len(onnx) == 1 else local / "model"
        profile = local / "profile.json"
        return ResolvedModel(
            name=r.name,
            version=version,
            model_path=model_path,
            profile_path=profile if profile.is_file() else None,
            card=self._card(mv, model_path.relative_to(local / "model").as_posix() or "."),
            alias=r.alias,
        )

    def list_models(self) -> list[str]:
        return sorted(m.name for m in self._paged(self.client.search_registered_models))

    def list_versions(self, name: str) -> list[VersionInfo]:
        by_version: dict[str, list[str]] = {}
        for alias, version in self.aliases(name).items():  # search results do not carry aliases
            by_version.setdefault(version, []).append(alias)
        versions = self._paged(self.client.search_model_versions, filter_string=f"name='{name}'")
        return sorted(
            (
                VersionInfo(
                    name,
                    str(v.version),
                    _iso(v.creation_timestamp),
                    tuple(sorted(by_version.get(str(v.version), ()))),
                )
                for v in versions
            ),
            key=lambda info: int(info.version),
        )

    def aliases(self, name: str) -> dict[str, str]:
        check_name(name)
        model = self._call(self.client.get_registered_model, name)
        return {str(a): str(v) for a, v in (model.aliases or {}).items()}

    def alias_target(self, name: str, alias: str) -> str | None:
        check_name(name)
        check_alias(alias)
        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except self._exc_type as exc:
            if getattr(exc, "error_code", None) in (_NOT_FOUND, "INVALID_PARAMETER_VALUE"):
                return None
            raise errors.RegistryUnavailable(f"MLflow: {exc}") from exc

    # -- writing -------------------------------------------------------------------------------------

    def record_gate(self, name: str, version: str, report: dict[str, Any]) -> dict[str, Any]:
        """Keep an `mlrt gate` report (its JSON, as `mlrt gate -o` writes it) on the version, as the
        card's ``gate`` section; returns that section.

        The report must be about this version (reports of schema 2 name what they judged): a
        model file whose content is the version's model (`candidate_sha256`), or a reference
        to this model that resolved to this version (``models:/churn/3``, ``churn@challenger``
        gated while it pointed here). Otherwise a passing report of any model would let
        ``require_gate`` promote this one."""
        check_name(name)
        check_version(version)
        gate = cards.card_gate(report)
        self._call(self.client.get_model_version, name, version, version=version)
        self._check_judged(name, version, report)
        value = json.dumps(gate, separators=(",", ":"), allow_nan=False)
        self._call(self.client.set_model_version_tag, name, version, GATE_TAG, value, version=version)
        return gate

    def _check_judged(self, name: str, version: str, report: dict[str, Any]) -> None:
        if int(report.get("schema", 1) or 1) < 2:
            return  # older reports do not say what they judged
        where = f"models:/{name}/{version}"
        judged = report.get("candidate")
        if report.get("candidate_sha256") is None:
            ref = str(judged or "")
            ref = ref[len(MODELS_PREFIX) :] if ref.startswith(MODELS_PREFIX) else ref
            resolved = str((report.get("versions") or {}).get("candidate"))
            try:
                same = parse_ref(ref).name == name and resolved == version
            except errors.RegistryError:
                same = False  # module:object, or anything else that is not this registry's
            if not same:
                raise errors.RegistryError(
                    f"the gate report judged {judged!r} (version {resolved}), not {where}: gate "
                    f"this version (mlrt gate --candidate {where} ...)"
                )
            return
        local = self._download(name, version) / "model"
        onnx = sorted(local.rglob("*.onnx"))
        kept = [local, *onnx] if len(onnx) == 1 else [local]
        if report["candidate_sha256"] not in {cards.artifact_sha256(p) for p in kept}:
            raise errors.RegistryError(
                f"the gate report judged another model ({judged!r}, sha256 "
                f"{str(report['candidate_sha256'])[:12]}...) than {where}'s artifacts: gate this version "
                f"(mlrt gate --candidate {where} ...)"
            )

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
        """Point ``alias`` at ``version``; with ``require_gate``, refuse a version whose ``mlrt.gate``
        tag (`record_gate`) is missing or failed."""
        check_name(name)
        check_alias(alias)
        check_version(version)
        mv = self._call(self.client.get_model_version, name, version, version=version)
        if require_gate:
            cards.require_passing_gate(name, version, _gate_of(mv))
        if self.alias_target(name, alias) == version:
            return
        history = self._history(name, alias)
        history.append(version)
        self._call(self.client.set_registered_model_alias, name, alias, version)
        self._save_history(name, alias, history)

    def rollback(self, name: str, alias: str, *, actor: str | None = None, reason: str | None = None) -> str:
        check_name(name)
        check_alias(alias)
        current = self.alias_target(name, alias)
        if current is None:
            raise errors.UnknownAlias(name, alias, self.aliases(name))
        history = self._history(name, alias)
        if not history or history[-1] != current or len(history) < 2:
            raise errors.NothingToRollBack(name, alias)
        history.pop()
        self._call(self.client.set_registered_model_alias, name, alias, history[-1])
        self._save_history(name, alias, history)
        return history[-1]

    # -- internals -----------------------------------------------------------------------------------

    def _call(
        self, fn: Any, name: str, *args: Any, alias: str | None = None, version: str | None = None
    ) -> Any:
        """Call the MLflow client, translating its errors into registry errors at this edge."""
        try:
            return fn(name, *args)
        except self._exc_type as exc:
            if getattr(exc, "error_code", None) != _NOT_FOUND and "not found" not in str(exc).lower():
                raise errors.RegistryUnavailable(f"MLflow: {exc}") from exc
            if not self._model_exists(name):
                raise errors.UnknownModel(name, self.list_models()) from exc
            if alias is not None:
                raise errors.UnknownAlias(name, alias, self.aliases(name)) from exc
            if version is not None:
                raise errors.UnknownVersion(
                    name, version, [v.version for v in self.list_versions(name)]
                ) from exc
            raise errors.RegistryError(f"MLflow: {exc}") from exc
        except OSError as exc:
            raise errors.RegistryUnavailable(f"MLflow: {exc}") from exc

    def _model_exists(self, name: str) -> bool:
        try:
            self.client.get_registered_model(name)
        except self._exc_type:
            return False
        return True

    def _paged(self, fn: Any, **kwargs: Any) -> list[Any]:
        out: list[Any] = []
        token = None
        try:
            while True:
                page = fn(max_results=200, page_token=token, **kwargs)
                out.extend(page)
                token = page.token
                if not token:
                    return out
        except self._exc_type as exc:
            raise errors.RegistryUnavailable(f"MLflow: {exc}") from exc

    def _download(self, name: str, version: str) -> Path:
        """Artifacts of a version in ``<cache>/<name>/<version>/``: ``model/`` and maybe ``profile.json``.

        Versions are immutable, so a complete download is reused; it is made in a temporary directory and
        renamed into place, so a crashed download is never mistaken for a complete one.
        """
        import mlflow.artifacts

        target = self.cache_dir / name / version
        if target.is_dir():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
        try:
            mv = self.client.get_model_version(name, version)
            uri = self.client.get_model_version_download_uri(name, version)
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(tmp / "model"), tracking_uri=self.tracking_uri
            )
            downloaded = tmp / "model"
            # download_artifacts puts a directory's content under its basename inside dst_path.
            entries = list(downloaded.iterdir())
            if len(entries) == 1 and entries[0].is_dir() and not entries[0].name.endswith(".onnx"):
                inner = entries[0]
                inner.rename(tmp / "model.tmp")
                downloaded.rmdir()
                (tmp / "model.tmp").rename(downloaded)
            in_model = downloaded / "profile.json"
            if in_model.is_file():
                shutil.copyfile(in_model, tmp / "profile.json")
            elif mv.run_id:
                self._download_run_profile(mv.run_id, tmp)
            try:
                os.rename(tmp, target)
            except OSError:
                if not target.is_dir():  # another process finished the same download first: use theirs
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except self._exc_type as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise errors.RegistryUnavailable(
                f"MLflow: cannot download {name} version {version}: {exc}"
            ) from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def _download_run_profile(self, run_id: str, tmp: Path) -> None:
        import mlflow.artifacts

        names = {f.path for f in self.client.list_artifacts(run_id)}
        if "profile.json" in names:
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="profile.json", dst_path=str(tmp), tracking_uri=self.tracking_uri
            )

    def _card(self, mv: Any, model: str) -> dict[str, Any]:
        params: dict[str, Any] = {}
        metrics: dict[str, Any] = {}
        tags: dict[str, str] = {}
        if mv.run_id:
            try:
                run = self.client.get_run(mv.run_id)
            except self._exc_type:
                run = None  # the run was deleted: the card keeps what the version itself says
            if run is not None:
                params = {k: _number(v) for k, v in run.data.params.items()}
                metrics = dict(run.data.metrics)
                tags = dict(run.data.tags)
        tags.update(mv.tags or {})
        profile_summary = None
        local_profile = self.cache_dir / mv.name / str(mv.version) / "profile.json"
        if local_profile.is_file():
            profile_summary = cards.profile_summary(local_profile)
        card = cards.build_card(
            name=mv.name,
            version=str(mv.version),
            model=model,
            created_at=_iso(mv.creation_timestamp),
            params=params,
            metrics=metrics,
            data=tags.get("mlrt.data"),
            git_commit=tags.get("mlflow.source.git.commit"),
            pipeline=tags.get("mlflow.source.name"),
            parent=tags.get("mlrt.parent"),
            profile=profile_summary,
            description=mv.description or None,
        )
        gate = _gate_of(mv)
        if gate is not None:
            card["gate"] = gate
        card["mlflow"] = {"run_id": mv.run_id, "source": mv.source}
        return card

    def _history(self, name: str, alias: str) -> list[str]:
        model = self._call(self.client.get_registered_model, name)
        raw = (model.tags or {}).get(HISTORY_TAG.format(alias=alias))
        if raw is None:
            # No history yet: the alias's current target (set outside mlrt) is the first entry.
            current = (model.aliases or {}).get(alias)
            return [str(current)] if current is not None else []
        try:
            history = json.loads(raw)
        except ValueError:
            return []
        return [str(v) for v in history] if isinstance(history, list) else []

    def _save_history(self, name: str, alias: str, history: list[str]) -> None:
        value = json.dumps(history[-HISTORY_LENGTH:], separators=(",", ":"))
        self._call(self.client.set_registered_model_tag, name, HISTORY_TAG.format(alias=alias), value)


def _gate_of(mv: Any) -> dict[str, Any] | None:
    raw = (mv.tags or {}).get(GATE_TAG)
    if raw is None:
        return None
    try:
        gate = json.loads(raw)
    except ValueError:
        raise errors.RegistryError(f"{mv.name} version {mv.version}: tag {GATE_TAG} is not JSON") from None
    return gate if isinstance(gate, dict) else None


def _number(text: str) -> Any:
    # MLflow stores params as strings; give the card numbers where they are numbers.
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if value == value and value not in (float("inf"), float("-inf")) else text


def _iso(timestamp_ms: int | None) -> str | None:
    if not timestamp_ms:
        return None
    return datetime.fromtimestamp(timestamp_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _default_cache_dir() -> Path:
    base = os.environ.get("MLRT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mlrt"
    )
    return Path(base) / "mlflow"
