"""The feedback memory (runtime/traffic/feedback.py) on its own: predictions are copied
into a ring per model version, found again by id, and refused clearly once written over."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from runtime.traffic import Feedback


def _answer(rows: int, seed: int) -> dict[str, np.ndarray]:
    p = np.random.default_rng(seed).random((rows, 1)).astype(np.float32)
    proba = np.hstack([1 - p, p])
    return {"label": (p[:, 0] > 0.5).astype(np.int64), "proba": proba}


def test_a_label_joins_the_prediction_as_it_was_answered() -> None:
    fb = Feedback("ep", window=100, remember=100)
    answers = {f"r{i}": _answer(1 + i % 3, i) for i in range(40)}
    for rid, out in answers.items():
        fb.remember_answer(rid, "m", "1", out)
        for a in out.values():
            a[...] = 0  # the answer's own arrays may change later: the memory has a copy
    fresh = {rid: _answer(1 + i % 3, i) for i, rid in enumerate(answers)}
    accepted, errors = fb.label([{"id": rid, "label": out["label"].tolist()} for rid, out in fresh.items()])
    assert (accepted, errors) == (40, [])
    q = fb.summary()["m"]
    assert q["accuracy"] == 1.0 and q["labelled"] == sum(1 + i % 3 for i in range(40))
    assert fb.to_json()["unremembered"] == 0


def test_rows_written_over_are_refused_by_id_not_misjoined() -> None:
    fb = Feedback("ep", window=100, remember=10)
    fb.remember_answer("old", "m", "1", _answer(4, 1))
    for i in range(3):
        fb.remember_answer(f"new{i}", "m", "1", _answer(4, 2 + i))  # 16 rows: "old" written over
    accepted, errors = fb.label([{"id": "old", "label": [0, 0, 0, 0]}, {"id": "new2", "label": [1, 1, 1, 1]}])
    assert accepted == 1 and errors[0]["id"] == "old"
    assert "older than its last 10 answers (10 rows per model version)" in errors[0]["error"]
    # Larger than the whole ring: not remembered, and counted.
    fb.remember_answer("huge", "m", "1", _answer(11, 9))
    assert fb.to_json()["unremembered"] == 1
    assert "unknown id 'huge'" in fb.label([{"id": "huge", "label": [0] * 11}])[1][0]["error"]


def test_each_model_version_keeps_its_own_ring() -> None:
    fb = Feedback("ep", window=100, remember=100)
    fb.remember_answer("a", "m", "1", {"y": np.array([[1.5]], np.float32)})
    fb.remember_answer("b", "n", "2", {"y": np.array([2.5, 3.5])})
    fb.label([{"id": "a", "label": 1.0}, {"id": "b", "label": [2.0, 4.0]}])
    s = fb.summary()
    assert s["m"]["mae"] == pytest.approx(0.5) and s["n"]["mae"] == pytest.approx(0.5)
    assert s["n"]["version"] == "2"


def test_the_memory_holds_nothing_the_garbage_collector_tracks() -> None:
    fb = Feedback("ep", remember=1000)
    for i in range(1000):
        fb.remember_answer(f"r{i}", "m", "1", _answer(1, i))
    gc.collect()
    assert not any(gc.is_tracked(v) for v in fb._memory.values())


def test_an_id_answered_twice_is_refused_not_joined_to_either_answer() -> None:
    # A client reusing its own id replaced the first answer in memory and the label was
    # joined to the second, silently.
    fb = Feedback("ep", window=100, remember=100)
    fb.remember_answer("order-77", "m", "1", {"label": np.array([0]), "proba": np.array([[0.9, 0.1]])})
    fb.remember_answer("order-77", "m", "1", {"label": np.array([1]), "proba": np.array([[0.2, 0.8]])})
    fb.remember_answer("order-78", "m", "1", {"label": np.array([1]), "proba": np.array([[0.2, 0.8]])})
    accepted, errors = fb.label([{"id": "order-77", "label": 0}, {"id": "order-78", "label": 1}])
    assert accepted == 1 and errors[0]["id"] == "order-77"
    assert "answered more than once" in errors[0]["error"]
    fb.remember_answer("order-77", "m", "1", {"label": np.array([0]), "proba": np.array([[0.9, 0.1]])})
    assert fb.to_json()["reused_ids"] == 2 and fb.summary()["m"]["labelled"] == 1
