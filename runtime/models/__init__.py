"""Model backends behind one protocol; `load_model` picks one from a source string."""

from __future__ import annotations

from .base import Model, Tensors, TensorSpec, batchable, check_inputs, check_outputs
from .loader import load_model

__all__ = ["Model", "TensorSpec", "Tensors", "batchable", "check_inputs", "check_outputs", "load_model"]
