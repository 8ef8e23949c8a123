"""`mlrt gate`: does a candidate model do at least as well as its baseline on a labelled
data set? Both score the same rows, batch by batch (the batch-scoring path of
runtime/offline, so a model is loaded and fed exactly as `mlrt predict` does); then:

- metric: the chosen metric for each (runtime/quality, computed as scikit-learn does), the
  difference candidate - baseline, and a paired bootstrap interval of that difference
  (the same resampled rows for both models). The gate fails when the candidate is worse by
  more than `min_delta` ("worse" is lower for accuracy, F1 and AUC, higher for log loss,
  RMSE and MAE); with `strict`, when the interval's worse end is.
- latency: each batch is run by both models back to back, in alternating order, on this
  machine (after one untimed warm-up run each); the ratio of their p99 batch times fails
  the gate past `max_latency_ratio`.
- prediction drift: the PSI between the two models' predictions (the positive-class score,
  the predicted class, or the predicted value), reported with the monitor's bands; a
  large one says the candidate behaves differently even if its metric is close.

The predictions of both models are kept for the bootstrap: memory grows with the rows
(a few bytes per row per model), so gate on a test set, not the whole lake.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import arrow_to_numpy, dataset, expand_paths, read_batches
from ..errors import ConfigError
from ..monitor.kernels import psi
from ..monitor.rule import Thresholds, band
from ..offline.scoring import BatchScorer, ScorerSpec
from ..quality import accuracy, f1, log_loss, mae, rmse, roc_auc
from ..quality.labels import ClassIndex, as_labels, plain_classes
from ..quality.prediction import PredictionSpec, prediction_spec
from ..registry.card import artifact_sha256, hash_file_into

__all__ = ["METRICS", "GateResult", "gate"]

#: Bumped when a field of GateResult.to_json() changes meaning or disappears. 2: the
#: candidate's content hash (`candidate_sha256`), which registration checks.
GATE_SCHEMA = 2


@dataclass(frozen=True)
class _Metric:
    needs: str  # "label", "scores" or "value": which prediction the metric takes
    higher_is_better: bool
    compute: Callable[[np.ndarray, np.ndarray], float | None]


METRICS: dict[str, _Metric] = {
    "accuracy": _Metric("label", True, accuracy),
    "f1": _Metric("label", True, f1),
    "auc": _Metric("scores", True, roc_auc),
    "logloss": _Metric("scores", False, log_loss),
    "rmse": _Metric("value", False, rmse),
    "mae": _Metric("value", False, mae),
}


@dataclass
class _Predictions:
    """One model's predictions over every batch, and its batch times."""

    scorer: BatchScorer
    spec: PredictionSpec | None = None
    parts: dict[str, list[np.ndarray]] = field(
        default_factory=lambda: {"label": [], "scores": [], "value": []}
    )
    seconds: list[float] = field(default_factory=list)

    def run(self, feeds: dict[str, np.ndarray]) -> None:
        started = time.perf_counter()
        out = self.scorer.run(feeds)
        self.seconds.append(time.perf_counter() - started)
        if self.spec is None:
            self.spec = prediction_spec(out)
        for key, name in (
            ("label", self.spec.label),
            ("scores", self.spec.scores),
            ("value", self.spec.value),
        ):
            if name is not None:
                a = np.asarray(out[name])
                self.parts[key].append(a[:, 0] if a.ndim == 2 and a.shape[1] == 1 and key != "scores" else a)

    @property
    def classes(self) -> list[Any] | None:
        """The model's class labels in the column order of its scores, when it knows them."""
        return plain_classes(getattr(self.scorer.model, "classes", None))

    def get(self, needs: str, model: str) -> np.ndarray:
        parts = self.parts[needs]
        if not parts:
            if needs == "label" and self.parts["scores"]:  # the class is the scores' argmax
                top = np.concatenate(self.parts["scores"]).argmax(axis=1)
                classes = self.classes
                return top if classes is None else np.asarray(classes)[top]
            what = {"label": "a class label", "scores": "class scores", "value": "a predicted value"}[needs]
            found = asdict(self.spec) if self.spec is not None else {}
            raise ConfigError(
                f"model {model!r} has no output that gives {what} (its prediction outputs: {found})"
            )
        # A BYTES label output holds bytes; the target column, str.
        return as_labels(np.concatenate(parts)) if needs == "label" else np.concatenate(parts)


