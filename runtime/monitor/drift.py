"""Drift of one served model: counts every executed batch into the reference bins,
and turns the counts into PSI, statuses and reports when asked.

Statuses come from the one drift rule (runtime/monitor/rule.py): a PSI band counts
only when the window differs from the reference by more than sampling noise, tested
for all features and outputs of the model together, so the model as a whole keeps
its false-alarm rate at about `alpha` however many features it has.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import MonitorConfig
from ..errors import ConfigError
from .histogram import Histogram
from .kernels import Lock, RowBuffer, Stager
from .profile import CATEGORICAL, FeatureProfile, Profile
from .rule import STATUS_CODE, STATUSES, Thresholds, judge, worst

__all__ = [
    "STATUSES",
    "STATUS_CODE",
    "FeatureDrift",
    "ModelMonitor",
    "bin_labels",
    "bin_totals",
    "column_names",
    "evaluate",
    "offline_report",
    "report_json",
    "window_json",
]


def _width(shape: Sequence[int]) -> int:
    """Columns of a [-1] or [-1, k] tensor; 0 for any other shape (not monitorable)."""
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return 1
    if len(shape) == 2 and shape[1] > 0:
        return int(shape[1])
    return 0


def column_names(tensors: Sequence[tuple[str, Sequence[int]]]) -> list[str]:
    """The feature name of every column of a signature's [-1] / [-1, k] tensors, in order:
    a one-column tensor's own name, ``name[i]`` for column i of a wider one."""
    out: list[str] = []
    for name, shape in tensors:
        width = _width(shape)
        out.extend([name] if width == 1 else [f"{name}[{i}]" for i in range(width)])
    return out


def _by_name(
    names: Sequence[str], widths: Mapping[str, int]
) -> list[tuple[str, int]] | None:
    """(tensor, column) per feature when every feature names a one-column tensor or a
    column ``tensor[i]`` of a wider one; None when some name is neither."""
    out: list[tuple[str, int]] = []
    for n in names:
        if widths.get(n) == 1:
            out.append((n, 0))
            continue
        tensor, bracket, rest = n.rpartition("[")
        if not bracket or not rest.endswith("]") or not rest[:-1].isdigit():
            return None
        col = int(rest[:-1])
        if col >= widths.get(tensor, 0):
            return None
        out.append((tensor, col))
    return out


