"""The `mlrt` subcommands, one module each (runtime/cli.py), and what several share."""

from __future__ import annotations

import sys
from collections.abc import Callable


def server_error(response: object) -> str:
    """A running server's refusal in words: its `{"error": ...}` text, else the body's start."""
    try:
        message = response.json().get("error", response.text)  # type: ignore[attr-defined]
    except ValueError:
        message = response.text[:200]  # type: ignore[attr-defined]
    return f"{response.status_code} {message}"  # type: ignore[attr-defined]


def failer(command: str) -> Callable[[str], int]:
    """`fail(message)`: say what is wrong as `mlrt COMMAND: message` on stderr; exit status 2."""

    def fail(message: str) -> int:
        print(f"mlrt {command}: {message}", file=sys.stderr)
        return 2

    return fail
