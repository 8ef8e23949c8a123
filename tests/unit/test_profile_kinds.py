"""A profile whose feature kinds cannot be what the model takes is refused at load.

A numeric feature read from a text input failed every batch's count while /drift said ok over
an empty window; text levels read from a numeric input counted everything as "other" and
alarmed on unchanged data (PSI 15.9 in a walk on diamonds). Both loaded without a word.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runtime
from bench import models as bench_models
from runtime.errors import ConfigError
from runtime.monitor.profile import Profile


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models")
    bench_models.mlp(path / "mlp.onnx")
    bench_models.strings(path / "strings.onnx")
    return path


def _fit(path: Path, columns: dict[str, object], **kw: object) -> str:
    Profile.fit(columns, **kw).save(path)
    return str(path)


def test_a_numeric_feature_of_a_text_input_is_refused(onnx_models: Path, tmp_path: Path) -> None:
    profile = _fit(tmp_path / "p.json", {"text": np.linspace(0, 1, 200)})
    want = r"feature 'text' is numeric, but input 'text' holds text \(BYTES\)"
    with pytest.raises(ConfigError, match=want):
        runtime.load(str(onnx_models / "strings.onnx"), profile=profile)


def test_numeric_levels_of_a_text_input_are_refused(onnx_models: Path, tmp_path: Path) -> None:
    profile = _fit(tmp_path / "p.json", {"text": np.arange(200) % 3}, categorical=["text"])
    with pytest.raises(ConfigError, match="has numeric levels, but input 'text' holds text"):
        runtime.load(str(onnx_models / "strings.onnx"), profile=profile)


def test_text_levels_of_a_numeric_input_are_refused(onnx_models: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    columns: dict[str, object] = {f"input[{i}]": rng.normal(size=200) for i in range(20)}
    columns["input[3]"] = np.array([f"c{i % 5}" for i in range(200)], dtype=object)
    profile = _fit(tmp_path / "p.json", columns)
    want = r"feature 'input\[3\]' has text levels, but input 'input' holds numbers"
    with pytest.raises(ConfigError, match=want):
        runtime.load(str(onnx_models / "mlp.onnx"), profile=profile)


def test_kinds_that_fit_load(onnx_models: Path, tmp_path: Path) -> None:
    # Text levels of a text input, and numeric levels (codes) of a numeric input, are fine.
    text = _fit(tmp_path / "t.json", {"text": np.array([f"c{i % 5}" for i in range(200)], dtype=object)})
    with runtime.load(str(onnx_models / "strings.onnx"), profile=text) as m:
        m.predict({"text": np.array([["c1"], ["c2"]], dtype=object)})
    rng = np.random.default_rng(1)
    columns: dict[str, object] = {f"input[{i}]": rng.normal(size=200).astype(np.float32) for i in range(20)}
    columns["input[3]"] = (np.arange(200) % 4).astype(np.float32)
    codes = _fit(tmp_path / "c.json", columns, categorical=["input[3]"])
    with runtime.load(str(onnx_models / "mlp.onnx"), profile=codes) as m:
        m.predict({"input": np.zeros((2, 20), np.float32)})


def test_whole_numbers_served_as_floats_that_hold_them_are_not_warned_about(
    onnx_models: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # airquality's Month (5..9) profiled as int64 and served as float32 counts the same: the
    # warning that counts "can differ by rounding" was wrong. Past 2**24 float32 rounds.
    rng = np.random.default_rng(2)
    small = {f"input[{i}]": rng.integers(5, 10, 200) for i in range(20)}
    with caplog.at_level("WARNING", logger="mlrt"):
        runtime.load(str(onnx_models / "mlp.onnx"), profile=_fit(tmp_path / "s.json", small)).close()
    assert "not fitted in the dtypes" not in caplog.text
    large = {f"input[{i}]": rng.integers(2**25, 2**26, 200) for i in range(20)}
    with caplog.at_level("WARNING", logger="mlrt"):
        runtime.load(str(onnx_models / "mlp.onnx"), profile=_fit(tmp_path / "l.json", large)).close()
    assert "input[0] (int64, served float32)" in caplog.text


def test_a_count_mismatch_of_outputs_says_outputs(onnx_models: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    columns = {f"input[{i}]": rng.normal(size=200).astype(np.float32) for i in range(20)}
    outputs = {f"o{i}": rng.normal(size=200) for i in range(3)}  # the bench MLP has 2
    profile = _fit(tmp_path / "o.json", columns, outputs=outputs)
    with pytest.raises(ConfigError) as err:
        runtime.load(str(onnx_models / "mlp.onnx"), profile=profile)
    text = str(err.value)
    assert "the profile has 3 outputs" in text and "but the model's outputs" in text, text
    assert "have 2 columns;" in text


def test_a_profile_with_one_column_too_many_suggests_profiling_with_the_model(
    onnx_models: Path, tmp_path: Path
) -> None:
    # The usual cause: the label column left in `mlrt profile DATA` without --model.
    profile = _fit(tmp_path / "t.json", np.random.default_rng(4).normal(size=(200, 21)))
    with pytest.raises(ConfigError, match=r"1 more feature than columns: a target or id column"):
        runtime.load(str(onnx_models / "mlp.onnx"), profile=profile)
