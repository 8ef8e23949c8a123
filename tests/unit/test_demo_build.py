"""`python -m runtime.demo.build` rebuilds the demo's shipped files: the same data split, a
model that answers as the shipped one does, and the same reference profile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("onnx")

from runtime.demo import build  # noqa: E402
from runtime.embedded import load  # noqa: E402

SHIPPED = Path(build.__file__).parent


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("demo")
    return out, build.main(out)


def test_the_data_and_its_split_are_the_shipped_ones(rebuilt: tuple[Path, float]) -> None:
    out, _ = rebuilt
    with np.load(out / "data.npz") as new, np.load(SHIPPED / "data.npz") as old:
        assert sorted(new.files) == sorted(old.files) == ["feature_names", "features", "labels", "train_rows"]
        for name in new.files:
            np.testing.assert_array_equal(new[name], old[name], err_msg=name)
        assert new["features"].shape == (569, 30) and new["features"].dtype == np.float32
        assert len(new["train_rows"]) == int(0.7 * 569)


def test_the_model_answers_as_the_shipped_one(rebuilt: tuple[Path, float]) -> None:
    out, accuracy = rebuilt
    assert accuracy > 0.95  # held out rows
    with np.load(SHIPPED / "data.npz") as d:
        X = d["features"]
    with load(str(out / "model.onnx")) as new, load(str(SHIPPED / "model.onnx")) as old:
        assert [s.name for s in new.inputs] == ["features"]
        a, b = new.predict(X), old.predict(X)
    np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-5)


def _same(new: object, old: object, where: str) -> None:
    """Equal documents, floats to 1e-5 (the model's outputs may move in their last bits)."""
    if isinstance(new, dict) and isinstance(old, dict):
        assert new.keys() == old.keys(), where
        for key in new:
            _same(new[key], old[key], f"{where}.{key}")
    elif isinstance(new, list) and isinstance(old, list):
        assert len(new) == len(old), where
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            _same(a, b, f"{where}[{i}]")
    elif isinstance(new, float) or isinstance(old, float):
        assert new == pytest.approx(old, rel=1e-5, abs=1e-7), where
    else:
        assert new == old, where


def test_the_profile_is_the_shipped_one(rebuilt: tuple[Path, float]) -> None:
    out, _ = rebuilt
    new = json.loads((out / "profile.json").read_text())
    assert len(new["features"]) == 30 and [f["name"] for f in new["outputs"]] == [
        "probabilities[0]", "probabilities[1]", "label"
    ]  # fmt: skip
    _same(new, json.loads((SHIPPED / "profile.json").read_text()), "profile")
