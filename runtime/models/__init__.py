"""Model backends behind one protocol; `load_model` picks one from a source string."""

from __future__ import annotations

from .base import Model, Tensors, TensorSpec, check_inputs
from .loader import load_model

__all__ = ["Model", "TensorSpec", "Tensors", "check_inputs", "load_model"]
