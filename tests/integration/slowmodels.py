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
    """The same function; a batch holding a row whose third column is 9 takes `hold_s`,
    any other batch 1 ms. Calibration (zeros) stays quick, and a test can keep the
    model busy for as long as it needs to queue requests behind it."""

    batch_s = 0.001
    hold_s = 0.5

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if len(x) and (x[:, 2] == 9).any():
            time.sleep(self.hold_s)
        return super().__call__(x)
