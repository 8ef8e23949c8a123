"""`mlrt profile` and `mlrt drift` end to end on real files."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

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
    assert by_name["b"]["current_rows"] == 5000 and by_name["b"]["js"] > 0
    assert _run(drift, argv + ["--fail-on-drift"]) == 1
    capsys.readouterr()
    assert _run(drift, [str(out), str(tmp_path / "ref.parquet")]) == 0
    assert "status" in capsys.readouterr().out


def test_status_thresholds():
    assert [drift.status(v) for v in (0.05, 0.1, 0.15, 0.2, 0.21)] == ["ok", "warn", "warn", "warn", "alert"]


def test_errors_are_messages(tmp_path, capsys):
    assert _run(profile, [str(tmp_path / "missing.csv"), "-o", str(tmp_path / "r.json")]) == 2
    assert "no such data file" in capsys.readouterr().err
