"""Model-quality metrics in numpy, computed the way scikit-learn 1.9 computes them (the tests
compare them with it), so that a figure mlrt reports equals one a data scientist gets from
the same rows: accuracy, log loss and ROC AUC for classifiers, MAE and RMSE for regressors.

scikit-learn is not a dependency of the runtime; each metric is a few vectorised lines.

Where these deliberately part from scikit-learn (each function's docstring says so):
- nothing here warns: a figure that scikit-learn computes with a warning (rows of
  probabilities that do not sum to 1, for log loss) is computed the same and returned
  quietly, as a metrics scrape must not emit warnings;
- an undefined AUC (a class never, or always, true) is None where scikit-learn warns and
  returns nan;
- multiclass AUC accepts any finite scores (one-vs-rest ranks each class's column on its
  own, so they need not be probabilities) where scikit-learn raises unless rows sum to 1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["accuracy", "f1", "log_loss", "mae", "rmse", "roc_auc"]

# The float dtypes scikit-learn keeps as given; any other input is computed in float64.
_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def one_per_row(x: ArrayLike, what: str, name: str = "values") -> np.ndarray:
    """x as a 1-D array: one value per row ([n] or [n, 1])."""
    a = np.asarray(x)
    if a.ndim == 2 and a.shape[1] == 1:  # a model's [n, 1] output is one value per row
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{what}: {name} must be one value per row, got shape {a.shape}")
    return a


def _pair(y_true: ArrayLike, y_pred: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = one_per_row(y_true, what, "y_true"), one_per_row(y_pred, what, "the predictions")
    if len(a) != len(b):
        raise ValueError(f"{what}: {len(a)} true values against {len(b)} predictions")
    if len(a) == 0:
        raise ValueError(f"{what}: no rows")
    return a, b


def _finite(a: np.ndarray, what: str, name: str) -> None:
    if a.dtype.kind in "fc" and not np.isfinite(a).all():
        raise ValueError(f"{what}: {name} must be finite (NaN or infinity found)")


def _float_dtype(*inputs: ArrayLike) -> np.dtype:
    """The dtype scikit-learn computes in: the widest float dtype among the inputs that
    carry one (arrays, not lists), else float64. float32 inputs then give float32 sums,
    rounded exactly as scikit-learn's."""
    floats = [np.asarray(x).dtype for x in inputs if hasattr(x, "dtype")]
    floats = [d for d in floats if d.kind == "f"]
    dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
    return dtype if dtype in _FLOATS else np.dtype(np.float64)


def class_indices(y: ArrayLike, what: str, k: int | None = None) -> np.ndarray:
    """Class labels as int64 indices 0..k-1 (any k when None): integers, booleans, or
    floats with whole values (labels that went through JSON)."""
    a = one_per_row(y, what, "the classes")
    end = 2**62 if k is None else k
    if a.dtype.kind in "iub":
        a = a.astype(np.int64, copy=False)
        # One comparison for both ends (a negative index seen unsigned is huge): this runs
        # on the event loop for every labelled batch, where each numpy call costs ~1 us.
        bad = np.count_nonzero(a.view(np.uint64) >= end)
    elif a.dtype.kind == "f":
        _finite(a, what, "the classes")
        if not (np.floor(a) == a).all():
            raise ValueError(f"{what}: classes must be whole numbers (class indices)")
        # Checked before the cast, so that a huge float cannot wrap into a valid index.
        bad = len(a) and (a.min() < 0 or a.max() >= end)
    else:
        raise ValueError(f"{what}: classes must be class indices (integers), got dtype {a.dtype}")
    if bad:
        top = "k-1" if k is None else k - 1
        raise ValueError(f"{what}: classes must be indices 0..{top}, got {a.min()}..{a.max()}")
    return a.astype(np.int64, copy=False)


def _classes(y_true: ArrayLike, proba: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{what}: probabilities must be [rows, classes >= 2], got shape {p.shape}")
    if p.dtype not in _FLOATS:
        if p.dtype.kind not in "iubf":
            raise ValueError(f"{what}: probabilities must be numbers, got dtype {p.dtype}")
        p = p.astype(np.float64)
    y = one_per_row(y_true, what, "y_true")
    if len(y) != len(p):
        raise ValueError(f"{what}: {len(y)} true values against {len(p)} predictions")
    if len(y) == 0:
        raise ValueError(f"{what}: no rows")
    _finite(p, what, "probabilities")
    return class_indices(y, what, p.shape[1]), p


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """The share of rows whose prediction equals the true label (sklearn accuracy_score).
    Labels of any type compared with ==, one per row."""
    a, b = _pair(y_true, y_pred, "accuracy")
    if (a.dtype.kind in "biuf") != (b.dtype.kind in "biuf"):
        raise ValueError(f"accuracy: labels of different types ({a.dtype} and {b.dtype}) never match")
    _finite(a, "accuracy", "y_true")
    _finite(b, "accuracy", "the predictions")
    return float(np.count_nonzero(a == b) / len(a))


def f1(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """F1 score: 2 TP / (2 TP + FP + FN). When every label is 0 or 1 (or a boolean), that of
    class 1, as `sklearn.metrics.f1_score(y_true, y_pred)`; otherwise the unweighted mean
    over every label seen in either, as `f1_score(..., average="macro")`. A class with no
    true and no predicted row scores 0 (scikit-learn's zero_division default, without its
    warning)."""
    a, b = _pair(y_true, y_pred, "f1")
    if (a.dtype.kind in "biuf") != (b.dtype.kind in "biuf"):
        raise ValueError(f"f1: labels of different types ({a.dtype} and {b.dtype}) never match")
    _finite(a, "f1", "y_true")
    _finite(b, "f1", "the predictions")
    labels = np.union1d(a, b)
    binary = a.dtype.kind != "O" and bool(np.isin(labels, (0, 1)).all())
    classes = np.array([1]) if binary else labels
    tp = np.array([np.count_nonzero((a == c) & (b == c)) for c in classes], dtype=np.float64)
    true = np.array([np.count_nonzero(a == c) for c in classes], dtype=np.float64)
    predicted = np.array([np.count_nonzero(b == c) for c in classes], dtype=np.float64)
    denominator = true + predicted  # = 2 TP + FP + FN
    scores = np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1.0), 0.0)
    return float(scores[0]) if binary else float(np.mean(scores))


