"""Traffic between model versions: endpoints routed to weighted, optionally sticky
variants (routing.py), shadow models that get copies of their requests (shadow.py,
compared by compare.py), the prediction log (predlog.py) and ground-truth feedback
(feedback.py), and a canary's automatic rollback (rollback.py). docs/traffic.md walks
through it."""

from __future__ import annotations

from .feedback import Feedback
from .predlog import PredictionLog, read_log
from .rollback import Rollback, RollbackRule
from .routing import Endpoint, Router, Variant
from .shadow import Shadow

__all__ = [
    "Endpoint",
    "Feedback",
    "PredictionLog",
    "Rollback",
    "RollbackRule",
    "Router",
    "Shadow",
    "Variant",
    "read_log",
]
