"""A variant's quality over its most recent labelled rows: preallocated ring buffers that
`add` writes into (cheap: it runs on the event loop, a few rows at a time, and sorts
nothing) and that `summary` reads (the sorting for AUC happens there, at scrape time)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .metrics import accuracy, class_indices, log_loss, mae, one_per_row, rmse, roc_auc

__all__ = ["QualityWindow"]

KINDS = ("classifier", "regressor")


def _put(ring: np.ndarray, at: int, rows: np.ndarray) -> None:
    """Write rows into the ring from `at`, wrapping to its start; slices, not fancy
    indexing, as they are several times cheaper for a few rows."""
    end = at + len(rows)
    if end <= len(ring):
        ring[at:end] = rows
    else:
        cut = len(ring) - at
        ring[at:] = rows[:cut]
        ring[: end - len(ring)] = rows[cut:]


def _fill(ring: np.ndarray, at: int, n: int, value: float) -> None:
    """_put of one value over n rows."""
    end = at + n
    if end <= len(ring):
        ring[at:end] = value
    else:
        ring[at:] = value
        ring[: end - len(ring)] = value


class QualityWindow:
    """The last `size` (label, prediction) pairs of one model variant, and their metrics.

    A classifier's rows are class indices (true and predicted) and, when given, the class
    probabilities [rows, k]; k is fixed by the first rows that bring probabilities. A
    regressor's rows are (true value, predicted value). `labelled` counts every row ever
    added; len() the rows in the window.
    """

    def __init__(self, kind: str, size: int = 1000) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got {size!r}")
        self.kind = kind
        self.size = int(size)
        self.labelled = 0
        self._classifier = kind == "classifier"
        dtype = np.int64 if self._classifier else np.float64
        self._true = np.empty(self.size, dtype)
        self._pred = np.empty(self.size, dtype)
        # [size, k] from the first add with probabilities; NaN marks rows that came without.
        self._proba: np.ndarray | None = None
        self._next = 0  # where the next row goes

    def __len__(self) -> int:
        return min(self.labelled, self.size)

    @property
    def classes(self) -> int | None:
        """k, once rows with probabilities were added."""
        return None if self._proba is None else self._proba.shape[1]

    def add(
        self, y_true: ArrayLike, *, predicted: ArrayLike | None = None, proba: ArrayLike | None = None
    ) -> None:
        """Add n labelled rows (only the last `size` stay). All or nothing: a bad row
        (non-finite, a class out of range, a length or class-count mismatch) refuses the
        whole call with ValueError and leaves the window as it was.

        Classifier: `y_true` class indices, and `predicted` class indices or `proba` [n, k]
        (then the predicted class is its argmax), or both. Regressor: `y_true` and
        `predicted` numbers.
        """
        if self._classifier:
            y, pred, p = self._classified(y_true, predicted, proba)
        else:
            if proba is not None:
                raise ValueError("a regressor's rows have no class probabilities")
            y, pred = self._regressed(y_true, predicted)
            p = None
        n = len(y)
        if n == 0:
            return
        self.labelled += n
        if n > self.size:
            y, pred, n = y[-self.size :], pred[-self.size :], self.size
            if p is not None:
                p = p[-self.size :]
        if p is not None and self._proba is None:
            self._proba = np.full((self.size, p.shape[1]), np.nan)
        at = self._next
        _put(self._true, at, y)
        _put(self._pred, at, pred)
        if self._proba is not None:
            if p is not None:
                _put(self._proba, at, p)
            else:
                _fill(self._proba, at, n, np.nan)
        self._next = (at + n) % self.size

    def _classified(
        self, y_true: ArrayLike, predicted: ArrayLike | None, proba: ArrayLike | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        k = self.classes
        p = None
        if proba is not None:
            p = np.asarray(proba, dtype=np.float64)
            if p.ndim != 2 or p.shape[1] < 2:
                raise ValueError(f"probabilities must be [rows, classes >= 2], got shape {p.shape}")
            if k is not None and p.shape[1] != k:
                raise ValueError(f"{p.shape[1]} classes, where earlier rows had {k}")
            if np.count_nonzero(np.isfinite(p)) != p.size:  # half the cost of .all() on a few rows
                raise ValueError("probabilities must be finite (NaN or infinity found); no row added")
            k = p.shape[1]
        elif predicted is None:
            raise ValueError("a classifier's rows need a predicted class or probabilities")
        y = class_indices(y_true, "labels", k)
        pred = p.argmax(axis=1) if predicted is None else class_indices(predicted, "predictions", k)
        for got in (len(pred), len(y) if p is None else len(p)):
            if got != len(y):
                raise ValueError(f"{len(y)} labels against {got} predictions")
        return y, pred, p

    def _regressed(self, y_true: ArrayLike, predicted: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
        if predicted is None:
            raise ValueError("a regressor's rows need predictions")
        y, pred = one_per_row(y_true, "add", "labels"), one_per_row(predicted, "add", "predictions")
        if y.dtype.kind not in "iubf" or pred.dtype.kind not in "iubf":
            raise ValueError(
                f"a regressor's labels and predictions must be numbers, not {y.dtype}, {pred.dtype}"
            )
        y, pred = y.astype(np.float64, copy=False), pred.astype(np.float64, copy=False)
        if len(y) != len(pred):
            raise ValueError(f"{len(y)} labels against {len(pred)} predictions")
        if np.count_nonzero(np.isfinite(y)) + np.count_nonzero(np.isfinite(pred)) != 2 * len(y):
            raise ValueError("labels and predictions must be finite (NaN or infinity found); no row added")
        return y, pred

    def _ordered(self, ring: np.ndarray) -> np.ndarray:
        """The window's rows, oldest first (so sums run in the order scikit-learn's would
        over the same rows)."""
        if self.labelled < self.size:
            return ring[: self.labelled]
        return np.concatenate((ring[self._next :], ring[: self._next]))

    def summary(self) -> dict[str, float | None]:
        """The metrics over the rows in the window; None where empty or undefined.

        Classifier: accuracy, log_loss and auc; the last two need every row in the window
        to have come with probabilities, and log_loss needs them within [0, 1] (a model's
        class scores may be logits: AUC ranks any scores, log loss cannot).
        Regressor: mae and rmse.
        """
        if not self._classifier:
            if not len(self):
                return {"mae": None, "rmse": None}
            t, v = self._ordered(self._true), self._ordered(self._pred)
            return {"mae": mae(t, v), "rmse": rmse(t, v)}
        out: dict[str, float | None] = {"accuracy": None, "log_loss": None, "auc": None}
        if not len(self):
            return out
        y = self._ordered(self._true)
        out["accuracy"] = accuracy(y, self._ordered(self._pred))
        if self._proba is not None:
            p = self._ordered(self._proba)
            if not np.isnan(p).any():
                if p.min() >= 0 and p.max() <= 1:
                    out["log_loss"] = log_loss(y, p)
                out["auc"] = roc_auc(y, p)
        return out
