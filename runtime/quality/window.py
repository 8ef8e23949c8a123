"""A variant's quality over its most recent labelled rows: a ring of preallocated arrays
that `add` writes into (cheap: it runs on the event loop, a few rows at a time) and that
`summary` reads (the sorting for AUC happens there, at scrape time)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .metrics import accuracy, log_loss, mae, rmse, roc_auc

__all__ = ["QualityWindow"]

KINDS = ("classifier", "regressor")


class QualityWindow:
    """The last `size` (label, prediction) pairs of one model variant."""

    def __init__(self, kind: str, size: int = 1000) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be an integer >= 1, got {size!r}")
        self.kind = kind
        self.size = size
        self.labelled = 0  # rows ever added
        dtype = np.int64 if kind == "classifier" else np.float64
        self._true = np.zeros(size, dtype)
        self._pred = np.zeros(size, dtype)
        self._proba: np.ndarray | None = None  # [size, k], from the first add with probabilities
        self._with_proba = 0  # rows in the window that came with probabilities
        self._next = 0

    def __len__(self) -> int:
        return min(self.labelled, self.size)

    def add(
        self, y_true: ArrayLike, *, predicted: ArrayLike | None = None, proba: ArrayLike | None = None
    ) -> None:
        """Add n labelled rows; all or nothing (a bad row refuses the call)."""
        y = np.asarray(y_true).reshape(-1)
        n = len(y)
        p = None if proba is None else np.asarray(proba, dtype=np.float64)
        if self.kind == "classifier":
            if p is not None:
                if p.ndim != 2 or len(p) != n or p.shape[1] < 2:
                    raise ValueError(f"probabilities must be [{n}, classes >= 2], got shape {p.shape}")
                if self._proba is not None and p.shape[1] != self._proba.shape[1]:
                    raise ValueError(f"{p.shape[1]} classes, where earlier rows had {self._proba.shape[1]}")
                if not np.isfinite(p).all():
                    raise ValueError("probabilities must be finite")
            if predicted is None:
                if p is None:
                    raise ValueError("a classifier's rows need a predicted class or probabilities")
                pred = p.argmax(axis=1)
            else:
                pred = np.asarray(predicted).reshape(-1)
            if y.dtype.kind not in "iub" or pred.dtype.kind not in "iub":
                raise ValueError("a classifier's labels and predictions must be class indices")
            k = p.shape[1] if p is not None else None
            if (y < 0).any() or (k is not None and (y >= k).any()):
                raise ValueError(f"true classes must be indices 0..{(k or 1) - 1}")
        else:
            if predicted is None:
                raise ValueError("a regressor's rows need predictions")
            pred = np.asarray(predicted, dtype=np.float64).reshape(-1)
            y = y.astype(np.float64)
            if not (np.isfinite(y).all() and np.isfinite(pred).all()):
                raise ValueError("labels and predictions must be finite numbers")
        if len(pred) != n:
            raise ValueError(f"{n} labels against {len(pred)} predictions")
        if n == 0:
            return
        self.labelled += n
        if n > self.size:  # only the last `size` rows can stay
            y, pred, n = y[-self.size :], pred[-self.size :], self.size
            p = p[-self.size :] if p is not None else None
        if p is not None and self._proba is None:
            self._proba = np.zeros((self.size, p.shape[1]))
        at = (self._next + np.arange(n)) % self.size
        self._true[at] = y
        self._pred[at] = pred
        if self._proba is not None:
            if p is not None:
                self._proba[at] = p
            else:
                self._proba[at] = np.nan  # rows without probabilities: no log loss or AUC for them
        self._next = int((self._next + n) % self.size)

    def _rows(self) -> slice | np.ndarray:
        if self.labelled < self.size:
            return slice(0, self.labelled)
        return (self._next + np.arange(self.size)) % self.size  # oldest first

    def summary(self) -> dict[str, float | None]:
        """The metrics over the rows in the window (None where undefined or empty)."""
        if self.kind == "regressor":
            if not len(self):
                return {"mae": None, "rmse": None}
            rows = self._rows()
            return {
                "mae": mae(self._true[rows], self._pred[rows]),
                "rmse": rmse(self._true[rows], self._pred[rows]),
            }
        out: dict[str, float | None] = {"accuracy": None, "log_loss": None, "auc": None}
        if not len(self):
            return out
        rows = self._rows()
        y = self._true[rows]
        out["accuracy"] = accuracy(y, self._pred[rows])
        if self._proba is not None:
            p = self._proba[rows]
            if not np.isnan(p).any():
                out["log_loss"] = log_loss(y, p)
                out["auc"] = roc_auc(y, p)
        return out
