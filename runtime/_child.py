"""Running a server as a child process for the length of a `with` block (mlrt demo,
mlrt bench on a model file, and the benchmark scripts)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO


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
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
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
