"""Model quality: metrics computed as scikit-learn computes them (metrics.py) and a
variant's quality over its most recent labelled rows (window.py). Shared by ground-truth
feedback (runtime/traffic/feedback.py) and, later, the CI gates."""

from __future__ import annotations

from .metrics import accuracy, log_loss, mae, rmse, roc_auc
from .window import QualityWindow

__all__ = ["QualityWindow", "accuracy", "log_loss", "mae", "rmse", "roc_auc"]
