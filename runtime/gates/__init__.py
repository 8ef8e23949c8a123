"""CI gates: checks a pipeline runs before a model version is registered or promoted, each
a command with an exit code and a report (docs/gates.md).

    result = gate("new.onnx", "churn@champion", "test.parquet", "churned", "auc")
    checked = validate("today.parquet", "reference.json")
    result.passed, checked.passed, checked.to_json()
"""

from __future__ import annotations

from .gate import METRICS, GateResult, gate
from .validate import Check, ValidationResult, validate

__all__ = ["METRICS", "Check", "GateResult", "ValidationResult", "gate", "validate"]
