"""The `mlrt` subcommands, one module each (runtime/cli.py), and what several share."""


def server_error(response: object) -> str:
    """A running server's refusal in words: its `{"error": ...}` text, else the body's start."""
    try:
        message = response.json().get("error", response.text)  # type: ignore[attr-defined]
    except ValueError:
        message = response.text[:200]  # type: ignore[attr-defined]
    return f"{response.status_code} {message}"  # type: ignore[attr-defined]
