"""bench.kernels: its numpy baselines count what mlrt counts, and a run writes what it says.

No timing is checked here; a tiny run only proves the script runs end to end on the
current code and records its figures, settings and provenance.
"""

from __future__ import annotations

import json

import numpy as np

from bench import kernels as bench_kernels
from runtime.monitor import _reference as ref
from runtime.monitor import kernels


def test_numpy_baselines_count_like_the_reference() -> None:
    rng = np.random.default_rng(0)
    col = rng.standard_normal(1000).astype(np.float32)
    col[::97] = np.nan
    col[5] = np.inf
    edges = kernels.edges_as_float32(np.array([-1.0, 0.0, 0.5, 2.0]))
    col[7] = edges[2]  # on an edge: counts above it
    want = ref.count_numeric(col.reshape(-1, 1), [edges.astype(np.float64)])
    np.testing.assert_array_equal(bench_kernels.numpy_count_ge(col, edges), want)
    clean = col[~np.isnan(col)]
    want_clean = ref.count_numeric(clean.reshape(-1, 1), [edges.astype(np.float64)])[:-1]
    np.testing.assert_array_equal(bench_kernels.numpy_searchsorted(clean, edges), want_clean)
    np.testing.assert_array_equal(bench_kernels.numpy_digitize(clean, edges), want_clean)


def test_a_tiny_run_writes_every_figure_with_its_provenance(tmp_path, capsys) -> None:
    out = tmp_path / "k.json"
    argv = ["--rows", "3000", "--rounds", "2", "--request-rounds", "2", "--request-calls", "50"]
    assert bench_kernels.main([*argv, "--no-evidently", "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["script_version"] == bench_kernels.SCRIPT_VERSION
    # Where the run is saved is no part of how it was made: --json is not in its command.
    assert saved["command"] == f"python -m bench.kernels {' '.join(argv)} --no-evidently"
    assert saved["settings"]["rows"] == 3000 and saved["settings"]["evidently_rows"] is None
    assert len(saved["meta"]["commit"]) >= 7 and saved["meta"]["machine"]["usable_cpus"] >= 1
    result = saved["results"]
    assert result["simd"]["mlrt_kernel_simd"] in ("avx512f", "avx2", "default")
    systems = {r["system"]: r for r in result["rows"]}
    for name in ("mlrt C", "mlrt F", "numpy count_ge F", "numpy searchsorted C strided f64"):
        s = systems[name]["ns_per_value"]
        assert 0 < s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]
    assert systems["numpy count_ge F"]["same_input_as"] == "mlrt F"
    assert systems["numpy count_ge C"]["same_input_as"] == "mlrt C"
    assert systems["ModelMonitor.observe"]["goal_us"] == bench_kernels.REQUEST_GOAL_US
    for part, raw in result["raw_seconds_per_call"].items():
        rounds = 2 if part != "stats" else None
        for name, samples in raw.items():
            assert all(t > 0 for t in samples), name
            if rounds:
                assert len(samples) == rounds, name
    shown = capsys.readouterr().out
    assert "numpy best" in shown and "goal < 1 µs" in shown
    # The docs' tables come from the saved file.
    assert bench_kernels.main(["--markdown", str(out)]) == 0
    md = capsys.readouterr().out
    assert md.count("\n| ") >= 9 + 5 + 4 and "| numpy best: `numpy count_ge F` |" in md
    # Several runs: their main figures side by side, one column each.
    assert bench_kernels.main(["--markdown", str(out), str(out)]) == 0
    side = capsys.readouterr().out.splitlines()
    assert len(side) >= 15 and all(line.count("|") == 4 for line in side)
    assert any("`ModelMonitor.observe` (goal < 1 µs)" in line for line in side)
