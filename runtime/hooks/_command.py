"""`type = "command"`: run a program with the event JSON on its stdin."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence

from ..errors import ConfigError
from ._event import DriftEvent, HookError
from ._options import Options

logger = logging.getLogger("runtime.hooks")

_STDERR_TAIL_CHARS = 500


class CommandHook:
    """Runs `command` (an argv list, no shell) with the event JSON on stdin; a non-zero
    exit status or running past `timeout_s` is a failure.

    Example (mlrt.toml)::

        [[hooks]]
        type = "command"
        command = ["./retrain.sh", "--fast"]
        timeout_s = 60
    """

    def __init__(self, command: Sequence[str], *, timeout_s: float = 60.0) -> None:
        if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
            raise ConfigError(f"'command' must be a non-empty list of strings, got {command!r}")
        if not timeout_s > 0:
            raise ConfigError(f"'timeout_s' must be > 0, got {timeout_s!r}")
        # Found now, not at the first drift episode weeks later.
        if shutil.which(command[0]) is None:
            raise ConfigError(f"command {command[0]!r} not found or not executable")
        self.command = list(command)
        self.timeout_s = timeout_s
        self.name = f"command:{command[0]}"

    @classmethod
    def from_options(cls, options: Options) -> CommandHook:
        command = options.raw("command")
        if command is None:
            raise ConfigError("missing required option 'command'")
        timeout_s = options.number("timeout_s", 60.0, strict=True)
        options.finish()
        return cls(command, timeout_s=timeout_s)

    def __repr__(self) -> str:
        return f"CommandHook({self.command!r}, timeout_s={self.timeout_s!r})"

    def __call__(self, event: DriftEvent) -> None:
        payload = json.dumps(event.to_json()).encode()
        try:
            # Its own process group: at the timeout the programs it started go too (a
            # retrain.sh running `python train.py`), not only the script itself.
            proc = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            raise HookError(f"{self.name} could not start: {exc}") from exc
        try:
            stdout, stderr = proc.communicate(payload, timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.communicate()
            raise HookError(f"{self.name} timed out after {self.timeout_s:g} s") from None
        except BaseException:
            _kill_group(proc)
            raise
        if stdout:
            logger.debug("%s stdout: %s", self.name, _tail(stdout))
        if proc.returncode != 0:
            tail = _tail(stderr)
            detail = f": {tail}" if tail else ""
            raise HookError(f"{self.name} exited with status {proc.returncode}{detail}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # gone already
        pass


def _tail(data: bytes) -> str:
    text = data.decode(errors="replace").strip()
    return text if len(text) <= _STDERR_TAIL_CHARS else "..." + text[-_STDERR_TAIL_CHARS:]
