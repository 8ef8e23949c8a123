"""Streaming bin counts of live traffic against a reference profile."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..data import to_columns
from . import kernels
from .profile import CATEGORICAL, FeatureProfile, Profile

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


class Histogram:
    """Counts of live rows in the bins of a profile, and drift against it.

    Counts live in a ring of ``windows`` sub-window arrays; the current one is
    written by ``update``, ``rotate`` (or ``rows_per_window`` /
    ``seconds_per_window``) starts the next, and ``counts`` is the sum of the
    ring: a sliding window.  With one window (the default) counts accumulate
    until ``reset``.  Counts from other processes ``merge`` exactly.

    >>> import numpy as np
    >>> ref = Profile.fit(np.random.default_rng(0).normal(size=(10_000, 2)))
    >>> h = Histogram(ref)
    >>> h.update(np.random.default_rng(1).normal(size=(5_000, 2)))
    >>> bool((h.psi() < 0.1).all())
    True
    """

    def __init__(
        self,
        profile: Profile,
        *,
        section: str = "features",
        windows: int = 1,
        rows_per_window: int | None = None,
        seconds_per_window: float | None = None,
        eps: float = kernels.DEFAULT_EPS,
    ) -> None:
        if section not in ("features", "outputs"):
            raise ValueError(f"section must be 'features' or 'outputs', got {section!r}")
        if windows < 1:
            raise ValueError(f"windows must be >= 1, got {windows}")
        if rows_per_window is not None and rows_per_window < 1:
            raise ValueError(f"rows_per_window must be >= 1, got {rows_per_window}")
        if seconds_per_window is not None and not seconds_per_window > 0:
            raise ValueError(f"seconds_per_window must be > 0, got {seconds_per_window}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        feats: list[FeatureProfile] = list(getattr(profile, section))
        self.profile = profile
        self.features = feats
        self.names = [f.name for f in feats]
        self.eps = float(eps)
        self.rows_per_window = rows_per_window
        self.seconds_per_window = seconds_per_window

        sizes = [f.n_slots for f in feats]
        self.offsets = np.zeros(len(feats) + 1, dtype=np.int64)
        self.offsets[1:] = np.cumsum(sizes)
        n_slots = int(self.offsets[-1])
        self.expected = np.array([c for f in feats for c in f.counts], dtype=np.int64).reshape(n_slots)
        self._ring = np.zeros((windows, n_slots), dtype=np.int64)
        self._slot_rows = [0] * windows
        self._slot = 0
        self._slot_started = time.monotonic()
        self._window = np.zeros(n_slots, dtype=np.int64)
        # Counts of sub-windows that rotated out: with the ring they make the totals since load.
        self._retired = np.zeros(n_slots, dtype=np.int64)
        self._retired_rows = 0
        self._stat = np.empty(len(feats), dtype=np.float64)

        num = [j for j, f in enumerate(feats) if f.kind != CATEGORICAL]
        edges64, edge_offsets = kernels.flatten_edges([feats[j].edges for j in num])
        self._num_cols = np.array(num, dtype=np.int64)
        self._numeric = kernels.NumericCounter(
            edges64,
            kernels.edges_as_float32(edges64),
            edge_offsets,
            self._num_cols,
            self.offsets[:-1][self._num_cols].copy(),
            self._ring[0],
        )
        self._cat = [j for j, f in enumerate(feats) if f.kind == CATEGORICAL]
        self._cat_numeric = [j for j in self._cat if numeric_levels(feats[j].levels)]
        self._cat_levels, self._cat_level_offsets = kernels.flatten_edges([])
        # Values are rounded to each feature's dtype (the model's) before they are
        # counted, so float64 data (a CSV) counts as the float32 tensor the model gets.
        narrow: dict[np.dtype, list[int]] = {}
        for j, f in enumerate(feats):
            if f.rounds:
                narrow.setdefault(np.dtype(f.dtype), []).append(j)
        self._narrow = [(dt, np.array(cols, dtype=np.int64)) for dt, cols in narrow.items()]
        narrowest = min((dt.itemsize for dt in narrow), default=8)
        # The data dtypes that go to a kernel as they are (None: they need rounding first).
        self._as_is_f32 = _F32 if narrowest >= 4 else None
        self._as_is_f64 = _F64 if narrowest == 8 else None
        self._all_f32 = list(narrow) == [_F32] and len(narrow[_F32]) == len(feats)
        #: The dtype rows are best handed in: what every feature is rounded to, if one.
        self.dtype = _F32 if self._all_f32 else _F64
        self._level_values = {j: _levels_as(feats[j]) for j in self._cat_numeric}
        self._cat_levels, self._cat_level_offsets = self._flat_levels(self._cat_numeric)
        self._tables = {j: _level_table(feats[j].levels) for j in self._cat}
        self._dispatch = {
            np.dtype(np.float32): self._numeric.update_f32,
            np.dtype(np.float64): self._numeric.update_f64,
        }
        self._numeric_only = not self._cat
        self._update_f32 = self._numeric.update_f32
        self._update_f64 = self._numeric.update_f64
        self._n_features = len(feats)
        self._rotating = rows_per_window is not None or seconds_per_window is not None
        # What the per-request fast path compares against (a method call there costs ~0.5 us).
        self._rotate_rows = rows_per_window if rows_per_window is not None else 2**62

    @property
    def _rotate_at(self) -> float:
        secs = self.seconds_per_window
        return self._slot_started + secs if secs is not None else float("inf")

    # -- counting ---------------------------------------------------------------
    def update(self, X: Any) -> None:
        """Count rows: a 2-D array (columns in profile order), one 1-D row, a
        mapping of named columns, or a pyarrow Table/RecordBatch."""
        # Fast path, ~0.5 us for one row: identity checks only, no allocation.
        if type(X) is np.ndarray and self._numeric_only:
            dt = X.dtype
            fn = (
                self._update_f32 if dt is self._as_is_f32
                else self._update_f64 if dt is self._as_is_f64
                else None
            )  # fmt: skip
            shape = X.shape
            if fn is not None and shape[-1] == self._n_features:
                if len(shape) == 1:
                    X = X.reshape(1, -1)
                    shape = X.shape
                if len(shape) == 2:
                    if self._rotating and (
                        time.monotonic() >= self._rotate_at
                        or self._slot_rows[self._slot] >= self._rotate_rows
                    ):
                        self._maybe_rotate()
                    fn(X)
                    self._slot_rows[self._slot] += shape[0]
                    return
        self._update_slow(X)

    def count_now(self, X: np.ndarray) -> None:
        """Count a 2-D numeric matrix into the current sub-window, without checking
        whether it is time to rotate (the caller has: see ModelMonitor's staging)."""
        if not self._numeric_only:
            raise ValueError("count_now is for profiles without categorical features; use update()")
        dt = X.dtype
        if dt is not self._as_is_f32 and dt is not self._as_is_f64:
            X = self.rounded(X)
            dt = X.dtype
        # The counter answers how many rows it counted.
        self._slot_rows[self._slot] += (self._update_f32 if dt is _F32 else self._update_f64)(X)

    def due(self, now: float) -> bool:
        """Whether a time window's current sub-window is over at `now`."""
        return self._rotating and now >= self._rotate_at

    def _maybe_rotate(self) -> None:
        rows = self.rows_per_window
        secs = self.seconds_per_window
        if rows is not None and self._slot_rows[self._slot] >= rows:
            self.rotate()
        elif secs is not None and time.monotonic() - self._slot_started >= secs:
            self.advance()

    def advance(self, now: float | None = None) -> None:
        """Rotate once per sub-window that has elapsed by `now` (time windows only), so
        a window with no traffic empties instead of holding stale counts."""
        secs = self.seconds_per_window
        if secs is None:
            return
        now = time.monotonic() if now is None else now
        elapsed = int((now - self._slot_started) // secs)
        if elapsed <= 0:
            return
        started = self._slot_started
        for _ in range(min(elapsed, len(self._ring))):
            self.rotate()
        # Keep sub-window boundaries on the original grid.
        self._slot_started = started + elapsed * secs

    def rounded(self, M: np.ndarray) -> np.ndarray:
        """A numeric matrix (rows x features) with each column rounded to its feature's
        dtype, as float32 or float64 for the kernels; M itself when nothing changes."""
        if M.dtype is self._as_is_f32 or M.dtype is self._as_is_f64:
            return M
        # A value past float32's range becomes an infinity, as the model would receive it
        # (and as Profile.fit's as_served rounds the reference): no warning per request.
        with np.errstate(over="ignore"):
            if self._all_f32:
                return M.astype(np.float32)  # every feature is float32: one cast, the f32 kernel
            out = np.array(M, dtype=np.float64)
            for dt, cols in self._narrow:
                if M.dtype.kind != "f" or M.dtype.itemsize > dt.itemsize:
                    out[:, cols] = out[:, cols].astype(dt)
        return out

    def _update_slow(self, X: Any) -> None:
        if isinstance(X, np.ndarray) and X.dtype != object and X.dtype.kind in "fiub":
            M = X.reshape(1, -1) if X.ndim == 1 else X
            if M.ndim != 2 or M.shape[1] != len(self.names):
                raise ValueError(
                    f"expected rows of {len(self.names)} features {self.names}, got shape {X.shape}"
                )
            M = self.rounded(M)
            objects: dict[int, np.ndarray] = {}
        else:
            M, objects = self._matrices(X)
            M = self.rounded(M)
        if self._rotating:
            self._maybe_rotate()
        counts = self._ring[self._slot]
        if len(self._num_cols):
            self._dispatch[M.dtype](M)
        self._slot_rows[self._slot] += M.shape[0]
        if not self._cat:
            return
        # Numeric data of numeric levels: compared as numbers, rounded to the feature's
        # dtype like the levels (a float32 0.1 is that level); the rest by table lookup.
        by_value = [j for j in self._cat_numeric if j not in objects]
        if by_value:
            levels, level_offsets = (
                (self._cat_levels, self._cat_level_offsets)
                if len(by_value) == len(self._cat_numeric)
                else self._flat_levels(by_value)
            )
            cols = np.array(by_value, dtype=np.int64)
            kernels.count_levels(M, cols, levels, level_offsets, self.offsets[:-1][cols].copy(), counts)
        by_table = [j for j in self._cat if j not in by_value]
        if by_table:
            table = np.empty((M.shape[0], len(self.names)), dtype=object)
            for j in by_table:
                table[:, j] = objects[j] if j in objects else M[:, j].astype(object)
            cols = np.array(by_table, dtype=np.int64)
            n_levels = np.array([len(self.features[j].levels) for j in by_table], dtype=np.int64)
            tables = [self._tables[j] for j in by_table]
            kernels.count_levels_object(table, cols, tables, n_levels, self.offsets[:-1][cols].copy(), counts)

    def _flat_levels(self, cols: list[int]) -> tuple[np.ndarray, np.ndarray]:
        return kernels.flatten_edges([]) if not cols else (
            np.concatenate([self._level_values[j] for j in cols]),
            np.concatenate([[0], np.cumsum([self._level_values[j].size for j in cols])]).astype(np.int64),
        )

    def _matrices(self, X: Any) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """A float64 matrix of every numeric column (categorical ones with numeric values
        too), and the columns that are not numbers (text levels), by feature index."""
        if isinstance(X, np.ndarray):
            arr = X.reshape(1, -1) if X.ndim == 1 else X
            if arr.ndim != 2 or arr.shape[1] != len(self.names):
                raise ValueError(f"expected rows of {len(self.names)} features, got shape {X.shape}")
            columns = {n: arr[:, j] for j, n in enumerate(self.names)}
        else:
            columns = to_columns(X) if not isinstance(X, Mapping) else to_columns(dict(X))
            missing = [n for n in self.names if n not in columns]
            if missing:
                raise ValueError(f"input lacks feature(s) {missing}")
        n = len(next(iter(columns.values()))) if columns else 0
        M = np.full((n, len(self.names)), np.nan)
        objects: dict[int, np.ndarray] = {}
        for j, name in enumerate(self.names):
            col = np.asarray(columns[name])
            if self.features[j].kind == CATEGORICAL:
                if col.dtype.kind in "fiub":
                    M[:, j] = col
                else:
                    objects[j] = col
                continue
            try:
                M[:, j] = np.asarray(col, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"feature {name!r} is numeric; got {col[:3]!r}") from None
        return M, objects

    # -- windows ----------------------------------------------------------------
    def rotate(self) -> None:
        """Start the next sub-window, dropping the oldest one's counts."""
        self._slot = (self._slot + 1) % len(self._ring)
        kernels.add_into(self._retired, self._ring[self._slot])
        self._retired_rows += self._slot_rows[self._slot]
        self._ring[self._slot] = 0
        self._slot_rows[self._slot] = 0
        self._slot_started = time.monotonic()
        self._numeric.retarget(self._ring[self._slot])

    def reset(self) -> None:
        """Drop every count."""
        self._ring[:] = 0
        self._retired[:] = 0
        self._retired_rows = 0
        self._slot_rows = [0] * len(self._ring)
        self._slot_started = time.monotonic()

    def merge(self, other: Histogram | np.ndarray) -> None:
        """Add another histogram's window counts (same profile) into the current window."""
        if isinstance(other, Histogram):
            if other.names != self.names or not np.array_equal(other.offsets, self.offsets):
                raise ValueError("cannot merge histograms of different profiles")
            src, rows = other.counts, other.rows
        else:
            src, rows = np.ascontiguousarray(other, dtype=np.int64), None
            if src.shape != self._window.shape:
                raise ValueError(f"counts must have shape {self._window.shape}, got {src.shape}")
        kernels.add_into(self._ring[self._slot], src)
        if rows is None:
            rows = self._rows_in(src)
        self._slot_rows[self._slot] += rows

    def _rows_in(self, counts: np.ndarray) -> int:
        # Every row lands in exactly one slot of every feature.
        return int(counts[: self.offsets[1]].sum()) if len(self.names) else 0

    # -- results ----------------------------------------------------------------
    @property
    def counts(self) -> np.ndarray:
        """Window counts, flat: feature j owns ``counts[offsets[j]:offsets[j+1]]``."""
        if len(self._ring) == 1:
            return self._ring[0].copy()
        kernels.sum_slots(self._ring, self._window)
        return self._window.copy()

    @property
    def rows(self) -> int:
        """Rows in the window."""
        return sum(self._slot_rows)

    @property
    def total_counts(self) -> np.ndarray:
        """Counts since creation (or reset), window included: these only grow."""
        return self._retired + self._ring.sum(axis=0)

    @property
    def total_rows(self) -> int:
        return self._retired_rows + sum(self._slot_rows)

    def state(self) -> dict[str, Any]:
        """Everything needed to restore the counts later (see `restore`)."""
        return {
            "ring": self._ring.copy(),
            "slot_rows": np.array(self._slot_rows, dtype=np.int64),
            "slot": self._slot,
            "retired": self._retired.copy(),
            "retired_rows": self._retired_rows,
        }

    def restore(self, state: Mapping[str, Any], age_s: float = 0.0) -> None:
        """Load counts saved by `state`; `age_s` (time since they were saved) ages the window."""
        ring = np.asarray(state["ring"], dtype=np.int64)
        if ring.shape != self._ring.shape:
            raise ValueError(f"saved counts have shape {ring.shape}, expected {self._ring.shape}")
        self._ring[:] = ring
        self._slot_rows = [int(r) for r in state["slot_rows"]]
        self._slot = int(state["slot"])
        self._retired[:] = np.asarray(state["retired"], dtype=np.int64)
        self._retired_rows = int(state["retired_rows"])
        self._numeric.retarget(self._ring[self._slot])
        self._slot_started = time.monotonic() - max(0.0, age_s)
        self.advance()

    def feature_counts(self) -> dict[str, np.ndarray]:
        c = self.counts
        return {n: c[self.offsets[j] : self.offsets[j + 1]] for j, n in enumerate(self.names)}

    def _current(self) -> np.ndarray:
        if len(self._ring) == 1:
            return self._ring[0]
        kernels.sum_slots(self._ring, self._window)
        return self._window

    def psi(self) -> np.ndarray:
        """PSI per feature (profile order); NaN for a feature with no rows yet."""
        kernels.psi_into(self.expected, self._current(), self.offsets, self.eps, self._stat)
        return self._stat.copy()

    def js(self) -> np.ndarray:
        """Jensen-Shannon distance (base 2) per feature."""
        kernels.js_into(self.expected, self._current(), self.offsets, self._stat)
        return self._stat.copy()

    def chi2(self) -> tuple[np.ndarray, np.ndarray]:
        """Pearson chi-square and degrees of freedom per feature."""
        dof = np.empty(len(self.names), dtype=np.int64)
        kernels.chi2_into(self.expected, self._current(), self.offsets, self.eps, self._stat, dof)
        return self._stat.copy(), dof


def _levels_as(f: FeatureProfile) -> np.ndarray:
    """Numeric levels as the kernel compares them: rounded to the feature's dtype."""
    levels = np.asarray(f.levels, dtype=np.float64)
    return levels.astype(f.dtype).astype(np.float64) if f.rounds else levels


def numeric_levels(levels: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels)


def _level_table(levels: list[Any]) -> dict[Any, int]:
    table: dict[Any, int] = {}
    for slot, v in enumerate(levels):
        table[v] = slot
        if isinstance(v, str):
            # V2 BYTES tensors arrive as bytes; count them as their text level.
            table[v.encode("utf-8")] = slot
    return table
