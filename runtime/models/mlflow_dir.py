"""A model directory written by MLflow (`MLmodel` beside its files): what an MLflow registry
version downloads to, and what `mlflow.<flavor>.save_model` writes locally.

mlrt serves two of its flavors, in this order:
- `onnx` (`mlflow.onnx.log_model`): the ONNX file, on onnxruntime as any other;
- `sklearn` (`mlflow.sklearn.log_model`, the usual way a scikit-learn model reaches MLflow):
  loaded with `mlflow.sklearn.load_model`, which knows each serialization format MLflow
  writes (pickle, cloudpickle, skops with its trusted types), then served in-process as a
  Python model, so a Pipeline fitted on a DataFrame keeps its columns (runtime/models/python.py).
Any other flavor is refused with the flavors the directory has. Reading `MLmodel` and loading
the sklearn flavor need MLflow itself (the `mlrt[mlflow]` extra), imported only here.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..config import ModelConfig
from ..errors import ModelLoadError
from .base import Model

SERVED_FLAVORS = ("onnx", "sklearn")


def _flavors(config: ModelConfig) -> dict[str, Any]:
    try:
        import yaml  # MLflow's own dependency: MLmodel is YAML
    except ImportError:
        raise ModelLoadError(
            f"model '{config.name}': {config.source!r} is an MLflow model; install MLflow to serve it "
            "(pip install mlflow)"
        ) from None
    try:
        with open(os.path.join(config.source, "MLmodel"), encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"model '{config.name}': cannot read its MLmodel file: {exc}") from exc
    flavors = doc.get("flavors") if isinstance(doc, dict) else None
    if not isinstance(flavors, dict):
        raise ModelLoadError(f"model '{config.name}': its MLmodel file names no flavors")
    return flavors


def load_mlflow_dir(config: ModelConfig) -> Model:
    flavors = _flavors(config)
    onnx = flavors.get("onnx")
    if isinstance(onnx, dict) and isinstance(onnx.get("data"), str):
        from .onnx import OnnxModel

        path = os.path.join(config.source, onnx["data"])
        return OnnxModel(dataclasses.replace(config, source=path, backend="onnx"))
    if "sklearn" in flavors:
        try:
            import mlflow.sklearn
        except ImportError:
            raise ModelLoadError(
                f"model '{config.name}': {config.source!r} is an MLflow scikit-learn model; install "
                "MLflow to load it (pip install mlflow)"
            ) from None
        try:
            estimator = mlflow.sklearn.load_model(config.source)
        except Exception as exc:  # a missing module, an untrusted skops type, a version clash
            raise ModelLoadError(
                f"model '{config.name}': MLflow could not load its scikit-learn model: {exc}"
            ) from exc
        from .python import PythonModel

        return PythonModel(config, obj=estimator)
    raise ModelLoadError(
        f"model '{config.name}': the MLflow model in {config.source!r} has the flavors "
        f"{sorted(flavors)}; mlrt serves its {' or '.join(SERVED_FLAVORS)} flavor "
        "(log it with mlflow.onnx.log_model or mlflow.sklearn.log_model)"
    )
