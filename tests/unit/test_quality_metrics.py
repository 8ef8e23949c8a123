"""runtime/quality against scikit-learn on the same rows: every metric, ties in the scores,
probabilities of exactly 0 and 1, undefined AUCs, and the sliding window."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from runtime.quality import QualityWindow, accuracy, log_loss, mae, rmse, roc_auc


def sk_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    with warnings.catch_warnings():  # 1.9 renamed y_pred to y_proba and warns about the old name
        warnings.simplefilter("ignore", FutureWarning)
        return float(sk.log_loss(y, p, labels=list(range(p.shape[1]))))


def sk_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """scikit-learn's AUC; None where it calls it undefined (a class absent, or alone):
    depending on the version it raises, or warns and returns nan."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if p.shape[1] == 2:
                value = float(sk.roc_auc_score(y, p[:, 1]))
            else:
                labels = list(range(p.shape[1]))
                value = float(sk.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels))
        except ValueError:
            return None
    return None if np.isnan(value) else value


@st.composite
def classified(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    k = draw(st.integers(2, 5))
    n = draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    # Coarse scores make ties; some rows are certain (a 1 and zeros).
    raw = rng.integers(0, 4, (n, k)).astype(float) + 1e-3
    p = raw / raw.sum(axis=1, keepdims=True)
    certain = rng.random(n) < 0.2
    p[certain] = np.eye(k)[rng.integers(0, k, certain.sum())]
    return y, p


@settings(max_examples=300, deadline=None)
@given(classified())
def test_classifier_metrics_equal_scikit_learn(case: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = case
    pred = p.argmax(axis=1)
    assert accuracy(y, pred) == pytest.approx(sk.accuracy_score(y, pred), rel=1e-12)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p), rel=1e-9)
    expect = sk_auc(y, p)
    got = roc_auc(y, p)
    assert (got is None) == (expect is None)
    if expect is not None:
        assert got == pytest.approx(expect, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 80), st.integers(0, 2**32 - 1))
def test_regressor_metrics_equal_scikit_learn(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, pred = rng.normal(100, 50, n), rng.normal(100, 50, n).round(1)
    assert mae(y, pred) == pytest.approx(sk.mean_absolute_error(y, pred), rel=1e-12)
    assert rmse(y, pred) == pytest.approx(sk.root_mean_squared_error(y, pred), rel=1e-12)


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="3 true values against 2 predictions"):
        accuracy([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="no rows"):
        mae([], [])
    with pytest.raises(ValueError, match="indices 0..1"):
        log_loss([0, 2], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match=r"\[rows, classes >= 2\]"):
        roc_auc([0, 1], [0.2, 0.8])
    assert roc_auc([1, 1], [[0.3, 0.7], [0.2, 0.8]]) is None


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 50), st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(0, 2**32 - 1))
def test_the_window_holds_exactly_the_last_rows(size: int, chunks: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = QualityWindow("classifier", size)
    r = QualityWindow("regressor", size)
    ys, ps, ts, vs = [], [], [], []
    for n in chunks:
        y = rng.integers(0, 3, n)
        p = rng.dirichlet(np.ones(3), n)
        w.add(y, proba=p)
        t, v = rng.normal(size=n), rng.normal(size=n)
        r.add(t, predicted=v)
        ys.append(y), ps.append(p), ts.append(t), vs.append(v)
    y, p = np.concatenate(ys)[-size:], np.concatenate(ps)[-size:]
    t, v = np.concatenate(ts)[-size:], np.concatenate(vs)[-size:]
    assert w.labelled == sum(chunks) and len(w) == min(size, sum(chunks))
    s = w.summary()
    assert s["accuracy"] == pytest.approx(sk.accuracy_score(y, p.argmax(axis=1)), rel=1e-12)
    assert s["log_loss"] == pytest.approx(sk_log_loss(y, p), rel=1e-9)
    expect = sk_auc(y, p)
    assert (s["auc"] is None) == (expect is None)
    if expect is not None:
        assert s["auc"] == pytest.approx(expect, rel=1e-9)
    q = r.summary()
    assert q["mae"] == pytest.approx(sk.mean_absolute_error(t, v), rel=1e-12)
    assert q["rmse"] == pytest.approx(sk.root_mean_squared_error(t, v), rel=1e-12)


def test_the_window_refuses_bad_rows_and_keeps_what_it_had() -> None:
    w = QualityWindow("classifier", 10)
    assert w.summary() == {"accuracy": None, "log_loss": None, "auc": None}
    assert QualityWindow("regressor").summary() == {"mae": None, "rmse": None}
    w.add([0, 1], proba=[[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(ValueError, match="3 classes, where earlier rows had 2"):
        w.add([0], proba=[[0.2, 0.3, 0.5]])
    with pytest.raises(ValueError, match="finite"):
        w.add([0], proba=[[np.nan, 0.5]])
    with pytest.raises(ValueError, match="indices"):
        w.add([2], proba=[[0.5, 0.5]])
    assert len(w) == 2 and w.summary()["accuracy"] == 1.0
    r = QualityWindow("regressor", 10)
    with pytest.raises(ValueError, match="finite"):
        r.add([1.0, np.inf], predicted=[1.0, 2.0])
    assert len(r) == 0
    with pytest.raises(ValueError, match="kind must be one of"):
        QualityWindow("ranker")
