"""runtime/quality against scikit-learn on the same rows: each metric on random inputs (ties in
the scores, two to five classes, probabilities of exactly 0 and 1, rows that do not sum to
1, float32), the undefined AUCs, the refused inputs, and QualityWindow over many batches."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk
from sklearn.exceptions import UndefinedMetricWarning

from runtime.quality import QualityWindow, accuracy, log_loss, mae, rmse, roc_auc


def sk_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    with warnings.catch_warnings():  # rows that do not sum to 1: it warns, then computes
        warnings.simplefilter("ignore", UserWarning)
        return float(sk.log_loss(y, p, labels=list(range(p.shape[1]))))


def sk_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    """scikit-learn's AUC as roc_auc defines it; None where it warns and returns nan."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        if p.shape[1] == 2:
            value = float(sk.roc_auc_score(y, p[:, 1]))
        else:
            labels = list(range(p.shape[1]))
            value = float(sk.roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels))
    return None if np.isnan(value) else value


def close(got: float | None, expect: float | None, rel: float = 1e-9) -> bool:
    if got is None or expect is None:
        return got is expect
    return got == pytest.approx(expect, rel=rel, abs=1e-300)


@st.composite
def classified(draw: st.DrawFn, normalised: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(classes [n], probabilities [n, k]) with many ties, some certain rows (a 1 and zeros,
    the 1 not always on the true class) and, unless normalised, rows scaled off 1."""
    k = draw(st.integers(2, 5))
    n = draw(st.integers(1, 80))
    levels = draw(st.sampled_from([2, 4, 1000]))  # few levels: many tied scores
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    present = draw(st.integers(1, k)) if draw(st.booleans()) else k  # below k: classes absent
    y = rng.integers(0, present, n)
    raw = rng.integers(0, levels, (n, k)).astype(float) + 1e-3
    p = raw / raw.sum(axis=1, keepdims=True)
    certain = rng.random(n) < draw(st.sampled_from([0.0, 0.2, 1.0]))
    p[certain] = np.eye(k)[rng.integers(0, k, int(certain.sum()))]
    if not normalised:
        p *= rng.uniform(0.3, 1.0, (n, 1))  # stays within [0, 1], sums drift below 1
    return y, p


# -- metrics against scikit-learn --------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(classified())
def test_classifier_metrics_equal_scikit_learn(case: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = case
    pred = p.argmax(axis=1)
    assert accuracy(y, pred) == pytest.approx(sk.accuracy_score(y, pred), rel=1e-12)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p), rel=1e-9)
    assert close(roc_auc(y, p), sk_auc(y, p))


@settings(max_examples=150, deadline=None)
@given(classified(normalised=False))
def test_rows_that_do_not_sum_to_one(case: tuple[np.ndarray, np.ndarray]) -> None:
    """Log loss: scikit-learn warns and computes without renormalising; so do we, quietly.
    AUC: for k > 2 scikit-learn refuses such rows; we give the mean one-vs-rest AUC of the
    scores as they are (each class's own AUC, which scikit-learn computes without fuss)."""
    y, p = case
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        expect = float(sk.log_loss(y, p, labels=list(range(p.shape[1]))))
    sums_to_one = np.allclose(p.sum(axis=1), 1, rtol=np.sqrt(np.finfo(float).eps), atol=1e-8)
    assert any("do not sum to one" in str(w.message) for w in seen) != sums_to_one
    assert log_loss(y, p) == pytest.approx(expect, rel=1e-9)  # and no warning: they are errors here

    k = p.shape[1]
    if k == 2:
        assert close(roc_auc(y, p), sk_auc(y, p))
        return
    if not np.allclose(1, p.sum(axis=1)):
        with pytest.raises(ValueError, match="sum up to 1.0"):
            sk.roc_auc_score(y, p, multi_class="ovr", labels=list(range(k)))
    if len(np.unique(y)) < k:
        assert roc_auc(y, p) is None
    else:
        per_class = [sk.roc_auc_score(y == c, p[:, c]) for c in range(k)]
        assert roc_auc(y, p) == pytest.approx(float(np.mean(per_class)), rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 5), st.integers(1, 60), st.integers(0, 2**32 - 1))
def test_float32_probabilities_are_clipped_and_summed_as_scikit_learn_does(k: int, n: int, seed: int) -> None:
    """scikit-learn clips to the eps of the probabilities' own dtype (1.2e-7 for float32)
    and computes in that dtype: a 0 for the true class costs 15.9, not 36.0."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    p[rng.random(n) < 0.3] = np.eye(k)[0]
    p32 = p.astype(np.float32)
    assert log_loss(y, p32) == pytest.approx(sk_log_loss(y, p32), rel=1e-9)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p), rel=1e-9)


def test_probabilities_of_zero_and_one_are_clipped_to_eps() -> None:
    y = np.array([0, 1, 1])
    p = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    eps = np.finfo(np.float64).eps
    expect = -(np.log(1 - eps) + np.log(eps) + np.log(1 - eps)) / 3
    assert log_loss(y, p) == pytest.approx(expect, rel=1e-12)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p), rel=1e-12)
    assert log_loss([0, 1], [[1, 0], [0, 1]]) == pytest.approx(-np.log(1 - eps), rel=1e-12)  # ints


@pytest.mark.parametrize("levels", [1, 2, 3, 50])
def test_ties_count_a_half(levels: int) -> None:
    rng = np.random.default_rng(levels)
    y = rng.integers(0, 2, 500)
    y[:2] = [0, 1]
    score = rng.integers(0, levels, 500) / max(levels - 1, 1)
    p = np.column_stack([1 - score, score])
    assert roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, score), rel=1e-9)
    if levels == 1:  # every score tied: no better than a coin
        assert roc_auc(y, p) == 0.5


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 80), st.integers(0, 2**32 - 1), st.sampled_from(["float64", "float32", "int", "list"]))
def test_regressor_metrics_equal_scikit_learn(n: int, seed: int, form: str) -> None:
    rng = np.random.default_rng(seed)
    y, pred = rng.normal(100, 50, n), rng.normal(100, 50, n).round(1)
    if form == "float32":  # scikit-learn then computes in float32, and so do we
        y, pred = y.astype(np.float32), pred.astype(np.float32)
    elif form == "int":
        y, pred = y.astype(np.int64), pred.astype(np.int64)
    args = (y.tolist(), pred.tolist()) if form == "list" else (y, pred)
    assert mae(*args) == pytest.approx(sk.mean_absolute_error(*args), rel=1e-9)
    assert rmse(*args) == pytest.approx(sk.root_mean_squared_error(*args), rel=1e-9)



@pytest.mark.parametrize(
    ("y", "pred", "want"),
    [
        ([150.0, 120.0, 1e300], [140.0, 130.0, 100.0], 1e300 / np.sqrt(3)),
        (np.float32([1e20, 1.0]), np.float32([0.0, 1.0]), 1e20 / np.sqrt(2)),
    ],
)
def test_rmse_of_errors_whose_squares_overflow_is_finite(y, pred, want) -> None:
    # One label of 1e300 (feedback takes any finite label) made the window's RMSE +Inf,
    # shown as null in JSON, until it aged out.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = rmse(y, pred)
    assert np.isfinite(got) and got == pytest.approx(want, rel=1e-6)

@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["cat", "dog", "owl"]), min_size=1, max_size=30), st.integers(0, 2**32 - 1))
def test_accuracy_of_any_labels(labels: list[str], seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred = list(rng.choice(["cat", "dog", "owl"], len(labels)))
    assert accuracy(labels, pred) == pytest.approx(sk.accuracy_score(labels, pred), rel=1e-12)
    as_index = {"cat": 0, "dog": 1, "owl": 2}
    yi, pi = [as_index[v] for v in labels], [as_index[v] for v in pred]
    assert accuracy(yi, pi) == accuracy(np.array(yi, float), pi) == accuracy(labels, pred)


# -- undefined and refused -----------------------------------------------------------------


def test_undefined_auc_is_none_where_scikit_learn_warns_and_gives_nan() -> None:
    binary = np.array([[0.3, 0.7], [0.2, 0.8], [0.6, 0.4]])
    three = np.array([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]])
    cases = [([1, 1, 1], binary), ([0, 0, 0], binary), ([0, 1, 1], three), ([2, 2, 2], three)]
    for y, p in cases:
        with pytest.warns(UndefinedMetricWarning):
            score = p[:, 1] if p.shape[1] == 2 else p
            assert np.isnan(sk.roc_auc_score(y, score, multi_class="ovr", labels=list(range(p.shape[1]))))
        assert roc_auc(y, p) is None
    assert roc_auc([0, 1, 2], three) is not None


@pytest.mark.parametrize("fn", [accuracy, mae, rmse])
def test_pairs_refused(fn: object) -> None:
    assert callable(fn)
    with pytest.raises(ValueError, match="3 true values against 2 predictions"):
        fn([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="no rows"):
        fn([], [])
    with pytest.raises(ValueError, match="one value per row"):
        fn([[1, 2], [3, 4]], [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="finite"):
        fn([1.0, np.nan], [1.0, 2.0])
    assert fn([[1.0], [2.0]], [1.0, 2.0]) == pytest.approx(
        1.0 if fn is accuracy else 0.0
    )  # [n, 1] is a column


@pytest.mark.parametrize("fn", [log_loss, roc_auc])
def test_classes_refused(fn: object) -> None:
    assert callable(fn)
    p = [[0.5, 0.5], [0.2, 0.8]]
    with pytest.raises(ValueError, match="2 true values against 1 predictions"):
        fn([0, 1], p[:1])
    with pytest.raises(ValueError, match="no rows"):
        fn([], np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"indices 0\.\.1, got 0\.\.2"):
        fn([0, 2], p)
    with pytest.raises(ValueError, match=r"indices 0\.\.1, got -1\.\.1"):
        fn([-1, 1], p)
    with pytest.raises(ValueError, match="whole numbers"):
        fn([0.5, 1.0], p)
    with pytest.raises(ValueError, match="class indices"):
        fn(["a", "b"], p)
    with pytest.raises(ValueError, match=r"\[rows, classes >= 2\]"):
        fn([0, 1], [0.2, 0.8])
    with pytest.raises(ValueError, match=r"\[rows, classes >= 2\]"):
        fn([0, 1], [[0.2], [0.8]])
    with pytest.raises(ValueError, match="finite"):
        fn([0, 1], [[np.nan, 0.5], [0.2, 0.8]])
    assert fn(np.array([0.0, 1.0]), p) == fn([0, 1], p)  # whole floats: labels that went through JSON


def test_log_loss_refuses_what_is_not_a_probability_as_scikit_learn_does() -> None:
    for bad in ([[1.5, -0.5], [0.2, 0.8]], [[-0.1, 1.0], [0.2, 0.8]]):
        with pytest.raises(ValueError, match=r"y_prob contains values"):
            sk.log_loss([0, 1], bad, labels=[0, 1])
        with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
            log_loss([0, 1], bad)
    # AUC ranks any finite scores: a binary model's logits (class 1's score is the logit
    # difference) give the AUC of their softmax.
    logits = np.array([[2.0, -1.0], [0.5, 3.0], [-1.0, 1.0], [0.0, 0.0]])
    soft = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    difference = np.column_stack([np.zeros(4), logits[:, 1] - logits[:, 0]])
    y = [0, 1, 0, 1]
    assert roc_auc(y, difference) == roc_auc(y, soft) == sk.roc_auc_score(y, soft[:, 1]) == 0.75


# -- the window ---------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 60),
    st.lists(st.integers(1, 45), min_size=1, max_size=25),
    st.integers(2, 5),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_the_window_holds_exactly_the_last_rows(
    size: int, chunks: list[int], k: int, explicit: bool, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    w, r = QualityWindow("classifier", size), QualityWindow("regressor", size)
    ys, preds, ps, ts, vs = [], [], [], [], []
    for n in chunks:
        y = rng.integers(0, k, n)
        p = rng.integers(0, 3, (n, k)) + 0.5  # ties across and within rows
        p /= p.sum(axis=1, keepdims=True)
        # With an explicit predicted class (a label output), it need not be the argmax.
        pred = rng.integers(0, k, n) if explicit else p.argmax(axis=1)
        w.add(y, predicted=pred if explicit else None, proba=p)
        t, v = rng.normal(size=n), rng.normal(size=n)
        r.add(t, predicted=v)
        ys.append(y), preds.append(pred), ps.append(p), ts.append(t), vs.append(v)
    y, pred, p = (np.concatenate(a)[-size:] for a in (ys, preds, ps))
    t, v = (np.concatenate(a)[-size:] for a in (ts, vs))
    total = sum(chunks)
    assert w.labelled == r.labelled == total and len(w) == len(r) == min(size, total)
    assert w.classes == k and r.classes is None
    s = w.summary()
    assert s["accuracy"] == pytest.approx(sk.accuracy_score(y, pred), rel=1e-12)
    assert s["log_loss"] == pytest.approx(sk_log_loss(y, p), rel=1e-9)
    assert close(s["auc"], sk_auc(y, p))
    q = r.summary()
    assert q["mae"] == pytest.approx(sk.mean_absolute_error(t, v), rel=1e-9)
    assert q["rmse"] == pytest.approx(sk.root_mean_squared_error(t, v), rel=1e-9)


def test_one_add_larger_than_the_window_keeps_its_last_rows() -> None:
    rng = np.random.default_rng(7)
    w = QualityWindow("classifier", 100)
    w.add(rng.integers(0, 3, 30), proba=rng.dirichlet(np.ones(3), 30))  # then wraps mid-ring
    y, p = rng.integers(0, 3, 250), rng.dirichlet(np.ones(3), 250)
    w.add(y, proba=p)
    assert w.labelled == 280 and len(w) == 100
    assert w.summary()["log_loss"] == pytest.approx(sk_log_loss(y[-100:], p[-100:]), rel=1e-9)
    assert close(w.summary()["auc"], sk_auc(y[-100:], p[-100:]))


def test_an_empty_window_has_no_figures() -> None:
    assert QualityWindow("classifier").summary() == {"accuracy": None, "log_loss": None, "auc": None}
    assert QualityWindow("regressor").summary() == {"mae": None, "rmse": None}
    w = QualityWindow("classifier", 5)
    w.add(np.array([], np.int64), predicted=np.array([], np.int64))
    assert w.labelled == 0 and len(w) == 0 and w.summary()["accuracy"] is None


def test_without_probabilities_only_accuracy() -> None:
    w = QualityWindow("classifier", 4)
    w.add([0, 1, 1], predicted=[0, 1, 0])
    assert w.summary() == {"accuracy": pytest.approx(2 / 3), "log_loss": None, "auc": None}
    # Rows from before the first probabilities are not taken for zeros: no log loss while
    # any row of the window came without probabilities, and the figures return once they left.
    w.add([1, 0], proba=[[0.1, 0.9], [0.8, 0.2]])
    assert w.summary()["log_loss"] is None and w.summary()["auc"] is None
    w.add([0, 1], proba=[[0.7, 0.3], [0.4, 0.6]])
    y, p = [1, 0, 0, 1], np.array([[0.1, 0.9], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6]])
    s = w.summary()
    assert s["log_loss"] == pytest.approx(sk_log_loss(np.array(y), p), rel=1e-12)
    assert s["auc"] == pytest.approx(1.0) and s["accuracy"] == 1.0
    w.add([1], predicted=[1])  # a row without: the window's log loss is gone again
    assert w.summary()["log_loss"] is None and w.summary()["accuracy"] == 1.0


def test_scores_that_are_not_probabilities_give_auc_but_no_log_loss() -> None:
    w = QualityWindow("classifier", 10)
    logits = np.array([[2.0, -1.0, 0.0], [0.5, 3.0, 1.0], [-1.0, 1.0, 2.5], [0.0, 0.2, -0.3]])
    y = np.array([0, 1, 2, 1])
    w.add(y, proba=logits)
    s = w.summary()
    assert s["accuracy"] == 1.0 and s["log_loss"] is None
    per_class = [sk.roc_auc_score(y == c, logits[:, c]) for c in range(3)]
    assert s["auc"] == pytest.approx(float(np.mean(per_class)), rel=1e-12)


def _unchanged(w: QualityWindow, before: dict[str, float | None], labelled: int) -> None:
    assert w.labelled == labelled and w.summary() == before


def test_the_window_refuses_bad_rows_and_keeps_what_it_had() -> None:
    w = QualityWindow("classifier", 10)
    w.add([0, 1, 1], proba=[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    before = w.summary()
    bad_calls = [
        ({"proba": [[0.2, 0.3, 0.5]]}, [0], "3 classes, where earlier rows had 2"),
        ({"proba": [[np.nan, 0.5]]}, [0], "finite"),
        ({"proba": [[0.5, 0.5], [np.inf, 0.0]]}, [0, 1], "finite"),
        ({"predicted": [0, 1]}, [0.0, np.nan], "finite"),
        ({"proba": [[0.5, 0.5]]}, [2], r"indices 0\.\.1"),
        ({"predicted": [2]}, [0], r"indices 0\.\.1"),  # k is known: no proba needed to check
        ({"predicted": [-1]}, [0], r"indices 0\.\.1"),
        ({"predicted": [0, 1]}, [0], "1 labels against 2 predictions"),
        ({"proba": [[0.5, 0.5]]}, [0, 1], "2 labels against 1 predictions"),
        ({"predicted": [0, 1], "proba": [[0.5, 0.5]]}, [0, 1], "2 labels against 1 predictions"),
        ({}, [0], "need a predicted class or probabilities"),
        ({"proba": [0.5, 0.5]}, [0, 1], r"\[rows, classes >= 2\]"),
    ]
    for kwargs, y, message in bad_calls:
        with pytest.raises(ValueError, match=message):
            w.add(y, **kwargs)  # type: ignore[arg-type]
        _unchanged(w, before, 3)
    assert before["accuracy"] == pytest.approx(2 / 3) and w.classes == 2

    r = QualityWindow("regressor", 10)
    r.add([1.0, 2.0], predicted=[1.5, 2.0])
    before = r.summary()
    for y, pred, message in [
        ([1.0, np.inf], [1.0, 2.0], "finite"),
        ([1.0, 2.0], [np.nan, 2.0], "finite"),
        ([1.0], [1.0, 2.0], "1 labels against 2 predictions"),
        (["a"], [1.0], "must be numbers"),
    ]:
        with pytest.raises(ValueError, match=message):
            r.add(y, predicted=pred)
        _unchanged(r, before, 2)
    with pytest.raises(ValueError, match="need predictions"):
        r.add([1.0])
    with pytest.raises(ValueError, match="no class probabilities"):
        r.add([1.0], predicted=[1.0], proba=[[0.5, 0.5]])
    assert len(r) == 2 and before == {"mae": 0.25, "rmse": pytest.approx(np.sqrt(0.125))}


@pytest.mark.parametrize(
    ("kind", "size"),
    [("ranker", 10), ("classifier", 0), ("regressor", -1), ("regressor", 2.5), ("regressor", True)],
)
def test_a_window_needs_a_kind_and_a_size(kind: str, size: int) -> None:
    with pytest.raises(ValueError, match="kind must be one of|size must be an integer >= 1"):
        QualityWindow(kind, size)


# -- class labels (runtime/quality/labels.py) ------------------------------------------------


def test_text_labels_match_whether_bytes_or_str() -> None:
    from runtime.quality.labels import ClassIndex, as_labels

    model_says = np.array([b"setosa", b"virginica"], dtype=object)  # a BYTES output
    assert as_labels(model_says).tolist() == ["setosa", "virginica"]
    same = np.array([1, 2])
    assert as_labels(same) is same
    index = ClassIndex(np.array(["setosa", "versicolor", "virginica"]), "hint")
    assert index(model_says, "x").tolist() == [0, 2]
    assert index(np.array(["virginica"], dtype=object), "x").tolist() == [2]
    with pytest.raises(ValueError, match=r"label \['rose'\] not among the model's classes .*; hint"):
        index(np.array(["rose", "rose", "setosa"], dtype=object), "label")


def test_classes_map_labels_to_columns_in_their_order() -> None:
    from runtime.quality.labels import ClassIndex

    # scikit-learn's classes_ [1, 2, 3] (wine's cultivars): label 3 is column 2, not an index.
    assert ClassIndex(np.array([1, 2, 3]), "h")(np.array([3, 1]), "x").tolist() == [2, 0]
    listed = ClassIndex(["stay", "churn"], "h", listed=True)
    assert listed(np.array(["churn"], dtype=object), "x").tolist() == [1]
    with pytest.raises(ValueError, match=r"not among the classes listed, \['stay', 'churn'\]"):
        listed(np.array([1]), "label")


def test_without_classes_labels_must_be_indices() -> None:
    from runtime.quality.labels import ClassIndex

    index = ClassIndex(None, "list them")
    assert index(np.array([0, 2, 1]), "x").tolist() == [0, 2, 1]
    assert index(np.array([True, False]), "x").tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"\['b'\] is not a class index .* does not say .*; list them"):
        index(np.array([b"b"], dtype=object), "label")
    with pytest.raises(ValueError, match=r"\[-1\] is not a class index \(0 .. k-1\); list them"):
        index(np.array([-1]), "label")
