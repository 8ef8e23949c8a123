"""Drift of one served model: counts every executed batch into the reference bins,
and turns the counts into PSI, statuses and reports when asked.

Statuses use fixed PSI bands, guarded against small windows: under no drift PSI is
about (1/N + 1/M) times a chi-square variable with (bins - 1) degrees of freedom
(N window rows, M reference rows), so its expected value alone is
(bins - 1)(1/N + 1/M): 0.18 for 10 bins at N = M = 100. A band counts as crossed
only when the PSI also exceeds the (1 - alpha) quantile of that noise, and never
with fewer than `min_rows` rows in the window.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from ..config import MonitorConfig
from ..errors import ConfigError
from .histogram import Histogram
from .profile import CATEGORICAL, FeatureProfile, Profile

STATUSES = ("ok", "warn", "alert")
STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}


def chi2_quantile(p: float, dof: int) -> float:
    """The p-quantile of chi-square(dof), by Wilson and Hilferty's cube-root normal
    approximation: within ~1% for dof >= 3, about 2.5% low at dof 1 (the guard is then
    slightly less strict than alpha says)."""
    if dof < 1:
        return 0.0
    z = NormalDist().inv_cdf(p)
    h = 2.0 / (9.0 * dof)
    return float(dof * max(0.0, 1.0 - h + z * math.sqrt(h)) ** 3)


def critical_psi(dof: int, rows: int, ref_rows: int, alpha: float) -> float:
    """PSI that sampling noise alone exceeds with probability `alpha`."""
    if rows <= 0 or ref_rows <= 0:
        return math.inf
    return chi2_quantile(1.0 - alpha, dof) * (1.0 / rows + 1.0 / ref_rows)


def classify(psi: float, rows: int, critical: float, config: MonitorConfig) -> str:
    if rows < config.min_rows or not math.isfinite(psi) or psi <= critical:
        return "ok"
    if psi > config.alert_psi:
        return "alert"
    if psi > config.warn_psi:
        return "warn"
    return "ok"


class _Columns:
    """Which columns of which tensors feed a profile section, in profile order.

    When every feature names a one-column tensor ([-1] or [-1, 1]) they map by
    name. Otherwise the columns of all tensors in signature order ([-1, k] is k
    columns) match the section's features one to one, by position.
    """

    def __init__(
        self, features: Sequence[FeatureProfile], tensors: Sequence[tuple[str, Sequence[int]]], what: str
    ) -> None:
        self.names = [f.name for f in features]
        widths: dict[str, int] = {}
        for name, shape in tensors:
            if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
                widths[name] = 1
            elif len(shape) == 2 and shape[1] > 0:
                widths[name] = shape[1]
            else:
                widths[name] = 0  # not monitorable; an error only if the profile needs it
        if set(self.names) <= {n for n, w in widths.items() if w == 1}:
            # Every feature is a one-column tensor of the same name: map by name.
            self.parts = [(n, 1) for n in self.names]
        else:
            bad = [n for n, w in widths.items() if w == 0]
            if bad:
                raise ConfigError(
                    f"{what}: tensor(s) {bad} are not [-1] or [-1, k]; drift monitoring maps "
                    "profile features to the columns of such tensors"
                )
            self.parts = list(widths.items())
            n_cols = sum(widths.values())
            if n_cols != len(features):
                raise ConfigError(
                    f"{what}: the profile has {len(features)} features {self.names[:5]}"
                    f"{'...' if len(features) > 5 else ''} but the model's tensors "
                    f"{list(widths)} have {n_cols} columns"
                )
            # By position, a feature named after a tensor must land on that very tensor.
            column_of = [name for name, w in self.parts for _ in range(w)]
            wrong = [(f, t) for f, t in zip(self.names, column_of, strict=True) if f in widths and f != t]
            if wrong:
                raise ConfigError(
                    f"{what}: by position, feature {wrong[0][0]!r} would read tensor {wrong[0][1]!r}; "
                    "order the profile's features like the model's tensors, or name every feature "
                    "after a one-column tensor"
                )
        self.numeric = all(f.kind != CATEGORICAL for f in features)

    def view(self, tensors: Mapping[str, np.ndarray]) -> Any:
        """The batch as the Histogram wants it: a matrix when all-numeric, else columns."""
        if self.numeric:
            if len(self.parts) == 1:
                arr = tensors[self.parts[0][0]]
                return arr.reshape(arr.shape[0], -1) if arr.ndim != 2 else arr
            n = tensors[self.parts[0][0]].shape[0]
            out = np.empty((n, len(self.names)), dtype=np.float64)
            j = 0
            for name, width in self.parts:
                out[:, j : j + width] = tensors[name].reshape(n, width)
                j += width
            return out
        columns: dict[str, Any] = {}
        j = 0
        for name, width in self.parts:
            arr = tensors[name]
            arr = arr.reshape(arr.shape[0], width)
            for k in range(width):
                columns[self.names[j]] = arr[:, k]
                j += 1
        return columns


@dataclass
class FeatureDrift:
    name: str
    section: str
    kind: str
    psi: float
    js: float
    status: str
    rows: int
    critical_psi: float
    reference: np.ndarray  # shares per slot
    current: np.ndarray
    bins: list[str]

    def to_json(self, shares: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "psi": _num(self.psi),
            "js": _num(self.js),
            "status": self.status,
            "rows": self.rows,
            "critical_psi": _num(self.critical_psi),
        }
        if shares:
            out["bins"] = self.bins
            out["reference_share"] = [round(float(v), 6) for v in self.reference]
            out["current_share"] = [round(float(v), 6) for v in self.current]
        return out


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def bin_labels(f: FeatureProfile) -> list[str]:
    """Human-readable slot names; also the `bin` label of the Prometheus counters."""
    if f.kind == CATEGORICAL:
        return [str(v) for v in f.levels] + ["other", "missing"]
    e = [f"{x:.6g}" for x in f.edges]
    if not e:
        return ["all", "missing"]
    inner = [f"[{a},{b})" for a, b in zip(e[:-1], e[1:], strict=True)]
    return [f"<{e[0]}", *inner, f">={e[-1]}", "missing"]


STAGE_ROWS = 64


class _Stage:
    """Rows waiting to be counted into one histogram.

    A kernel call costs about as much for one row as for sixty, and in a server its
    code and the count arrays are cold for every request; so single-row requests are
    copied into a small buffer and counted STAGE_ROWS at a time (and whenever anyone
    reads the counts). Batches of a quarter of that or more, and sections with
    categorical features, are counted at once.
    """

    def __init__(self, hist: Histogram, numeric: bool) -> None:
        self.hist = hist
        self.numeric = numeric
        self.buf = np.empty((STAGE_ROWS, len(hist.names)), dtype=np.float64) if numeric else None
        self.n = 0

    def add(self, x: Any) -> None:
        if self.buf is None:
            self.hist.update(x)
            return
        k = x.shape[0]
        if k >= STAGE_ROWS // 4:
            # Enough rows to be worth a kernel call of their own: no copy.
            self.flush()
            self.hist.count_now(x)
            return
        if self.n + k > STAGE_ROWS:
            self.flush()
        self.buf[self.n : self.n + k] = x
        self.n += k

    def flush(self) -> None:
        if self.n:
            self.hist.count_now(self.buf[: self.n])  # type: ignore[index]
            self.n = 0


class ModelMonitor:
    """The drift state of one model version.

    `observe` runs wherever the batch ran (an executor thread, or the event loop for
    batches cheaper than a thread hop) and only adds counts; `report` computes from
    counts when asked. A lock keeps a scrape from reading half a rotation.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        model: str,
        version: str,
        inputs: Sequence[tuple[str, Sequence[int]]],
        outputs: Sequence[tuple[str, Sequence[int]]],
        config: MonitorConfig,
    ) -> None:
        self.profile = profile
        self.model = model
        self.version = version
        self.config = config
        where = f"model '{model}' profile"
        self._in = _Columns(profile.features, inputs, f"{where} (inputs)")
        self._out: _Columns | None = None
        if profile.outputs:
            self._out = _Columns(profile.outputs, outputs, f"{where} (outputs)")
        slice_s = config.window_s / config.slices
        kw = {"windows": config.slices, "seconds_per_window": slice_s, "eps": config.eps}
        self._h_in = Histogram(profile, section="features", **kw)  # type: ignore[arg-type]
        self._h_out = (
            Histogram(profile, section="outputs", **kw) if self._out is not None else None  # type: ignore[arg-type]
        )
        self._lock = threading.Lock()
        self._stage_in = _Stage(self._h_in, self._in.numeric)
        self._stage_out = _Stage(self._h_out, self._out.numeric) if self._h_out is not None else None
        self._labels = {
            "features": [bin_labels(f) for f in profile.features],
            "outputs": [bin_labels(f) for f in profile.outputs],
        }

    def observe(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        x = self._in.view(inputs)
        y = self._out.view(outputs) if self._out is not None else None
        with self._lock:
            if self._h_in.due(time.monotonic()):
                # Staged rows belong to the sub-window they arrived in.
                self._flush()
                self._advance(time.monotonic())
            self._stage_in.add(x)
            if y is not None:
                self._stage_out.add(y)  # type: ignore[union-attr]

    def _flush(self) -> None:
        self._stage_in.flush()
        if self._stage_out is not None:
            self._stage_out.flush()

    def _advance(self, now: float) -> None:
        self._h_in.advance(now)
        if self._h_out is not None:
            self._h_out.advance(now)

    def flush(self) -> None:
        """Count the rows still staged (readers of the histograms call this first)."""
        with self._lock:
            self._flush()

    @property
    def inputs(self) -> Histogram:
        """The input features' histogram, with every observed row counted."""
        self.flush()
        return self._h_in

    @property
    def outputs(self) -> Histogram | None:
        """The outputs' histogram (None without an outputs section), every row counted."""
        self.flush()
        return self._h_out

    def _sections(self) -> list[tuple[str, Histogram, int]]:
        """Call with the lock held: staged rows are counted first."""
        self._flush()
        out = [("features", self._h_in, self.profile.row_count)]
        if self._h_out is not None:
            out.append(("outputs", self._h_out, self.profile.output_row_count or self.profile.row_count))
        return out

    def report(self) -> list[FeatureDrift]:
        """Drift of every feature and output over the current window."""
        result: list[FeatureDrift] = []
        with self._lock:
            now = time.monotonic()
            for section, hist, ref_rows in self._sections():
                hist.advance(now)
                counts = hist.counts
                psi = hist.psi()
                js = hist.js()
                rows = hist.rows
                for j, f in enumerate(hist.features):
                    c = counts[hist.offsets[j] : hist.offsets[j + 1]]
                    e = hist.expected[hist.offsets[j] : hist.offsets[j + 1]]
                    dof = max(1, int(np.count_nonzero((c > 0) | (e > 0))) - 1)
                    crit = critical_psi(dof, rows, ref_rows, self.config.alpha)
                    e_total, c_total = e.sum(), c.sum()
                    result.append(
                        FeatureDrift(
                            name=f.name,
                            section=section,
                            kind=f.kind,
                            psi=float(psi[j]),
                            js=float(js[j]),
                            status=classify(float(psi[j]), rows, crit, self.config),
                            rows=rows,
                            critical_psi=crit,
                            reference=e / e_total if e_total else np.zeros(len(e)),
                            current=c / c_total if c_total else np.zeros(len(c)),
                            bins=self._labels[section][j],
                        )
                    )
        return result

    def status(self, report: Sequence[FeatureDrift] | None = None) -> str:
        report = self.report() if report is None else report
        return max((d.status for d in report), key=STATUS_CODE.__getitem__, default="ok")

    @property
    def window_rows(self) -> int:
        return self.inputs.rows

    def bin_totals(self) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
        """(section, feature, counts since load, reference shares) per feature.

        Slot i of a feature is bin `i`; the last slot is `missing` (see bin_labels).
        """
        out = []
        with self._lock:
            for section, hist, _ in self._sections():
                total = hist.total_counts
                for j, f in enumerate(hist.features):
                    sl = slice(hist.offsets[j], hist.offsets[j + 1])
                    e = hist.expected[sl]
                    ref = e / e.sum() if e.sum() else np.zeros(len(e))
                    out.append((section, f.name, total[sl].copy(), ref))
        return out

    def to_json(self, report: Sequence[FeatureDrift] | None = None) -> dict[str, Any]:
        report = self.report() if report is None else report
        c = self.config
        return {
            "model_name": self.model,
            "model_version": self.version,
            "status": self.status(report),
            "window": {"seconds": c.window_s, "slices": c.slices, "rows": self.window_rows},
            "reference": {"rows": self.profile.row_count, "fingerprint": self.profile.fingerprint},
            "thresholds": {
                "warn_psi": c.warn_psi,
                "alert_psi": c.alert_psi,
                "alpha": c.alpha,
                "min_rows": c.min_rows,
                "eps": c.eps,
            },
            "features": [d.to_json() for d in report if d.section == "features"],
            "outputs": [d.to_json() for d in report if d.section == "outputs"],
        }

    # -- durability -------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"fingerprint": self.profile.fingerprint, "saved_at": time.time()}
            for section, hist, _ in self._sections():
                for k, v in hist.state().items():
                    out[f"{section}.{k}"] = v
        return out

    def restore(self, state: Mapping[str, Any]) -> bool:
        """Load saved counts if they belong to this profile; False when they do not."""
        if str(state.get("fingerprint")) != self.profile.fingerprint:
            return False
        age = max(0.0, time.time() - float(state.get("saved_at", time.time())))
        with self._lock:
            for section, hist, _ in self._sections():
                prefix = f"{section}."
                part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                if part:
                    hist.restore(part, age_s=age)
        return True
