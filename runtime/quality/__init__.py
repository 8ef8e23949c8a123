"""Model quality: metrics computed as scikit-learn computes them, in numpy (metrics.py), and
a variant's quality over its most recent labelled predictions (window.py). Shared by
ground-truth feedback (labels that arrive after the predictions, runtime/traffic/feedback.py)
and the CI gate (runtime/gates); what a model's prediction is among its outputs
(prediction.py)."""

from __future__ import annotations

from .metrics import accuracy, f1, log_loss, mae, rmse, roc_auc
from .window import QualityWindow

__all__ = ["QualityWindow", "accuracy", "f1", "log_loss", "mae", "rmse", "roc_auc"]