@dataclass
class GateResult:
    """What `gate` found; `to_json()` is the documented report (docs/gates.md)."""

    candidate: str
    baseline: str
    metric: str
    candidate_sha256: str | None  # the file (or directory) judged; None for module:object, refs
    versions: dict[str, str]  # the version each model resolved to (an alias moves; this does not)
    rows: int
    data: list[str]
    data_sha256: str
    candidate_value: float
    baseline_value: float
    delta: float  # candidate - baseline
    interval: tuple[float, float]  # bootstrap interval of delta
    confidence: float
    min_delta: float
    strict: bool
    latency: dict[str, Any]
    prediction_drift: dict[str, Any]
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": GATE_SCHEMA,
            "passed": self.passed,
            "failures": self.failures,
            "candidate": self.candidate,
            "candidate_sha256": self.candidate_sha256,
            "baseline": self.baseline,
            "versions": self.versions,
            "data": {"paths": self.data, "rows": self.rows, "sha256": self.data_sha256},
            "metric": {
                "name": self.metric,
                "higher_is_better": METRICS[self.metric].higher_is_better,
                "candidate": self.candidate_value,
                "baseline": self.baseline_value,
                "delta": self.delta,
                # null where undefined (every resample lacked a class): JSON has no NaN
                "interval": [None if math.isnan(v) else v for v in self.interval],
                "confidence": self.confidence,
                "min_delta": self.min_delta,
                "strict": self.strict,
            },
            "latency": self.latency,
            "prediction_drift": self.prediction_drift,
        }


