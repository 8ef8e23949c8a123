"""bench.monitor_cost: without valgrind it says so and still runs the rest; its
child runs the measured loop it describes; the report states the goal's verdict.

No timing or instruction count is checked here (that is the benchmark's job).
"""

from __future__ import annotations

import json

import pytest

from bench import monitor_cost


def test_without_valgrind_it_says_so_and_times_the_rest(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(monitor_cost.shutil, "which", lambda name: None)
    out = tmp_path / "r.json"
    assert monitor_cost.main(["--rounds", "2", "--round-calls", "50", "--json", str(out)]) == 0
    shown = capsys.readouterr()
    assert "valgrind is not installed" in shown.err
    assert "instructions: skipped, valgrind is not installed" in shown.out
    assert "monitored - plain (paired by round)" in shown.out
    result = json.loads(out.read_text())
    assert len(result["wall"]["p50_us"]["plain"]) == 2
    assert all(t > 0 for t in result["wall"]["rotation_us"])


@pytest.mark.parametrize("mode", ["plain", "monitored", "rotation"])
def test_the_child_runs_its_loop(tmp_path, mode) -> None:
    model, profile = monitor_cost.build(tmp_path)
    monitor_cost.child(mode, 64, model, profile)


def test_the_report_gives_the_verdict_and_the_raw_counts() -> None:
    ins = {
        "calls": [1024, 3072],
        "repeat": 2,
        "raw": [{"mode": "plain", "calls": 1024, "repeat": 0, "instructions": 65_000_000}],
        "per_call": {"plain": [64e3, 64.01e3], "monitored": [66e3, 66.02e3], "rotation": [4e4, 4e4]},
        "added": [2000.0, 2010.0],
        "added_pct": [3.125, 3.14],
    }
    meta = {
        "date": "2026-12-04T00:00:00+00:00",
        "commit": "0" * 40,
        "dirty": [],
        "machine": "x",
        "load_before": [0, 0, 0],
        "load_after": [0, 0, 0],
        "valgrind": "valgrind-3.19.0",
    }
    text = monitor_cost.report({"meta": meta, "instructions": ins})
    assert "PASS  the monitor adds at most 3.14% of a plain predict's instructions (goal: under 5%)" in text
    assert "65,000,000" in text
    ins["added_pct"] = [5.2, 5.0]
    assert "FAIL  the monitor adds at most 5.20%" in monitor_cost.report({"meta": meta, "instructions": ins})
