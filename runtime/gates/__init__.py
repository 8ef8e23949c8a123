"""CI gates: checks a pipeline runs before a model version is registered or promoted, each
a command with an exit code and a report (docs/gates.md).

    result = gate("new.onnx", "churn@champion", "test.parquet", "churned", "auc")
    result.passed, result.to_json()
"""

from __future__ import annotations

from .gate import METRICS, GateResult, gate

__all__ = ["METRICS", "GateResult", "gate"]
