"""A classifier's labels, brought to one form wherever they come from, and mapped to the
columns of its scores.

The same class arrives as `"setosa"` in a client's JSON feedback and in a data file's text
column, and as `b"setosa"` from the model (mlrt holds BYTES tensors as bytes): text labels
are compared as str. Which column of the scores is which class is the model's `classes`
(scikit-learn's `classes_`, or the class labels of an ONNX classifier's node), unless the
user lists them; without either, labels must be the column indices themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .metrics import class_indices

__all__ = ["ClassIndex", "as_labels", "plain_classes"]


def _text(v: Any) -> Any:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def as_labels(a: np.ndarray) -> np.ndarray:
    """`a` with text as str: bytes elements (a model's BYTES output) decoded, anything else
    unchanged (the same array when nothing is bytes)."""
    if a.dtype.kind not in "OS":
        return a
    values = a.tolist()
    if a.dtype.kind == "O" and not any(isinstance(v, bytes) for v in values):
        return a
    return np.array([_text(v) for v in values], dtype=object)


def plain_classes(classes: Any) -> list[Any] | None:
    """A model's class labels in column order as plain Python values (numpy scalars and
    bytes become int, float, bool and str), or None when they are not a flat sequence of
    distinct labels."""
    if classes is None:
        return None
    values = [_text(v) for v in (classes.tolist() if isinstance(classes, np.ndarray) else list(classes))]
    try:
        distinct = len(set(values)) == len(values)
    except TypeError:  # unhashable: not labels
        return None
    return values if distinct and values else None


class ClassIndex:
    """Labels to column indices: looked up among `classes` (the labels in column order)
    when known, else taken as indices themselves (integers 0..k-1, or booleans)."""

    def __init__(self, classes: Sequence[Any] | None, hint: str, *, listed: bool = False) -> None:
        """`hint`: where the user lists the classes, for errors; `listed`: they did (else
        `classes` are the model's own)."""
        self.classes = plain_classes(classes)
        self._index = {c: i for i, c in enumerate(self.classes)} if self.classes is not None else None
        self._hint = hint
        self._listed = listed

    def __call__(self, labels: np.ndarray, what: str) -> np.ndarray:
        if self._index is None:
            if labels.dtype.kind in "OSU":
                shown = as_labels(labels).tolist()[:3]
                raise ValueError(
                    f"{what} {shown} is not a class index (0 .. k-1), and the model does not say "
                    f"which column of its scores is which class; {self._hint}"
                )
            try:
                return class_indices(labels, what)
            except ValueError:
                shown = labels.tolist()[:3]
                raise ValueError(f"{what} {shown} is not a class index (0 .. k-1); {self._hint}") from None
        index = self._index
        values = as_labels(labels).tolist()
        try:
            return np.fromiter((index[v] for v in values), np.int64, len(values))
        except (KeyError, TypeError):
            bad = list(dict.fromkeys(v for v in values if not _known(index, v)))
            if self._listed:
                raise ValueError(f"{what} {bad[:3]} not among the classes listed, {self.classes}") from None
            raise ValueError(
                f"{what} {bad[:3]} not among the model's classes {self.classes}; {self._hint}"
            ) from None


def _known(index: dict[Any, int], v: Any) -> bool:
    try:
        return v in index
    except TypeError:
        return False
