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
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == "hooks_dispatch"
    assert saved["script_version"] == hooks_dispatch.SCRIPT_VERSION
    assert saved["command"] == "python -m bench.hooks_dispatch --rounds 2 --calls 50"
    assert saved["settings"] == {"rounds": 2, "calls": 50, "firings_per_round": 100}
    raw = saved["results"]["seconds_per_call"]
    assert set(raw) == set(hooks_dispatch.CASES)
    assert all(len(v) == 2 and min(v) > 0 for v in raw.values())
    assert saved["results"]["calls_per_round"]["fires (every 2nd call)"] == 50
    assert hooks_dispatch.markdown(saved, "hooks_dispatch") == table
