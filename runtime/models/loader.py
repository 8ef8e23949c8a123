from __future__ import annotations

from ..config import ModelConfig
from .base import Model


def load_model(config: ModelConfig) -> Model:
    """Load one model with the backend its config names (or implies)."""
    if config.backend == "onnx":
        from .onnx import OnnxModel

        return OnnxModel(config)
    if config.backend == "mlflow":
        from .mlflow_dir import load_mlflow_dir

        return load_mlflow_dir(config)
    from .python import PythonModel

    return PythonModel(config)
