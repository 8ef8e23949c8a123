"""Traffic between model versions: endpoints routed to weighted, optionally sticky
variants (routing.py). docs/traffic.md walks through it."""

from __future__ import annotations

from .routing import Endpoint, Router, Variant

__all__ = ["Endpoint", "Router", "Variant"]