def data_sha256(paths: Sequence[str]) -> str:
    """One content hash for the data files, in the order given (their bytes and names),
    so a card can say exactly which data a gate was passed on."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0")
        hash_file_into(digest, path)
    return digest.hexdigest()


def _labels(y: np.ndarray, needs: str) -> np.ndarray:
    if needs == "value":
        if y.dtype.kind not in "iubf":
            raise ConfigError(f"the target column holds {y.dtype} values: a regression metric needs numbers")
        return y.astype(np.float64)
    return y


def _same_columns(
    cand: _Predictions, cs: np.ndarray, base: _Predictions, bs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[Any] | None]:
    """Both models' scores with their columns in one class order (the candidate's, when it
    knows its classes), and that order; None when neither model knows its classes, whose
    columns are then taken as class indices."""
    cc, bc = cand.classes, base.classes
    if cc is None or bc is None:
        return cs, bs, cc or bc
    if set(cc) != set(bc):
        raise ConfigError(f"the models know different classes: candidate {cc}, baseline {bc}")
    if bc != cc:
        bs = bs[:, [bc.index(c) for c in cc]]
    return cs, bs, cc


def _same_feed(cand: BatchScorer, base: BatchScorer, available: list[str]) -> None:
    """Refuse two models fed the same columns by place in different orders: one of them sees
    features in the wrong slots (a file candidate takes the file's order, a registry
    baseline its profile's), and the gate would judge that, not the models."""
    c, b = cand.input_columns(available), base.input_columns(available)
    if c != b and sorted(c) == sorted(b) and cand.positional(available) and base.positional(available):
        raise ConfigError(
            "the two models would be fed the same columns in different orders: the candidate "
            f"{c[:6]}{' ...' if len(c) > 6 else ''} (its profile's order, or the file's), the "
            f"baseline {b[:6]}{' ...' if len(b) > 6 else ''}; name them with --columns in the "
            "order the models were trained on"
        )


def _known_labels(y: np.ndarray, hint: str, *models: _Predictions) -> None:
    """Refuse target labels a model does not know (a label-encoding mistake: 'yes' for 'Yes'):
    counted as wrong answers, they would give both models the same poor score and pass."""
    for p in models:
        if p.classes is not None:
            ClassIndex(p.classes, hint)(y, "the target's labels")  # raises on an unknown label


def _value(metric: _Metric, y: np.ndarray, p: np.ndarray) -> float:
    try:
        got = metric.compute(y, p)
    except ValueError as exc:  # labels that do not fit the model's classes, and the like
        raise ConfigError(f"cannot compute {exc}") from None
    if got is None:
        raise ConfigError("the metric is undefined on this data (AUC needs both classes among the rows)")
    return float(got)


def _bootstrap(
    metric: _Metric,
    y: np.ndarray,
    cand: np.ndarray,
    base: np.ndarray,
    rounds: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """A percentile interval of candidate - baseline over paired resamples of the rows."""
    rng = np.random.default_rng(seed)
    n = len(y)
    deltas = []
    for _ in range(rounds):
        rows = rng.integers(0, n, n)
        a, b = metric.compute(y[rows], cand[rows]), metric.compute(y[rows], base[rows])
        if a is not None and b is not None:  # an AUC resample with one class: skipped
            deltas.append(a - b)
    if not deltas:
        return (math.nan, math.nan)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(deltas, [tail, 100 - tail])
    return (float(lo), float(hi))


def _p99(seconds: list[float]) -> float:
    return float(np.percentile(seconds, 99)) if seconds else math.nan


def _drift(cand: _Predictions, base: _Predictions) -> dict[str, Any]:
    """PSI between the two models' predictions: the positive-class (or top) score for
    classifiers with scores, the class for those with labels only, the value for regressors."""
    spec = base.spec
    assert spec is not None
    aligned = None
    if spec.scores is not None and cand.parts["scores"]:
        b, c = np.concatenate(base.parts["scores"]), np.concatenate(cand.parts["scores"])
        try:  # the same class in the same column for both (as the metrics compare them)
            aligned = _same_columns(cand, c, base, b)
        except ConfigError:  # classes that differ: compared by the predicted class below
            aligned = None
    if aligned is not None:
        c, b, _ = aligned
        b, c = (b[:, 1], c[:, 1]) if b.shape[1] == 2 else (b.max(axis=1), c.max(axis=1))
        what = "positive-class score" if base.parts["scores"][0].shape[1] == 2 else "top class score"
    elif spec.value is not None and cand.parts["value"]:
        b, c = np.concatenate(base.parts["value"]), np.concatenate(cand.parts["value"])
        what = "predicted value"
    else:
        b, c = base.get("label", "baseline"), cand.get("label", "candidate")
        levels = np.union1d(b, c)
        e = np.array([np.count_nonzero(b == v) for v in levels])
        a = np.array([np.count_nonzero(c == v) for v in levels])
        value = float(psi(e, a))
        return {"on": "predicted class", "psi": value, "status": band(value, Thresholds())}
    b, c = b.astype(np.float64), c.astype(np.float64)
    edges = np.unique(np.quantile(b, np.linspace(0, 1, 11)[1:-1]))
    e = np.bincount(np.searchsorted(edges, b, side="right"), minlength=len(edges) + 1)
    a = np.bincount(np.searchsorted(edges, c, side="right"), minlength=len(edges) + 1)
    value = float(psi(e, a))
    return {"on": what, "psi": value, "status": band(value, Thresholds())}


def gate(
    candidate: str,
    baseline: str,
    data: str | Sequence[str],
    target: str,
    metric: str,
    *,
    min_delta: float = 0.0,
    max_latency_ratio: float | None = None,
    strict: bool = False,
    batch_rows: int = 4096,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    columns: Sequence[str] | None = None,
    registry: str | None = None,
    threads: int | None = 1,
) -> GateResult:
    """Score `data` with both models and judge the candidate (see the module's docstring).
    Raises ConfigError (and FileNotFoundError, ValueError for unreadable data) with a
    message that names what is wrong; a failing gate is a result, not an exception."""
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if not min_delta >= 0:
        raise ConfigError(f"min_delta must be >= 0, got {min_delta}")
    if max_latency_ratio is not None and not max_latency_ratio > 0:
        raise ConfigError(f"max_latency_ratio must be > 0, got {max_latency_ratio}")
    if batch_rows < 1 or bootstrap < 1 or not 0 < confidence < 1:
        raise ConfigError("need batch_rows >= 1, bootstrap >= 1 and 0 < confidence < 1")
    m = METRICS[metric]
    paths = expand_paths([data] if isinstance(data, str) else list(data))
    ds = dataset(paths)
    if target not in ds.schema.names:
        raise ConfigError(f"the data has no target column {target!r}; it has {ds.schema.names[:12]}")
    models = {}
    for role, ref in (("candidate", candidate), ("baseline", baseline)):
        spec = ScorerSpec(ref, columns=columns, passthrough=(target,), threads=threads, registry=registry)
        models[role] = _Predictions(BatchScorer(spec))
    read = [
        *dict.fromkeys(
            [*models["candidate"].scorer.check(ds.schema), *models["baseline"].scorer.check(ds.schema)]
        )
    ]
    _same_feed(models["candidate"].scorer, models["baseline"].scorer, [*ds.schema.names])
    if ds.format.default_extname == "csv":  # parsed as the models take each column (files.py)
        types = {k: v for p in models.values() for k, v in p.scorer.column_types(ds.schema).items()}
        ds = dataset(paths, column_types=types)
    truth = []
    for i, batch in enumerate(read_batches(ds, read, batch_rows)):
        truth.append(arrow_to_numpy(batch.column(target)))
        feeds = {role: p.scorer.feeds(batch) for role, p in models.items()}
        if i == 0:  # a session's first run pays its lazy set-up: not what a batch costs
            for role, p in models.items():
                p.scorer.run(feeds[role])
        order = ("candidate", "baseline") if i % 2 == 0 else ("baseline", "candidate")
        for role in order:  # alternating: neither always runs on a warm cache
            models[role].run(feeds[role])
    if not truth:
        raise ConfigError(f"no rows in {paths}")
    y = np.concatenate(truth)
    if y.dtype.kind == "f" and np.isnan(y).any() or (y.dtype == object and any(v is None for v in y)):
        raise ConfigError(f"the target column {target!r} has missing values: a gate needs every row labelled")
    y = _labels(y, m.needs)
    cand = models["candidate"].get(m.needs, candidate)
    base = models["baseline"].get(m.needs, baseline)
    hint = "the target must hold the classes the models were trained on, or class indices"
    try:
        if m.needs == "scores":
            cand, base, classes = _same_columns(models["candidate"], cand, models["baseline"], base)
            y = ClassIndex(classes, hint)(y, "the target's labels")
        elif m.needs == "label":
            y = as_labels(y)
            _known_labels(y, hint, models["candidate"], models["baseline"])
    except ValueError as exc:
        raise ConfigError(f"cannot compute {metric}: {exc}") from None
    cv, bv = _value(m, y, cand), _value(m, y, base)
    delta = cv - bv
    lo, hi = _bootstrap(m, y, cand, base, bootstrap, confidence, seed)
    # "Worse" as a signed amount: positive when the candidate does worse.
    worse = -delta if m.higher_is_better else delta
    worse_end = -lo if m.higher_is_better else hi
    failures = []
    if worse > min_delta:
        failures.append(
            f"{metric}: candidate {cv:.6g} against baseline {bv:.6g}, worse by {worse:.6g} "
            f"(tolerance {min_delta:g})"
        )
    elif strict and math.isnan(worse_end):
        failures.append(
            f"{metric}: the interval of the difference is undefined (no resample could be scored: "
            "too few rows, or one class only); --strict cannot pass it"
        )
    elif strict and worse_end > min_delta:
        failures.append(
            f"{metric}: the {confidence:.0%} interval of the difference reaches {worse_end:.6g} worse "
            f"(tolerance {min_delta:g}, strict)"
        )
    cp99, bp99 = _p99(models["candidate"].seconds), _p99(models["baseline"].seconds)
    ratio = cp99 / bp99 if bp99 > 0 else math.inf
    latency = {
        "batches": len(models["candidate"].seconds),
        "batch_rows": batch_rows,
        "candidate_p99_s": cp99,
        "baseline_p99_s": bp99,
        "ratio": ratio,
        "max_ratio": max_latency_ratio,
    }
    if max_latency_ratio is not None and ratio > max_latency_ratio:
        failures.append(
            f"latency: candidate p99 per batch {ratio:.2f}x the baseline's (limit {max_latency_ratio:g}x)"
        )
    return GateResult(
        candidate=candidate,
        baseline=baseline,
        metric=metric,
        candidate_sha256=artifact_sha256(candidate) if Path(candidate).exists() else None,
        versions={role: p.scorer.model.version for role, p in models.items()},
        rows=len(y),
        data=[str(p) for p in paths],
        data_sha256=data_sha256(paths),
        candidate_value=cv,
        baseline_value=bv,
        delta=delta,
        interval=(lo, hi),
        confidence=confidence,
        min_delta=min_delta,
        strict=strict,
        latency=latency,
        prediction_drift=_drift(models["candidate"], models["baseline"]),
        failures=failures,
    )
