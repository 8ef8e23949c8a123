"""The published benchmark tables are what their raw results give (bench/__main__.py), and
the check notices each way a table goes stale: edited by hand, a newer run not yet in it, a
raw file gone, or results from an older version of the script."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path

import pytest

import bench.__main__ as cli
from bench import _results, predict


def test_the_published_tables_are_generated_from_current_results() -> None:
    # bench/README.md and every page of docs/ that shows a generated table.
    assert cli.check_pages() == []


def _saved_run(
    results: Path, stamp: str, *, version: int = predict.SCRIPT_VERSION, rows: int = 100,
    argv: tuple[str, ...] = ("--rss",),
) -> Path:  # fmt: skip
    run = _results.Run(
        "predict_rss", version, {"rss_rows": [rows, 10 * rows]}, argv=list(argv), script="predict"
    )
    return run.save({"peak_rss_mib": {str(rows): [100.0, 102.0], str(10 * rows): [110.0, 111.0]}},
                    results / f"predict_rss-{stamp}.json")  # fmt: skip


@pytest.fixture
def page(tmp_path: Path) -> tuple[Path, str]:
    """A results folder with one run, and a page whose block names it, generated."""
    results = tmp_path / "results"
    _saved_run(results, "2026-01-01T000000")
    block = (
        "<!-- bench:predict_rss results/predict_rss-2026-01-01T000000.json -->\n<!-- /bench:predict_rss -->"
    )
    text = f"intro\n\n{block}\n"
    return results, cli.regenerate(text, results)


def _own(found: list[str]) -> list[str]:
    # The page holds one block; every other registered benchmark is reported missing.
    return [f for f in found if not f.startswith("bench/README.md has no generated block")]


def test_a_generated_page_passes_and_names_its_raw_file(page: tuple[Path, str]) -> None:
    results, text = page
    assert _own(cli.problems(text, results)) == []
    assert "| 100 | 100 / 102 |" in text
    assert "PASS: largest over smallest median +9.4% (goal: within 20%)" in text
    assert "raw: `results/predict_rss-2026-01-01T000000.json`" in text
    assert "`python -m bench.predict --rss` on commit " in text


def test_a_figure_edited_by_hand_is_noticed(page: tuple[Path, str]) -> None:
    results, text = page
    found = _own(cli.problems(text.replace("100 / 102", "90 / 92"), results))
    assert found == [
        "block 'predict_rss': differs from what results/predict_rss-2026-01-01T000000.json gives: "
        "`python -m bench tables`"
    ]


def test_a_newer_run_not_yet_in_the_table_is_noticed(page: tuple[Path, str]) -> None:
    results, text = page
    _saved_run(results, "2026-02-01T000000", rows=200)
    found = _own(cli.problems(text, results))
    assert found == [
        "block 'predict_rss': results/predict_rss-2026-01-01T000000.json is not the newest run "
        "(predict_rss-2026-02-01T000000.json): `python -m bench tables`"
    ]
    regenerated = cli.regenerate(text, results)
    assert "results/predict_rss-2026-02-01T000000.json" in regenerated
    assert _own(cli.problems(regenerated, results)) == []


def test_a_newer_run_at_other_settings_is_kept_but_not_published(page: tuple[Path, str]) -> None:
    results, text = page
    other = _saved_run(results, "2026-02-01T000000", rows=200, argv=("--rss", "--rss-rows", "200,2000"))
    assert _own(cli.problems(text, results)) == []
    assert cli.regenerate(text, results) == text
    # Named in a block by hand, it is refused.
    by_hand = text.replace("predict_rss-2026-01-01T000000.json -->", f"{other.name} -->")
    assert _own(cli.problems(by_hand, results)) == [
        f"block 'predict_rss': results/{other.name} was run as "
        "`python -m bench.predict --rss --rss-rows 200,2000`, not at the published settings "
        "(`python -m bench.predict --rss`)"
    ]


def test_results_of_an_older_script_version_are_stale(page: tuple[Path, str]) -> None:
    results, text = page
    path = results / "predict_rss-2026-01-01T000000.json"
    saved = json.loads(path.read_text())
    saved["script_version"] = predict.SCRIPT_VERSION - 1
    path.write_text(json.dumps(saved))
    found = _own(cli.problems(text, results))
    assert found == [
        f"block 'predict_rss': results/predict_rss-2026-01-01T000000.json comes from version "
        f"{predict.SCRIPT_VERSION - 1} of bench/predict.py, which is at version {predict.SCRIPT_VERSION} "
        "now: rerun `python -m bench all --full --only predict_rss`"
    ]
    # An old run is never picked to regenerate the table either.
    assert cli.regenerate(text, results) == text


def test_a_raw_file_gone_is_noticed(page: tuple[Path, str]) -> None:
    results, text = page
    shutil.rmtree(results)
    assert _own(cli.problems(text, results)) == [
        "block 'predict_rss': results/predict_rss-2026-01-01T000000.json does not exist"
    ]


def test_a_docs_page_names_the_raw_file_from_where_it_stands(page: tuple[Path, str]) -> None:
    # The marker names the file relative to bench/ everywhere; the line under a table on a
    # page of docs/ names it from the repository's root, and only bench/README.md must show
    # every benchmark.
    results, _ = page
    marker = "<!-- bench:predict_rss results/predict_rss-2026-01-01T000000.json -->"
    block = f"{marker}\n<!-- /bench:predict_rss -->"
    text = cli.regenerate(f"intro\n\n{block}\n", results, "bench/results/")
    assert "raw: `bench/results/predict_rss-2026-01-01T000000.json`" in text
    assert cli.problems(text, results, "bench/results/", every=False) == []
    assert cli.problems(text, results, "results/", every=False) == [
        "block 'predict_rss': differs from what results/predict_rss-2026-01-01T000000.json gives: "
        "`python -m bench tables`"
    ]


def test_every_registered_benchmark_needs_a_block(page: tuple[Path, str]) -> None:
    results, text = page
    missing = [f for f in cli.problems(text, results) if f not in _own(cli.problems(text, results))]
    others = [b.name for b in cli.BENCHES if b.name != "predict_rss"]
    assert missing == [f"bench/README.md has no generated block for '{name}'" for name in others]


def test_a_run_records_what_a_rerun_needs(tmp_path: Path) -> None:
    saved = json.loads(_saved_run(tmp_path, "2026-01-01T000000").read_text())
    assert saved["benchmark"] == "predict_rss" and saved["script_version"] == predict.SCRIPT_VERSION
    assert saved["command"] == "python -m bench.predict --rss"
    meta = saved["meta"]
    assert set(meta) >= {"date", "commit", "dirty", "load_before", "load_after", "machine", "versions"}
    assert {"numpy", "onnxruntime", "pyarrow", "python"} <= set(meta["versions"])
    assert meta["machine"]["usable_cpus"] >= 1
    assert saved["settings"] == {"rss_rows": [100, 1000]}


@pytest.mark.parametrize(
    "script", sorted(p.stem for p in (_results.ROOT / "bench").glob("*.py") if not p.stem.startswith("__"))
)
def test_every_bench_script_imports(script: str) -> None:
    # A helper moved between scripts breaks the ones importing it; no quick run covers them all.
    importlib.import_module(f"bench.{script}")