class _Columns:
    """Which column of which tensor feeds each feature of a profile section.

    By name when every feature names a one-column tensor ([-1] or [-1, 1]) or a
    column ``tensor[i]`` of a [-1, k] one (what `mlrt profile --model` writes for
    outputs such as ``probabilities[1]``). Otherwise the columns of all tensors in
    signature order ([-1, k] is k columns) match the features one to one, by position:
    the usual case of one [-1, n_features] input whose features carry the data's names.
    """

    def __init__(
        self, features: Sequence[FeatureProfile], tensors: Sequence[tuple[str, Sequence[int]]], what: str
    ) -> None:
        self.names = [f.name for f in features]
        widths = {name: _width(shape) for name, shape in tensors}
        cols = _by_name(self.names, widths)
        if cols is None:
            cols = self._by_position(widths, what)
        self.cols = cols
        self.numeric = all(f.kind != CATEGORICAL for f in features)
        # One tensor read whole, in order: handed to the kernel as it is, no copy.
        first = cols[0][0] if cols else None
        self.whole = (
            first
            if first is not None
            and widths[first] == len(cols)
            and cols == [(first, i) for i in range(len(cols))]
            else None
        )

    def _by_position(self, widths: Mapping[str, int], what: str) -> list[tuple[str, int]]:
        bad = [n for n, w in widths.items() if w == 0]
        if bad:
            raise ConfigError(
                f"{what}: tensor(s) {bad} are not [-1] or [-1, k]; drift monitoring maps "
                "profile features to the columns of such tensors"
            )
        cols = [(name, i) for name, w in widths.items() for i in range(w)]
        if len(cols) != len(self.names):
            have = column_names([(n, [-1, w]) for n, w in widths.items()])
            kind, tensors = ("outputs", "outputs") if what.endswith("(outputs)") else ("features", "inputs")
            raise ConfigError(
                f"{what}: the profile has {len(self.names)} {kind} {self.names[:5]}"
                f"{'...' if len(self.names) > 5 else ''} but the model's {tensors} "
                f"{list(widths)} have {len(cols)} column{'s' if len(cols) != 1 else ''}; "
                f"name the profile's {kind} after the columns "
                f"({', '.join(have[:4])}{', ...' if len(have) > 4 else ''}) or list them in "
                "signature order"
                + (
                    f". {len(self.names) - len(cols)} more feature"
                    f"{'s' if len(self.names) - len(cols) > 1 else ''} than columns: a target or id "
                    "column profiled with them? `mlrt profile DATA -o REF.json --model MODEL` "
                    "profiles what the model takes (--exclude COL leaves one out)"
                    if kind == "features" and len(self.names) > len(cols)
                    else ""
                )
            )
        # By position, a feature named after a tensor must land on that very tensor.
        wrong = [(f, t) for f, (t, _) in zip(self.names, cols, strict=True) if f in widths and f != t]
        if wrong:
            raise ConfigError(
                f"{what}: by position, feature {wrong[0][0]!r} would read tensor {wrong[0][1]!r}; "
                "order the profile's features like the model's tensors, or name every feature "
                "after a one-column tensor or a column such as 'probabilities[1]'"
            )
        return cols

    def view(self, tensors: Mapping[str, np.ndarray]) -> Any:
        """The batch as the Histogram wants it: a matrix when all-numeric, else columns."""
        if self.numeric:
            if self.whole is not None:
                arr = tensors[self.whole]
                return arr.reshape(arr.shape[0], -1) if arr.ndim != 2 else arr
            arrays = {name: tensors[name] for name, _ in self.cols}
            n = next(iter(arrays.values())).shape[0]
            exact32 = all(a.dtype == np.float32 for a in arrays.values())
            out = np.empty((n, len(self.names)), dtype=np.float32 if exact32 else np.float64)
            for j, (name, col) in enumerate(self.cols):
                out[:, j] = arrays[name].reshape(n, -1)[:, col]
            return out
        columns: dict[str, Any] = {}
        for feature, (name, col) in zip(self.names, self.cols, strict=True):
            arr = tensors[name]
            columns[feature] = arr.reshape(arr.shape[0], -1)[:, col]
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
    p_value: float  # the G-test's; NaN when not tested (too few rows, no data)
    significant: bool  # past sampling noise after the model-wide correction
    reference: np.ndarray  # shares per slot
    current: np.ndarray
    bins: list[str]
    missing: int = 0  # window rows with no value

    def to_json(self, shares: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "psi": _num(self.psi),
            "js": _num(self.js),
            "status": self.status,
            "rows": self.rows,
            "missing": self.missing,
            "p_value": _num(self.p_value),
            "significant": self.significant,
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


def evaluate(
    sections: Sequence[tuple[str, Histogram]],
    thresholds: Thresholds | MonitorConfig,
    labels: Mapping[str, Sequence[Sequence[str]]] | None = None,
) -> list[FeatureDrift]:
    """Every feature's drift over the histograms' current windows, by the one rule.

    ``sections`` are (name, histogram) pairs of one model ("features", "outputs"):
    they are judged together, as one family of tests.  The server, `runtime.load`
    and `mlrt drift` all report through here.
    """
    rule = Thresholds(
        warn_psi=thresholds.warn_psi,
        alert_psi=thresholds.alert_psi,
        alpha=thresholds.alpha,
        min_rows=thresholds.min_rows,
    )
    parts = []
    for name, hist in sections:
        counts = hist.counts
        parts.append((name, hist, counts, hist.psi(), hist.js(), hist.rows))
    expected = np.concatenate([h.expected for _, h, *_ in parts]) if parts else np.zeros(0)
    current = np.concatenate([c for _, _, c, *_ in parts]) if parts else np.zeros(0)
    offsets = [0]
    psi_all: list[float] = []
    rows_all: list[int] = []
    for _, hist, _, psi, _, rows in parts:
        base = offsets[-1]
        offsets.extend(base + int(o) for o in hist.offsets[1:])
        psi_all.extend(float(v) for v in psi)
        rows_all.extend([rows] * len(hist.features))
    verdicts = judge(psi_all, expected, current, np.asarray(offsets, dtype=np.int64), rows_all, rule)
    out: list[FeatureDrift] = []
    k = 0
    for name, hist, counts, psi, js, rows in parts:
        names = labels[name] if labels is not None else [bin_labels(f) for f in hist.features]
        for j, f in enumerate(hist.features):
            sl = slice(int(hist.offsets[j]), int(hist.offsets[j + 1]))
            c, e = counts[sl], hist.expected[sl]
            v = verdicts[k]
            k += 1
            out.append(
                FeatureDrift(
                    name=f.name,
                    section=name,
                    kind=f.kind,
                    psi=float(psi[j]),
                    js=float(js[j]),
                    status=v.status,
                    rows=rows,
                    p_value=v.p_value,
                    significant=v.significant,
                    reference=e / e.sum() if e.sum() else np.zeros(len(e)),
                    current=c / c.sum() if c.sum() else np.zeros(len(c)),
                    bins=list(names[j]),
                    missing=int(c[-1]),
                )
            )
    return out


def report_json(
    report: Sequence[FeatureDrift],
    profile: Profile,
    config: MonitorConfig,
    window: Mapping[str, Any],
) -> dict[str, Any]:
    """The drift report as JSON, the same for `GET .../drift` and `mlrt drift --format json`."""
    return {
        "status": worst([d.status for d in report]),
        "window": dict(window),
        "reference": {"rows": profile.row_count, "fingerprint": profile.fingerprint},
        "thresholds": {
            "warn_psi": config.warn_psi,
            "alert_psi": config.alert_psi,
            "alpha": config.alpha,
            "min_rows": config.min_rows,
            "eps": config.eps,
        },
        "features": [d.to_json() for d in report if d.section == "features"],
        "outputs": [d.to_json() for d in report if d.section == "outputs"],
    }


def window_json(
    model: str,
    version: str,
    profile: Profile,
    config: MonitorConfig,
    report: Sequence[FeatureDrift],
    rows: int,
) -> dict[str, Any]:
    """`GET /v2/models/{model}/drift`: a served model version's report over its window."""
    return {
        "model_name": model,
        "model_version": version,
        **report_json(
            report,
            profile,
            config,
            {"seconds": float(config.window_s), "slices": config.slices, "rows": rows},
        ),
    }


def bin_totals(
    sections: Sequence[tuple[str, Histogram, np.ndarray]],
) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(section, feature, counts since load, reference shares) per feature, from each
    section's histogram and its counts since load."""
    out = []
    for section, hist, total in sections:
        for j, f in enumerate(hist.features):
            sl = slice(hist.offsets[j], hist.offsets[j + 1])
            e = hist.expected[sl]
            ref = e / e.sum() if e.sum() else np.zeros(len(e))
            out.append((section, f.name, total[sl].copy(), ref))
    return out


def offline_report(profile: Profile, data: object, config: MonitorConfig | None = None) -> dict[str, Any]:
    """Drift of a whole data set (a table, a mapping of columns, a file path) against a
    profile, by the server's rule: the report `GET .../drift` would give had the model
    served exactly these rows.  The outputs section is judged too when the data holds
    every output column (predictions logged beside the inputs)."""
    from ..data import to_columns

    config = config or MonitorConfig()
    columns = to_columns(data)
    missing = [f.name for f in profile.features if f.name not in columns]
    if missing:
        raise ValueError(
            f"the data lacks profiled column(s) {missing[:8]}{' ...' if len(missing) > 8 else ''}; "
            f"it has {list(columns)[:8]}{' ...' if len(columns) > 8 else ''}"
        )
    rows = next(iter(columns.values())).shape[0] if columns else 0
    if rows == 0:
        raise ValueError("no rows to check: the data has a header but no values")
    sections = []
    for name in ("features", "outputs"):
        feats = getattr(profile, name)
        if not feats or any(f.name not in columns for f in feats):
            continue
        hist = Histogram(profile, section=name, eps=config.eps)
        hist.update({f.name: columns[f.name] for f in feats})
        sections.append((name, hist))
    return report_json(evaluate(sections, config), profile, config, {"rows": rows})


STAGE_ROWS = 64
#: Requests of more rows than this are counted at once, not staged.
STAGE_MAX_ROWS = STAGE_ROWS // 4 - 1


class _Stage:
    """Rows waiting to be counted into one histogram.

    A kernel call costs about as much for one row as for sixty, and in a server its
    code and the count arrays are cold for every request; so requests of a few rows
    are copied into a small buffer (native/_stage.pyx) and counted STAGE_ROWS at a
    time, and whenever anyone reads the counts. Larger batches, and sections with
    categorical features, are counted at once.
    """

    def __init__(self, hist: Histogram, numeric: bool) -> None:
        self.hist = hist
        # In the dtype the histogram counts in: copying a float64 row into a float32
        # buffer rounds it as the profile says; a float32 row copies exactly either way.
        self.buf = (
            RowBuffer(np.empty((STAGE_ROWS, len(hist.names)), dtype=hist.dtype), STAGE_MAX_ROWS)
            if numeric
            else None
        )

    def add(self, x: Any) -> None:
        buf = self.buf
        if buf is None:
            self.hist.update(x)
            return
        if x.shape[0] > STAGE_MAX_ROWS:
            self.hist.count_now(x)  # worth a kernel call of its own: no copy
            return
        n = buf.add(x)
        if n < 0:
            # No room, or not float32/float64: numpy converts those to the buffer's
            # dtype as an assignment into it would.
            if buf.n + x.shape[0] > buf.capacity:
                self.flush()
            n = buf.add(np.asarray(x, dtype=buf.rows.dtype))
            if n < 0:
                raise ValueError(f"expected rows of {buf.n_cols} values, got shape {x.shape}")
        if n == buf.capacity:
            self.flush()

    def flush(self) -> None:
        buf = self.buf
        if buf is not None and buf.n:
            # The whole buffer is the same array every time (numpy's buffer export of it
            # is cached); a slice would be a new view per flush.
            self.hist.count_now(buf.rows if buf.n == buf.capacity else buf.rows[: buf.n])
            buf.clear()


class ModelMonitor:
    """The drift state of one model version.

    `observe` runs wherever the batch ran (an executor thread, or the event loop for
    batches cheaper than a thread hop) and only adds counts; `report` computes from
    counts when asked. A lock keeps a scrape from reading half a rotation.

    Windows: a row counts into the sub-window in which `observe` saw it, staged or
    not: every call reads the clock before it stages, and staged rows are counted
    before a sub-window ends. A rotation happens in the first `observe` or read after
    its sub-window is over, or when `advance` is called.
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
        if self._h_out is not None:
            # One grid of sub-windows for both sections: they rotate in the same call.
            self._h_out._slot_started = self._h_in._slot_started
        # threading.Lock's equal, which the native per-request path takes without a call.
        self._lock = Lock()
        self._stage_in = _Stage(self._h_in, self._in.numeric)
        self._stage_out = _Stage(self._h_out, self._out.numeric) if self._h_out is not None else None
        self._clock = time.monotonic  # every clock read of the monitor's, fixed at creation
        # The usual model (each section one numeric tensor read whole) is observed by a
        # native call that stages a request (bench/monitor_cost.py measures it): the
        # instance's `observe` is the stager's, which hands anything it does not do
        # itself to `_observe`.
        self._stager: Stager | None = None
        x_name, x_buf = self._in.whole, self._stage_in.buf
        y_name = y_buf = None
        if self._out is not None and self._stage_out is not None:
            y_name, y_buf = self._out.whole, self._stage_out.buf
        if None not in (x_name, x_buf) and (self._out is None or None not in (y_name, y_buf)):
            self._stager = Stager(
                self._lock, x_name, x_buf, y_name, y_buf,
                clock=self._clock, on_full=self.flush, fallback=self._observe,
            )  # fmt: skip
            self.observe = self._stager.observe  # type: ignore[method-assign]
        self._due_at = 0.0  # when a sub-window ends next (monotonic seconds)
        self._sync_due()
        self._labels = {
            "features": [bin_labels(f) for f in profile.features],
            "outputs": [bin_labels(f) for f in profile.outputs],
        }

    def column_sources(self) -> list[tuple[list[FeatureProfile], list[tuple[str, int]]]]:
        """Per section, its features and the (tensor, column) each one reads."""
        out = [(self.profile.features, self._in.cols)]
        if self._out is not None:
            out.append((self.profile.outputs, self._out.cols))
        return out

    def observe(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        """Count one executed batch: its input tensors and the model's outputs.

        Thread-safe. A request of a few rows is staged and counted with the next
        STAGE_ROWS (or at the next read); a batch is counted now. (For the usual
        model the instance's own `observe`, the native stager's, does the staging.)
        """
        self._observe(inputs, outputs)

    def _observe(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        x = self._in.view(inputs)
        y = self._out.view(outputs) if self._out is not None else None
        with self._lock:
            now = self._clock()
            if now >= self._due_at:
                self._advance(now)
            self._stage_in.add(x)
            if y is not None:
                self._stage_out.add(y)  # type: ignore[union-attr]

    def advance(self, now: float | None = None) -> None:
        """Start the sub-windows that have ended by `now` (default: the monotonic clock),
        counting the staged rows first. `observe` and the reads do this themselves; a
        caller with a clock of its own (a test, a benchmark) may do it explicitly."""
        with self._lock:
            self._advance(self._clock() if now is None else now)

    def _flush(self) -> None:
        self._stage_in.flush()
        if self._stage_out is not None:
            self._stage_out.flush()

    def _advance(self, now: float) -> None:
        """Call with the lock held."""
        if now >= self._due_at:
            # Staged rows arrived in the sub-window that is ending: they count there.
            self._flush()
            self._h_in.advance(now)
            if self._h_out is not None:
                self._h_out.advance(now)
        self._sync_due()

    def _sync_due(self) -> None:
        # Early is safe (the slow path looks again), late would miss a rotation: every
        # change to the histograms' clocks made here is followed by this.
        h_out = self._h_out
        self._due_at = min(self._h_in._rotate_at, h_out._rotate_at if h_out is not None else math.inf)
        if self._stager is not None:
            self._stager.due_at = self._due_at

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

    def _sections(self) -> list[tuple[str, Histogram]]:
        """Call with the lock held: staged rows are counted first."""
        self._flush()
        out = [("features", self._h_in)]
        if self._h_out is not None:
            out.append(("outputs", self._h_out))
        return out

    def report(self) -> list[FeatureDrift]:
        """Drift of every feature and output over the current window."""
        with self._lock:
            self._advance(self._clock())
            return evaluate(self._sections(), self.config, self._labels)

    def status(self, report: Sequence[FeatureDrift] | None = None) -> str:
        report = self.report() if report is None else report
        return worst([d.status for d in report])

    @property
    def window_rows(self) -> int:
        return self.inputs.rows

    def bin_totals(self) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
        """(section, feature, counts since load, reference shares) per feature.

        Slot i of a feature is bin `i`; the last slot is `missing` (see bin_labels).
        """
        with self._lock:
            return bin_totals([(section, hist, hist.total_counts) for section, hist in self._sections()])

    def section_counts(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per section, (window counts, counts since load), every staged row counted: what
        the workers of one server send each other to be summed (runtime/monitor/fleet.py)."""
        with self._lock:
            self._advance(self._clock())
            return {section: (hist.counts, hist.total_counts) for section, hist in self._sections()}

    def to_json(self, report: Sequence[FeatureDrift] | None = None) -> dict[str, Any]:
        report = self.report() if report is None else report
        return window_json(self.model, self.version, self.profile, self.config, report, self.window_rows)

    # -- durability -------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {"fingerprint": self.profile.fingerprint, "saved_at": time.time()}
            for section, hist in self._sections():
                for k, v in hist.state().items():
                    out[f"{section}.{k}"] = v
        return out

    def restore(self, state: Mapping[str, Any]) -> bool:
        """Load saved counts if they belong to this profile; False when they do not."""
        if str(state.get("fingerprint")) != self.profile.fingerprint:
            return False
        age = max(0.0, time.time() - float(state.get("saved_at", time.time())))
        with self._lock:
            for section, hist in self._sections():
                prefix = f"{section}."
                part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                if part:
                    hist.restore(part, age_s=age)
            self._sync_due()
        return True
