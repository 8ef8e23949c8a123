"""Running `mlrt` the way its console script does, from any working directory.

`python -m runtime` puts the working directory first on sys.path; the `mlrt` script
that pip installs puts its own folder there instead. These tests run mlrt from folders
that hold look-alike modules (a `runtime/` package, a user's model module), so they
start it like the script: the working directory is not on sys.path, and `runtime` is
the package under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.integration.serving import REPO_ROOT

# What the console script does (runtime.cli:main), with the package under test found
# through REPO_ROOT rather than through the script's folder.
_SCRIPT = f"import sys; sys.path[0] = {str(REPO_ROOT)!r}; from runtime.cli import main; sys.exit(main())"


def mlrt(*args: str) -> list[str]:
    """The command line of `mlrt ARGS...` as the console script runs it."""
    return [sys.executable, "-c", _SCRIPT, *args]


def environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without PYTHONPATH (a user's shell has none), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra or {})
    return env


def run_mlrt(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mlrt(*args), cwd=cwd, env=environ(env), capture_output=True, text=True, timeout=timeout_s
    )


def runtime_shadow(folder: Path) -> Path:
    """A `runtime/` package in `folder` that fails loudly when imported: what a source
    checkout is to a child that imports from its working directory (the checkout's
    `runtime/` has no compiled extensions)."""
    pkg = folder / "runtime"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text(
        'raise ImportError("imported the runtime/ folder of the working directory, not mlrt")\n'
    )
    return folder
