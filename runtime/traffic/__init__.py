"""Traffic between model versions: endpoints routed to weighted, optionally sticky
variants (routing.py), and shadow models that get copies of their requests (shadow.py,
compared by compare.py). docs/traffic.md walks through it."""

from __future__ import annotations

from .routing import Endpoint, Router, Variant
from .shadow import Shadow

__all__ = ["Endpoint", "Router", "Shadow", "Variant"]
