"""runtime/traffic/compare.py against a plain per-request reading of its rules."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.traffic.compare import ABS_DIFF_BUCKETS, compare


def _oracle(pairs):
    """Request by request, row by row: the rules as the module's docstring states them."""
    compared = agreed = 0
    diffs = []
    for p, s in pairs:
        if "label" in p:
            for a, b in zip(p["label"], s["label"], strict=True):
                compared += 1
                agreed += int(np.all(a == b))
        for a, b in zip(p["proba"], s["proba"], strict=True):
            if "label" not in p:
                compared += 1
                agreed += int(np.argmax(a) == np.argmax(b))
            diffs.extend(abs(float(y) - float(x)) for x, y in zip(a, b, strict=True))
    counts = [0] * (len(ABS_DIFF_BUCKETS) + 1)
    for d in diffs:
        i = next((k for k, bound in enumerate(ABS_DIFF_BUCKETS) if d <= bound), len(ABS_DIFF_BUCKETS))
        counts[i] += 1
    return compared, agreed, counts, sum(diffs)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=12),
    labelled=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_many_requests_at_once_equal_the_rules_request_by_request(sizes, labelled, seed) -> None:
    rng = np.random.default_rng(seed)
    pairs = []
    for n in sizes:
        p = rng.dirichlet(np.ones(3), n)
        s = np.clip(p + rng.choice([0.0, 1e-7, 3e-3, 0.2], (n, 3)), 0, 1).astype(np.float32)
        primary, shadow = {"proba": p}, {"proba": s}
        if labelled:
            primary["label"] = p.argmax(axis=1)
            shadow["label"] = rng.integers(0, 3, n)
        pairs.append((primary, shadow))
    got = compare(pairs)
    compared, agreed, counts, total = _oracle(pairs)
    assert (got.compared, got.agreed) == (compared, agreed)
    assert got.diff_counts.tolist() == counts
    assert abs(got.diff_sum - total) < 1e-9


def test_regressors_have_diffs_but_no_agreement_and_odd_outputs_are_skipped() -> None:
    pairs = [({"y": np.array([1.0, 2.0])}, {"y": np.array([1.5, 2.0])})]
    c = compare(pairs)
    assert c.compared == 0 and c.diff_counts.sum() == 2 and c.diff_sum == 0.5
    # Names the shadow lacks, other trailing shapes, and NaN differences are left out.
    odd = [({"y": np.ones((2, 3)), "z": np.ones(2)}, {"y": np.ones((2, 4)), "w": np.ones(2)})]
    c = compare(odd)
    assert c.compared == 0 and c.diff_counts is None
    nan = [({"y": np.array([np.nan, 1.0])}, {"y": np.array([0.0, 1.0])})]
    assert compare(nan).diff_counts.sum() == 1
    # Text labels agree by equality.
    cat_dog, cat_cow = np.array([b"cat", b"dog"], dtype=object), np.array([b"cat", b"cow"], dtype=object)
    text = [({"label": cat_dog}, {"label": cat_cow})]
    c = compare(text)
    assert (c.compared, c.agreed) == (2, 1)
    assert compare([]).compared == 0


def test_a_model_and_its_onnx_export_are_compared_by_their_predictions() -> None:
    # scikit-learn answers predict / predict_proba; skl2onnx names the same label /
    # probabilities (float32): no shared name, so each one's prediction by the rule.
    proba = np.array([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7]])
    primary = {"predict": np.array([b"a", b"b", b"c"], dtype=object), "predict_proba": proba}
    labels = np.array([b"a", b"c", b"c"], dtype=object)
    export = {"label": labels, "probabilities": (proba + 1e-7).astype(np.float32)}
    c = compare([(primary, export)])
    assert (c.compared, c.agreed) == (3, 2)
    assert c.diff_counts.sum() == 9 and c.diff_counts[: ABS_DIFF_BUCKETS.index(1e-6) + 1].sum() == 9
    # Regressors: the value, whatever each calls it and however shaped ([n] or [n, 1]).
    c = compare([({"predict": np.array([1.0, 2.0])}, {"variable": np.array([[1.5], [2.0]], np.float32)})])
    assert c.compared == 0 and c.diff_counts.sum() == 2 and c.diff_sum == 0.5


def test_an_endpoint_s_answers_from_two_variants_are_all_compared() -> None:
    # An endpoint of a Python model and its ONNX export, with a shadow: one turn's primary
    # answers come from both. Names decided on the first pair failed on the others and the
    # whole turn's comparisons were dropped (about 60% lost in a walk with 8 clients).
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    python_answer = {"predict": np.array([0, 1]), "predict_proba": proba}
    onnx_answer = {"label": np.array([0, 1]), "probabilities": proba.astype(np.float32)}
    shadow = {"label": np.array([0, 0]), "probabilities": proba.astype(np.float32)}
    pairs = [(python_answer, shadow), (onnx_answer, shadow), (python_answer, shadow)]
    c = compare(pairs)
    assert (c.compared, c.agreed) == (6, 3)
    assert c.diff_counts.sum() == 12  # every score of every row, both groups
    assert np.isclose(c.diff_sum, sum(compare([pair]).diff_sum for pair in pairs))
