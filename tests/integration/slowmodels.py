"""Python models for the load tests, served as `name=tests.integration.slowmodels:Class`.

They sleep on every batch, so under concurrent load requests pile up in the queue and
are in flight whenever the test looks (or sends SIGTERM). Each output row depends on
its own input row only: y = 2x + 1.

If the environment variable named by COMPUTED_LOG_ENV is set, every batch appends the
first two columns of each of its rows (the tests put a client id and a sequence number
there) to that file *before* returning. A request the model computed was accepted by
the server, so the test can check that each such request got its response.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np

COMPUTED_LOG_ENV = "MLRT_TEST_COMPUTED_LOG"


class SlowDouble:
    """x FP32 [-1, 4] -> y FP32 [-1, 4] = 2x + 1, after sleeping `batch_s` per batch."""

    batch_s = 0.005
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    outputs = [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]

    def __init__(self) -> None:
        self._log_path = os.environ.get(COMPUTED_LOG_ENV)
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        time.sleep(self.batch_s)
        y = reference(x)
        if self._log_path:
            lines = "".join(f"{int(a)} {int(b)}\n" for a, b in x[:, :2])
            with self._lock, open(self._log_path, "a") as f:
                f.write(lines)
        return y


class BriefDouble(SlowDouble):
    """The same function, 1 ms per batch."""

    batch_s = 0.001


class LongDouble(SlowDouble):
    """The same function, 2.5 s for a batch whose first value is 100 or more (longer than
    the keep-alive the tests set); at once otherwise, so loading it stays quick."""

    batch_s = 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.size and x.flat[0] >= 100:
            time.sleep(2.5)
        return reference(x)


def reference(x: np.ndarray) -> np.ndarray:
    """What both models compute, for checking responses."""
    return (np.asarray(x, np.float32) * 2 + 1).astype(np.float32)


def read_computed(path: str | os.PathLike[str]) -> set[tuple[int, int]]:
    """The (client, seq) pairs the model computed, per the log (calibration rows are 0 0)."""
    try:
        with open(path) as f:
            pairs = {(int(a), int(b)) for a, b in (line.split() for line in f if line.strip())}
    except FileNotFoundError:
        return set()
    return pairs - {(0, 0)}


class HeldDouble(SlowDouble):
    """The same function; a batch holding a row whose third column is 9 is held, any other
    batch takes 1 ms. Calibration (zeros) stays quick, and a test can keep the model busy
    for as long as it needs to queue requests behind it.

    With HOLD_DIR_ENV set to a folder, the hold is the test's to end: the model creates
    `holding-CLIENT-SEQ` there when it starts holding (the test knows the model is busy)
    and waits for `release-CLIENT-SEQ` (the test lets it go), at most `max_hold_s`.
    Without it, the hold is `hold_s`."""

    batch_s = 0.001
    hold_s = 0.5
    max_hold_s = 60.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        held = x[x[:, 2] == 9] if len(x) else x[:0]
        if len(held):
            folder = os.environ.get(HOLD_DIR_ENV)
            if folder:
                _hold(Path(folder), [f"{int(a)}-{int(b)}" for a, b in held[:, :2]], self.max_hold_s)
            else:
                time.sleep(self.hold_s)
        return super().__call__(x)


HOLD_DIR_ENV = "MLRT_TEST_HOLD_DIR"


def _hold(folder: Path, keys: list[str], max_s: float) -> None:
    for key in keys:
        (folder / f"holding-{key}").touch()
    deadline = time.monotonic() + max_s
    while not all((folder / f"release-{key}").exists() for key in keys):
        if time.monotonic() > deadline:
            return  # the test failed or forgot: do not hang the server
        time.sleep(0.002)
