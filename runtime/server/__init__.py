"""The HTTP server: the only package that imports Starlette."""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
