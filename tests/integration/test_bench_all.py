"""`python -m bench all --quick` runs benchmarks end to end as a user would, and each run's
raw file renders into the table bench/README.md would carry. No timing is judged: the
figures of a quick run mean nothing, the plumbing is what is tested."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import bench.__main__ as cli
from tests.integration.serving import REPO_ROOT

pytestmark = pytest.mark.integration

# The benchmarks cheap enough for the test suite in their quick form, and needing nothing CI
# does not install (no wrk, no MLServer, no Evidently, no Spark).
CHEAP = [
    "predict", "predict_rss", "kernels", "cold_request", "hooks_dispatch", "datatypes", "timeline",
    "wakeup", "python_inline", "validate_rates", "drift_power", "drift_power_fit64",
]  # fmt: skip


def test_all_quick_writes_a_raw_file_per_benchmark_that_renders(tmp_path: Path) -> None:
    only = ",".join(CHEAP)
    cmd = [sys.executable, "-m", "bench", "all", "--quick", "--only", only, "--results", str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in CHEAP:
        bench = cli.BY_NAME[name]
        (path,) = tmp_path.glob(f"{name}-[0-9]*.json")
        saved = json.loads(path.read_text())
        assert saved["benchmark"] == name
        assert saved["script_version"] == cli.module(bench).SCRIPT_VERSION
        assert saved["command"].startswith(f"python -m bench.{bench.script} ")
        assert saved["meta"]["versions"]["numpy"] and saved["meta"]["load_after"] is not None
        body = cli.render(bench, path)
        assert body.count("\n| ") >= 2, body  # a Markdown table with rows
        assert f"raw: `results/{path.name}`" in body
        assert f"[bench all] {name}: exit 0" in done.stderr
    # A quick run never touches the published tables.
    assert cli.check_pages() == []


def test_an_unknown_benchmark_is_refused_by_name() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "all", "--only", "predict,nope"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "unknown benchmark(s): nope; `python -m bench list` names them" in done.stderr
