"""bench.monitor_cost: without valgrind it says so and still runs the rest; its
child runs the measured loop it describes; the table states the goal's verdict.

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
    assert "Instructions: not counted (valgrind is not installed" in shown.out
    assert "| monitored - plain, paired by round |" in shown.out
    assert "PASS" not in shown.out and "FAIL" not in shown.out
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "monitor_cost" and saved["script_version"] == monitor_cost.SCRIPT_VERSION
    assert saved["settings"]["valgrind"] is None
    wall = saved["results"]["wall"]
    assert len(wall["p50_us"]["plain"]) == 2
    assert all(t > 0 for t in wall["rotation_us"])
    assert monitor_cost.markdown(saved, "monitor_cost") == shown.out


@pytest.mark.parametrize("mode", ["plain", "monitored", "rotation"])
def test_the_child_runs_its_loop(tmp_path, mode) -> None:
    model, profile = monitor_cost.build(tmp_path)
    monitor_cost.child(mode, 64, model, profile)


def _saved(added_pct: list[float]) -> dict:
    raw = [
        {"mode": mode, "calls": n, "repeat": r, "instructions": 65_000_000 + n + r}
        for r in range(2)
        for mode in ("plain", "monitored", "rotation")
        for n in (1024, 3072)
    ]
    ins = {
        "raw": raw,
        "per_call": {"plain": [64e3, 64.01e3], "monitored": [66e3, 66.02e3], "rotation": [4e4, 4e4]},
        "added": [2000.0, 2010.0],
        "added_pct": added_pct,
    }
    settings = {
        "calls": [1024, 3072], "repeat": 2, "valgrind": "valgrind-3.19.0", "rounds": 15, "round_calls": 2000,
        "wall": False, "rotation_calls": 200, "n_features": 8, "warmup_calls": 256, "measured_window_s": 1e9,
        "slices": 10, "default_subwindow_s": 60.0, "goal_pct": 5.0,
    }  # fmt: skip
    return {"settings": settings, "results": {"instructions": ins, "wall": None}}


def test_the_table_gives_the_verdict_and_the_raw_counts() -> None:
    text = monitor_cost.markdown(_saved([3.125, 3.14]))
    assert "PASS: the monitor adds at most 3.14% of a plain predict's instructions (goal: under 5%" in text
    assert "| raw I(1024) / I(3072), plain | 65,001,024 / 65,003,072 | 65,001,025 / 65,003,073 |" in text
    assert "| added by the monitor | **2,000 (3.12%)** | **2,010 (3.14%)** |" in text
    assert "FAIL: the monitor adds at most 5.20%" in monitor_cost.markdown(_saved([5.2, 5.0]))
