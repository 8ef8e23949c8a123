"""Starting mlrt as a child process: the command line for it (`mlrt_command`), and a
server child for the length of a `with` block (mlrt demo, mlrt bench on a model file,
and the benchmark scripts)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

# What the child runs, with `-c`. `python -m runtime` would put the current directory
# first on sys.path, so started from a source checkout (a `runtime/` folder without its
# compiled extensions) the child would import that folder instead of the installed
# package. `-P` avoids it only on Python 3.11+. So: drop the '' that -c puts first
# (absent under -P or PYTHONSAFEPATH), import the very package the parent runs from its
# folder, then take that folder off again. Once imported, `runtime` and its submodules
# resolve through runtime.__path__, so nothing later on sys.path (PYTHONPATH, which
# stays as the user set it, or the current directory `mlrt serve` adds for model
# modules) can shadow them.
_BOOT = """\
import sys
if sys.path and sys.path[0] == "" and not getattr(sys.flags, "safe_path", False):
    del sys.path[0]
sys.path.insert(0, {root!r})
import runtime
del sys.path[0]
from runtime.cli import main
sys.exit(main())
"""


def package_root() -> str:
    """The folder that holds the `runtime` package this process runs (site-packages for
    an installed mlrt, the checkout for an editable one)."""
    import runtime

    return str(Path(runtime.__file__).resolve().parent.parent)


def mlrt_command(*args: str) -> list[str]:
    """The command line that runs this process's mlrt (`mlrt ARGS...`) in a new
    interpreter, importing the same `runtime` package whatever the child's working
    directory holds. Every place that starts an mlrt child builds its command here."""
    return [sys.executable, "-c", _BOOT.format(root=package_root()), *args]


class ServerStartError(RuntimeError):
    """The child exited, or was not ready in time; the message ends with its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(log: IO[bytes], lines: int = 20) -> str:
    log.flush()
    log.seek(0)
    return "\n".join(log.read().decode(errors="replace").strip().splitlines()[-lines:])


@contextlib.contextmanager
def running_server(
    cmd: Sequence[str],
    ready_url: str,
    *,
    log: IO[bytes] | Path | None = None,
    timeout_s: float = 60.0,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start `cmd`, wait until GET `ready_url` answers 200, and stop it (SIGTERM, then
    kill after 30 s) when the block ends.

    Output goes to `log` (a binary file or a path; a temporary file by default), never
    to a pipe: a pipe nobody reads fills up and stalls a server that logs under load.
    """
    import httpx

    with contextlib.ExitStack() as stack:
        if log is None:
            out: IO[bytes] = stack.enter_context(open_temp())
        elif isinstance(log, Path):
            out = stack.enter_context(open(log, "w+b"))
        else:
            out = log
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise ServerStartError(f"{cmd[0]} exited with code {proc.returncode}:\n{_tail(out)}")
                try:
                    if httpx.get(ready_url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerStartError(f"not ready within {timeout_s:.0f} s:\n{_tail(out)}")
                time.sleep(0.1)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def open_temp() -> IO[bytes]:
    import tempfile

    return tempfile.TemporaryFile()