def log_loss(y_true: ArrayLike, proba: ArrayLike) -> float:
    """Mean negative log of the probability given to the true class, as
    `sklearn.metrics.log_loss(y_true, proba, labels=range(k))`.

    As scikit-learn 1.9: probabilities are clipped to [eps, 1 - eps], eps the machine
    epsilon of proba's float dtype (a probability of 0 for the true class costs
    -log(2.2e-16) = 36.04 in float64, 15.9 in float32), and computed in that dtype;
    values outside [0, 1] are refused; rows are not renormalised. Unlike scikit-learn, rows
    that do not sum to 1 give the same figure without a warning.
    """
    y, p = _classes(y_true, proba, "log_loss")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"log_loss: probabilities must lie in [0, 1], got {p.min()}..{p.max()}")
    eps = np.finfo(p.dtype).eps
    picked = np.clip(p[np.arange(len(y)), y], eps, 1 - eps)
    return float(-np.mean(np.log(picked)))


def _auc_columns(positive: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Each column's AUC (nan where its class is never or always true): the Mann-Whitney
    U over average ranks, i.e. the chance that a positive row scores above a negative one,
    ties counting a half. One argsort for all columns: O(n log n) each."""
    n, k = score.shape
    order = np.argsort(score, axis=0, kind="stable")
    s = np.take_along_axis(score, order, axis=0)
    # Runs of equal scores, per column; column-major so a run never spans two columns.
    new = np.ones((n, k), dtype=bool)
    new[1:] = s[1:] != s[:-1]
    starts = np.flatnonzero(new.ravel(order="F"))
    ends = np.append(starts[1:], n * k)
    first_row = starts % n
    average_rank = first_row + (ends - starts + 1) / 2.0  # 1-based mean of the run's ranks
    ranks = np.repeat(average_rank, ends - starts).reshape((n, k), order="F")
    pos_sorted = np.take_along_axis(positive, order, axis=0)
    rank_sum = (ranks * pos_sorted).sum(axis=0)
    n_pos = positive.sum(axis=0).astype(np.float64)
    n_neg = n - n_pos
    pairs = n_pos * n_neg
    u = rank_sum - n_pos * (n_pos + 1) / 2.0
    return np.where(pairs > 0, u / np.where(pairs > 0, pairs, 1.0), np.nan)


def roc_auc(y_true: ArrayLike, proba: ArrayLike) -> float | None:
    """Area under the ROC curve, ties in the scores counting a half (average ranks).

    Two classes: the AUC of proba[:, 1], as `sklearn.metrics.roc_auc_score(y_true,
    proba[:, 1])`. More: the unweighted mean of each class's one-vs-rest AUC, as
    `roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=range(k))`.
    None where undefined: a class never true, or (so the others are never true) the only
    one — scikit-learn warns and returns nan. Any finite scores are accepted, also rows
    that do not sum to 1, which scikit-learn refuses for more than two classes.
    """
    y, p = _classes(y_true, proba, "roc_auc")
    p = p.astype(np.float64, copy=False)  # ranks are the same in any float dtype
    k = p.shape[1]
    if k == 2:
        aucs = _auc_columns((y == 1)[:, None], p[:, 1:])
    else:
        aucs = _auc_columns(y[:, None] == np.arange(k), p)
    if np.isnan(aucs).any():
        return None
    return float(aucs[0]) if k == 2 else float(np.mean(aucs))


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Mean absolute error (sklearn mean_absolute_error), computed in the float dtype
    scikit-learn would use (float32 when both inputs are float32 arrays)."""
    a, b = _pair(y_true, y_pred, "mae")
    dtype = _float_dtype(y_true, y_pred)
    a, b = _numbers(a, b, dtype, "mae")
    return float(np.mean(np.abs(b - a)))


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Root mean squared error (sklearn root_mean_squared_error), computed in the float
    dtype scikit-learn would use (float32 when both inputs are float32 arrays)."""
    a, b = _pair(y_true, y_pred, "rmse")
    dtype = _float_dtype(y_true, y_pred)
    a, b = _numbers(a, b, dtype, "rmse")
    e = b - a
    with np.errstate(over="ignore"):
        mean_square = np.mean(e * e)
    if np.isfinite(mean_square) or not np.isfinite(e).all():
        return float(np.sqrt(mean_square))
    # Squares past the float range (a label of 1e300; 1e20 in float32) made the RMSE
    # infinite: scaled by the largest error first, the same value stays finite.
    scale = np.max(np.abs(e))
    return float(scale * np.sqrt(np.mean((e / scale) ** 2)))


def _numbers(a: np.ndarray, b: np.ndarray, dtype: np.dtype, what: str) -> tuple[np.ndarray, np.ndarray]:
    if a.dtype.kind not in "iubf" or b.dtype.kind not in "iubf":
        raise ValueError(f"{what}: values must be numbers, got dtypes {a.dtype} and {b.dtype}")
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    _finite(a, what, "y_true")
    _finite(b, what, "the predictions")
    return a, b
