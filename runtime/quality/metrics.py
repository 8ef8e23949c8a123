"""Model-quality metrics in numpy, computed the way scikit-learn computes them (the tests
compare them with it), so that a figure mlrt reports equals one a data scientist gets from
the same rows: accuracy, log loss and ROC AUC for classifiers, MAE and RMSE for regressors.

scikit-learn is not a dependency of the runtime; these are a few lines each.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["accuracy", "log_loss", "mae", "rmse", "roc_auc"]


def _pair(y_true: ArrayLike, y_pred: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(y_true), np.asarray(y_pred)
    if len(a) != len(b):
        raise ValueError(f"{what}: {len(a)} true values against {len(b)} predictions")
    if len(a) == 0:
        raise ValueError(f"{what}: no rows")
    return a, b


def _classes(y_true: ArrayLike, proba: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    y, p = _pair(y_true, proba, what)
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{what}: probabilities must be [rows, classes >= 2], got shape {p.shape}")
    if y.dtype.kind not in "iub" or y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"{what}: true classes must be indices 0..{p.shape[1] - 1}")
    return y.astype(np.int64), p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    a, b = _pair(y_true, y_pred, "accuracy")
    return float(np.mean(a == b))


def log_loss(y_true: ArrayLike, proba: ArrayLike) -> float:
    """Mean negative log of the probability given to the true class, clipped to
    [eps, 1 - eps] (eps of float64), as scikit-learn does; rows are not renormalised."""
    y, p = _classes(y_true, proba, "log_loss")
    if p.max() > 1 or p.min() < 0:
        raise ValueError("log_loss: probabilities must lie in [0, 1]")
    eps = np.finfo(np.float64).eps
    picked = np.clip(p[np.arange(len(y)), y], eps, 1 - eps)
    return float(-np.mean(np.log(picked)))


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """Mann-Whitney U with average ranks for ties: the probability that a positive row
    scores above a negative one (ties count a half)."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="mergesort")
    s = score[order]
    # Average rank (1-based) of each run of equal scores.
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc(y_true: ArrayLike, proba: ArrayLike) -> float | None:
    """Binary: the AUC of the second column's score. More classes: the mean of each class's
    one-vs-rest AUC. None where undefined (a class never or always true)."""
    y, p = _classes(y_true, proba, "roc_auc")
    if p.shape[1] == 2:
        return _binary_auc(y == 1, p[:, 1])
    aucs = [_binary_auc(y == k, p[:, k]) for k in range(p.shape[1])]
    if any(a is None for a in aucs):
        return None
    return float(np.mean(aucs))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    a, b = _pair(y_true, y_pred, "mae")
    return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    a, b = _pair(y_true, y_pred, "rmse")
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))
