"""bench.hooks_dispatch runs end to end and records what it says. No timing is checked
here (the timing it replaces used to be an assertion in test_hooks.py)."""

from __future__ import annotations

import json

from bench import hooks_dispatch


def test_a_tiny_run_prints_its_table_and_writes_its_raw_figures(tmp_path, capsys) -> None:
    out = tmp_path / "h.json"
    assert hooks_dispatch.main(["--rounds", "2", "--calls", "50", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    for case in hooks_dispatch.CASES:
        assert f"| {case} |" in table
    result = json.loads(out.read_text())
    assert result["script_version"] == hooks_dispatch.SCRIPT_VERSION
    assert result["settings"] == {"rounds": 2, "calls": 50, "firings_per_round": 100}
    assert set(result["raw_seconds_per_call"]) == set(hooks_dispatch.CASES)
    assert all(len(v) == 2 and min(v) > 0 for v in result["raw_seconds_per_call"].values())
    assert len(result["meta"]["commit"]) == 40
