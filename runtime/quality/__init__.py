"""Model quality: metrics computed as scikit-learn computes them, in numpy (metrics.py), and
a variant's quality over its most recent labelled predictions (window.py). Shared by
ground-truth feedback (labels that arrive after the predictions, runtime/traffic/feedback.py)
and, later, CI gates."""

from __future__ import annotations

from .metrics import accuracy, log_loss, mae, rmse, roc_auc
from .window import QualityWindow

__all__ = ["QualityWindow", "accuracy", "log_loss", "mae", "rmse", "roc_auc"]
