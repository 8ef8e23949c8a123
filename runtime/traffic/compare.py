"""How a shadow model's answers are compared with the primary's, for the same requests.

- Agreement, for classifiers: outputs holding labels (integers, strings, booleans) agree
  on a row when every element of that row is equal. A model with no label output but a
  2-D float output of several columns (class scores) is compared by each row's argmax.
  Models with neither (regressors) are not compared for agreement.
- Absolute differences, for scores: every element of every float output the two models
  share (same name, same shape) adds |shadow - primary| to a histogram.
- Two models that share no output name (a scikit-learn model's `predict` and
  `predict_proba` beside its skl2onnx export's `label` and `probabilities`) are compared by
  what each one's prediction is (runtime/quality/prediction.py, the rule feedback and gates
  use): their labels for agreement, their class scores (of equal width) for differences.

The functions take many requests' outputs at once: the comparisons of one event-loop
turn are made together, so the cost per request is a few list appends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..quality.prediction import prediction_spec

__all__ = ["ABS_DIFF_BUCKETS", "Comparison", "compare"]

#: Upper bounds of the abs-diff histogram's buckets: from float32 rounding (1e-6) to a
#: different answer (> 0.5 on a probability).
ABS_DIFF_BUCKETS = (1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)

_Outputs = Mapping[str, np.ndarray]
_Pair = tuple[str, str]  # an output of the primary, and the shadow's to compare it with


@dataclass
class Comparison:
    compared: int = 0  # rows compared for agreement
    agreed: int = 0  # of those, rows on which both models agree
    diff_counts: np.ndarray | None = None  # abs diffs per ABS_DIFF_BUCKETS bucket (+Inf last)
    diff_sum: float = 0.0


def _is_label(a: np.ndarray) -> bool:
    return a.dtype.kind in "iubUSO"


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1) if a.ndim else a.reshape(1, 1)


def _stack(parts: Sequence[np.ndarray]) -> np.ndarray | None:
    """One array of many requests' outputs, or None where their shapes cannot stack."""
    try:
        return np.concatenate([_rows(p) for p in parts]) if len(parts) > 1 else _rows(parts[0])
    except ValueError:
        return None


def compare(pairs: Sequence[tuple[_Outputs, _Outputs]]) -> Comparison:
    """Compare (primary, shadow) outputs of several requests.

    Requests are compared in groups of the same output names on both sides: an endpoint's
    primary answers come from whichever variant served each request (a Python model's
    `predict_proba` beside its ONNX export's `probabilities`), and one group's names decided
    for all would fail on the others and lose the whole turn's comparisons."""
    result = Comparison()
    groups: dict[tuple[tuple[str, ...], tuple[str, ...]], list[tuple[_Outputs, _Outputs]]] = {}
    for p, s in pairs:
        groups.setdefault((tuple(p), tuple(s)), []).append((p, s))
    for group in groups.values():
        part = _compare_group(group)
        result.compared += part.compared
        result.agreed += part.agreed
        result.diff_sum += part.diff_sum
        if part.diff_counts is not None:
            result.diff_counts = (
                part.diff_counts if result.diff_counts is None else result.diff_counts + part.diff_counts
            )
    return result


def _compare_group(pairs: Sequence[tuple[_Outputs, _Outputs]]) -> Comparison:
    """compare() for requests whose outputs have the same names on each side."""
    result = Comparison()
    if not pairs:
        return result
    # A shadow that answers with other names or shapes than the primary is compared on
    # what they share; each name is decided on the first pair.
    first_p, first_s = pairs[0]
    shared = [
        n for n in first_p if n in first_s and np.shape(first_p[n])[1:] == np.shape(first_s[n])[1:]
    ]
    labels = [(n, n) for n in shared if _is_label(first_p[n]) and _is_label(first_s[n])]
    scores = [(n, n) for n in shared if first_p[n].dtype.kind == "f" and first_s[n].dtype.kind == "f"]
    if not labels and not scores:
        labels, scores = _by_prediction(first_p, first_s)
    for pn, sn in scores:
        p = _stack([pair[0][pn] for pair in pairs])
        s = _stack([pair[1][sn] for pair in pairs])
        if p is None or s is None or p.shape != s.shape:
            continue
        d = np.abs(s.astype(np.float64) - p).ravel()
        d = d[~np.isnan(d)]
        # Bucket i counts diffs <= ABS_DIFF_BUCKETS[i], as Prometheus' `le` says.
        counts = np.bincount(np.searchsorted(ABS_DIFF_BUCKETS, d), minlength=len(ABS_DIFF_BUCKETS) + 1)
        result.diff_counts = counts if result.diff_counts is None else result.diff_counts + counts
        result.diff_sum += float(d.sum())
    agree = _agreement(pairs, labels, scores)
    if agree is not None:
        result.compared = int(agree.size)
        result.agreed = int(agree.sum())
    return result


def _by_prediction(primary: _Outputs, shadow: _Outputs) -> tuple[list[_Pair], list[_Pair]]:
    """(label pairs, score pairs) of two models without a shared output: each one's
    prediction by the rule feedback and gates use, paired where both have one of a kind
    with as many values per row (a regressor's value counts as its scores)."""
    try:
        p, s = prediction_spec(primary), prediction_spec(shadow)
    except ValueError:  # outputs that are no prediction the rule knows: nothing to compare
        return [], []

    def width(a: np.ndarray) -> int:
        return _rows(a).shape[1]

    labels = [(p.label, s.label)] if p.label is not None and s.label is not None else []
    scores = []
    for pn, sn in ((p.scores, s.scores), (p.value, s.value)):
        if pn is not None and sn is not None and width(primary[pn]) == width(shadow[sn]):
            scores.append((pn, sn))
    return labels, scores


def _agreement(
    pairs: Sequence[tuple[_Outputs, _Outputs]], labels: list[_Pair], scores: list[_Pair]
) -> np.ndarray | None:
    """Per row: do the two models give the same class?"""
    if labels:
        agree = None
        for pn, sn in labels:
            p = _stack([pair[0][pn] for pair in pairs])
            s = _stack([pair[1][sn] for pair in pairs])
            if p is None or s is None or p.shape != s.shape:
                return None
            rows = (p == s).all(axis=1)
            agree = rows if agree is None else agree & rows
        return agree
    for pn, sn in scores:  # class scores: the argmax of each row
        first = pairs[0][0][pn]
        if first.ndim == 2 and first.shape[1] > 1:
            p = _stack([pair[0][pn] for pair in pairs])
            s = _stack([pair[1][sn] for pair in pairs])
            if p is None or s is None or p.shape != s.shape:
                return None
            return np.argmax(p, axis=1) == np.argmax(s, axis=1)
    return None
