"""`mlrt profile` and `mlrt drift` end to end on real files."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from runtime.commands import drift, profile


def _run(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def test_profile_then_drift(tmp_path, capsys):
    rng = np.random.default_rng(0)
    ref = pa.table(
        {"a": rng.normal(size=5000), "b": rng.normal(size=5000), "c": rng.choice(["x", "y"], 5000)}
    )
    pq.write_table(ref, tmp_path / "ref.parquet")
    cur = pa.table(
        {"a": rng.normal(size=5000), "b": rng.normal(1.0, 1, size=5000), "c": rng.choice(["x", "y"], 5000)}
    )
    pq.write_table(cur, tmp_path / "cur.parquet")
    out = tmp_path / "ref.json"
    assert _run(profile, [str(tmp_path / "ref.parquet"), "-o", str(out), "--bins", "10"]) == 0
    assert json.loads(out.read_text())["features"][2]["kind"] == "categorical"
    capsys.readouterr()

    argv = [str(out), str(tmp_path / "cur.parquet"), "--format", "json"]
    assert _run(drift, argv) == 0
    doc = json.loads(capsys.readouterr().out)
    by_name = {f["name"]: f for f in doc["features"]}
    assert by_name["a"]["status"] == "ok" and by_name["b"]["status"] == "alert"
    assert by_name["b"]["rows"] == 5000 and by_name["b"]["js"] > 0 and by_name["b"]["significant"]
    assert doc["status"] == "alert" and doc["window"]["rows"] == 5000
    assert _run(drift, argv + ["--fail-on-drift"]) == 1
    capsys.readouterr()
    # The reference rows themselves: PSI 0, ok, and the table says what its numbers are.
    assert _run(drift, [str(out), str(tmp_path / "ref.parquet")]) == 0
    text = capsys.readouterr().out
    assert "status: ok" in text and "population stability index" in text and "Holm" in text
    # The band past alert_psi is "major": "significant" is the test's word (the JSON's
    # "significant" is Holm's verdict), and a PSI band said it on rows the test found ok.
    assert _run(drift, [str(out), str(tmp_path / "cur.parquet")]) == 0
    text = capsys.readouterr().out
    assert "major" in text and "significant" not in text.split("PSI:")[0]


def test_table_names_the_overall_status_and_small_windows(tmp_path, capsys):
    rng = np.random.default_rng(1)
    pq.write_table(pa.table({"a": rng.normal(size=2000)}), tmp_path / "ref.parquet")
    pq.write_table(pa.table({"a": rng.normal(3.0, 1, size=50)}), tmp_path / "few.parquet")
    out = tmp_path / "ref.json"
    assert _run(profile, [str(tmp_path / "ref.parquet"), "-o", str(out)]) == 0
    capsys.readouterr()
    assert _run(drift, [str(out), str(tmp_path / "few.parquet"), "--fail-on-drift"]) == 0
    text = capsys.readouterr().out
    assert "status: ok (not judged: only 50 rows" in text and "no feature drifting" not in text


def test_errors_are_messages(tmp_path, capsys):
    assert _run(profile, [str(tmp_path / "missing.csv"), "-o", str(tmp_path / "r.json")]) == 2
    assert "no such data file" in capsys.readouterr().err

    data = tmp_path / "d.csv"
    pacsv.write_csv(pa.table({"a": [1.0, 2.0, 3.0]}), data)
    # An output directory that does not exist: said before any work, no traceback.
    assert _run(profile, [str(data), "-o", str(tmp_path / "nope" / "r.json")]) == 2
    assert "directory" in capsys.readouterr().err

    # A header and no rows: nothing to profile.
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    assert _run(profile, [str(empty), "-o", str(tmp_path / "r.json")]) == 2
    assert "no rows" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()

    # The data file where the profile goes: says it is not a profile.
    assert _run(drift, [str(data), str(data)]) == 2
    err = capsys.readouterr().err
    assert "is not a profile" in err and "mlrt profile" in err

    # A profile, then data without its columns, or without rows.
    ref = tmp_path / "ref.json"
    assert _run(profile, [str(data), "-o", str(ref)]) == 0
    other = tmp_path / "other.csv"
    pacsv.write_csv(pa.table({"z": [1.0]}), other)
    assert _run(drift, [str(ref), str(other)]) == 2
    assert "lacks profiled column(s) ['a']" in capsys.readouterr().err
    assert _run(drift, [str(ref), str(empty)]) == 2
    assert "no rows" in capsys.readouterr().err

    # Neither files nor --url.
    assert _run(drift, []) == 2
    assert "REF.json and DATA" in capsys.readouterr().err


def test_dtype_flag_fits_float32_bins(tmp_path, capsys):
    # Readings in steps of 0.1, a float64 CSV: fitted for a float32 model, its float32 rows
    # count exactly as the reference.
    x = np.round(np.random.default_rng(2).integers(0, 40, 3000) * 0.1, 1)
    data = tmp_path / "d.csv"
    pacsv.write_csv(pa.table({"speed": x}), data)
    ref = tmp_path / "ref.json"
    assert _run(profile, [str(data), "-o", str(ref), "--dtype", "float32"]) == 0
    assert "float32" in capsys.readouterr().out
    doc = json.loads(ref.read_text())
    assert doc["features"][0]["dtype"] == "float32"
    assert _run(drift, [str(ref), str(data), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["features"][0]["psi"] == pytest.approx(0.0, abs=1e-12)


def test_a_csv_column_arrow_guessed_wrong_is_read_again(tmp_path, capsys):
    # Arrow guesses a CSV column's type from the first block (about 1 MB): a column empty
    # there, whole numbers there, or empty there and text later failed the whole read.
    rng = np.random.default_rng(3)
    n = 150_000  # about 2 MB: the first block sees only the first part
    late = np.arange(n) >= n - 10_000
    text = ["" if not x else "blue" for x in late]
    lines = ["a,empty_first,whole_first,text_late"]
    for i in range(n):
        empty_first = f"{rng.normal():.6f}" if late[i] else ""
        whole_first = f"{rng.normal():.4f}" if late[i] else str(i % 7)
        lines.append(f"{rng.normal():.6f},{empty_first},{whole_first},{text[i]}")
    (tmp_path / "late.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "ref.json"
    assert _run(profile, [str(tmp_path / "late.csv"), "-o", str(out)]) == 0, capsys.readouterr().err
    kinds = {f["name"]: f["kind"] for f in json.loads(out.read_text())["features"]}
    assert kinds == {
        "a": "numeric", "empty_first": "numeric", "whole_first": "numeric", "text_late": "categorical"
    }
    capsys.readouterr()
    assert _run(drift, [str(out), str(tmp_path / "late.csv"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "ok"
