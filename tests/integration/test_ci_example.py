"""examples/ci/pipeline.sh end to end, as a user runs it: train two models of different
quality on breast-cancer data, validate, gate, register with the gate's report, promote
through staging to champion with --require-gate, and stop a worse candidate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_pipeline_runs_and_its_gates_hold(tmp_path: Path) -> None:
    pytest.importorskip("skl2onnx")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLRT_REGISTRY", None)
    run = subprocess.run(
        ["bash", str(ROOT / "examples/ci/pipeline.sh"), str(tmp_path)],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "pipeline done: cancer@champion is version 2" in run.stdout
    # The worse candidate failed its gate, and its promotion was refused.
    assert "gate FAILED" in run.stdout and "failed its gate" in run.stderr
    card = json.loads((tmp_path / "registry/cancer/2/card.json").read_text())
    gate = card["gate"]
    assert gate["passed"] and gate["metric"] == "auc" and gate["candidate"] > gate["baseline"]
    assert gate["baseline_model"] == "cancer@champion" and gate["baseline_version"] == "1"
    assert len(gate["data_sha256"]) == 64 and gate["rows"] == 285
    aliases = json.loads((tmp_path / "registry/cancer/aliases.json").read_text())
    assert aliases == {"champion": "2", "staging": "2"}
    report = (tmp_path / "validate.md").read_text()
    assert report.startswith("**mlrt validate PASSED**") and "| result | family |" in report
    # The candidate is registered with a profile of its own outputs, not the champion's
    # (whose scores another model does not give: prediction drift from the first request),
    # and judged by it on the held-out rows it is in no drift.
    profiles = [json.loads((tmp_path / f"registry/cancer/{v}/profile.json").read_text()) for v in "12"]
    assert profiles[0]["features"] == profiles[1]["features"]
    assert profiles[0]["outputs"] != profiles[1]["outputs"]
    drift = subprocess.run(
        ["mlrt", "drift", str(tmp_path / "registry/cancer/2/profile.json"), str(tmp_path / "test.parquet"),
         "--model", "cancer@champion", "--format", "json", "--fail-on-drift"],
        capture_output=True, text=True, timeout=300, env={**env, "MLRT_REGISTRY": str(tmp_path / "registry")},
        check=False,
    )  # fmt: skip
    assert drift.returncode == 0, drift.stdout[-2000:] + drift.stderr[-2000:]
