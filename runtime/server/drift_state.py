"""Drift counts across restarts: each monitored model version's counts are written to
`<state_dir>/<model>@<version>.npz` (atomically: write, then rename) and read back at
start when the saved profile fingerprint matches the profile in use.

Worker i > 0 of a server run with `--workers N` keeps its own counts in
`<model>@<version>.w<i>.npz` (worker 0 in the plain name): the server's counts are their
sum, as in /metrics."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..repository import LoadedModel

log = logging.getLogger("mlrt.drift")


def state_path(state_dir: str, entry: LoadedModel, worker: int = 0) -> Path:
    safe = f"{entry.model.name}@{entry.model.version}".replace(os.sep, "_")
    return Path(state_dir) / (f"{safe}.npz" if worker == 0 else f"{safe}.w{worker}.npz")


def prepare_state_dir(path: str) -> None:
    """Create `path` if needed and prove a file can be written there, so a bad --state-dir
    stops the server at start instead of losing the counts at exit."""
    where = Path(path)
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".mlrt-probe-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--state-dir {path}: drift counts could not be saved there ({exc.strerror or exc})"
        ) from None


def save(state_dir: str, entries: Iterable[LoadedModel], worker: int = 0) -> None:
    """Write every monitor's counts (atomically: a crash never leaves half a file)."""
    os.makedirs(state_dir, exist_ok=True)
    for entry in entries:
        assert entry.monitor is not None
        state: dict[str, Any] = entry.monitor.state()
        path = state_path(state_dir, entry, worker)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{k: np.asarray(v) for k, v in state.items()})
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def restore(state_dir: str, entries: Iterable[LoadedModel], worker: int = 0) -> None:
    """Load each monitor's saved counts, if any and if saved for the same profile."""
    for entry in entries:
        assert entry.monitor is not None
        path = state_path(state_dir, entry, worker)
        if not path.exists():
            continue
        try:
            with np.load(path) as data:
                state = {k: data[k] for k in data.files}
            state = {k: (v.item() if v.ndim == 0 else v) for k, v in state.items()}
            if entry.monitor.restore(state):
                name, version = entry.model.name, entry.model.version
                log.info("model '%s' v%s: drift counts restored from %s", name, version, path)
            else:
                log.warning(
                    "model '%s' v%s: %s was saved for another profile; starting afresh",
                    entry.model.name,
                    entry.model.version,
                    path,
                )
        except (OSError, ValueError, KeyError) as exc:
            log.warning("model '%s': cannot restore drift counts from %s: %s", entry.model.name, path, exc)
