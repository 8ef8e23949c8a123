"""Ground-truth feedback: labels that arrive after the predictions, joined to them by
request id, and each variant's quality over its most recent labelled rows.

The endpoint remembers its last `remember` answered requests (id -> the variant that
answered and where its predicted rows are; the rows themselves are copied into a ring of
`remember` rows per model version, so remembering a request allocates no array and holds
none of the answer's); `POST /v2/endpoints/{name}/feedback` with
`[{"id": ..., "label": ...}, ...]` looks each id up, adds (label, prediction) to that
variant's window (runtime/quality) and forgets the prediction, so a second label for the
same id is refused. An id the endpoint never answered, or answered too long ago to
remember, is refused by name, and so is an id it answered twice (a client's reused id: the
label could be for either answer); the other items of the call still count.

What is a prediction, per variant: runtime/quality/prediction.py's rule (`label_output`,
`score_output` and `value_output` in the endpoint's feedback settings override it).
A classifier's labels are mapped to the columns of its scores by `classes = [...]` (the labels
in column order) when the endpoint lists them, else by the model's own classes (scikit-learn's
`classes_`, an ONNX classifier's class labels: runtime/quality/labels.py), else they must be
the column indices (0 .. k-1). Text labels match a model's BYTES labels.

The memory and the windows are touched only on the event loop's thread.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..quality import QualityWindow
from ..quality.labels import ClassIndex, plain_classes
from ..quality.prediction import KINDS, PredictionSpec, prediction_spec
from .settings import count

__all__ = ["Feedback"]

@dataclass(slots=True)
class _Spec:
    """A model version's prediction outputs (runtime/quality/prediction.py), the ring
    its predictions are kept in (made at its first answer), and its labels' columns."""

    prediction: PredictionSpec
    model: str = ""
    version: str = ""
    ring: _Ring | None = None
    index: int = 0  # in Feedback._rings
    classes: ClassIndex | None = None


class _Ring:
    """The last `capacity` predicted rows of one model version, in preallocated columns.
    Rows are addressed by their absolute position (rows ever written); a request's rows are
    kept contiguous (a request that would straddle the end starts over at slot 0)."""

    __slots__ = ("capacity", "pos", "columns")

    def __init__(self, spec: PredictionSpec, outputs: Mapping[str, np.ndarray], capacity: int) -> None:
        self.capacity = capacity
        self.pos = 0
        # (output, buffer): labels in the model's dtype, scores and values as float64,
        # which is what the quality window takes.
        self.columns: list[tuple[str, np.ndarray]] = []
        if spec.label is not None:
            self.columns.append((spec.label, np.empty(capacity, outputs[spec.label].dtype)))
        if spec.scores is not None:
            width = outputs[spec.scores].shape[1]
            self.columns.append((spec.scores, np.empty((capacity, width), np.float64)))
        if spec.value is not None:
            self.columns.append((spec.value, np.empty(capacity, np.float64)))

    def put(self, outputs: Mapping[str, np.ndarray], rows: int) -> int | None:
        """Copy a request's predicted rows in; their position, or None when they cannot be
        kept (more rows than the ring, or an answer shaped unlike the first). This runs for
        every answer, on the event loop: checks are what numpy would not refuse by itself
        (broadcasting, casting a label)."""
        if rows > self.capacity:
            return None
        slot = self.pos % self.capacity
        if slot + rows > self.capacity:
            self.pos += self.capacity - slot
            slot = 0
        end = slot + rows
        for name, buffer in self.columns:
            a = outputs[name]
            if len(a) != rows:
                return None
            if buffer.ndim == 1:
                if a.ndim != 1:
                    if a.ndim != 2 or a.shape[1] != 1:
                        return None
                    a = a[:, 0]
                if a.dtype != buffer.dtype and buffer.dtype.kind != "f":
                    return None  # a label of another type than the first answer's
            elif a.ndim != 2 or a.shape[1] != buffer.shape[1]:
                return None
            buffer[slot:end] = a
        start = self.pos
        self.pos += rows
        return start

    def get(self, start: int, rows: int) -> dict[str, np.ndarray] | None:
        """The rows put at `start`, or None once they have been written over."""
        if self.pos - start > self.capacity:
            return None
        slot = start % self.capacity
        return {name: buffer[slot : slot + rows] for name, buffer in self.columns}


# The memory holds tuples of ints (GC-untracked: a full collection over 100,000
# remembered objects once stalled the event loop for about 23 ms, a tripled p99 at 64
# connections in bench.shadow): which ring, where in it, how many rows.
_Memory = tuple[int, int, int]
# What an id answered more than once maps to: a label cannot say which answer it is for.
_REUSED: _Memory = (-1, 0, 0)


class _VariantQuality:
    def __init__(self, kind: str, size: int) -> None:
        self.kind = kind
        self.window = QualityWindow(kind, size)
        self.version: str | None = None  # the version of the latest labelled prediction


class Feedback:
    """One endpoint's memory of recent predictions and its variants' quality windows."""

    def __init__(
        self,
        endpoint: str,
        *,
        window: int = 1000,
        remember: int = 100_000,
        kind: str | None = None,
        classes: Sequence[Any] | None = None,
        label_output: str | None = None,
        score_output: str | None = None,
        value_output: str | None = None,
    ) -> None:
        where = f"endpoint {endpoint!r}, feedback"
        count(where, "window", window)
        count(where, "remember", remember)
        if kind is not None and kind not in KINDS:
            raise ConfigError(f"{where}: kind must be one of {KINDS}, got {kind!r}")
        distinct = isinstance(classes, (list, tuple)) and len(set(classes)) == len(classes)
        if classes is not None and not distinct:
            raise ConfigError(f"{where}: classes must be a list of distinct labels, got {classes!r}")
        names = {"label_output": label_output, "score_output": score_output, "value_output": value_output}
        for key, value in names.items():
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{where}: {key} must be an output's name, got {value!r}")
        self.endpoint = endpoint
        self.window = window
        self.remember = remember
        self.kind = kind
        self.classes = list(classes) if classes is not None else None
        self._hint = "list the labels in the endpoint's feedback settings: classes = [...]"
        self._names = names
        self._memory: OrderedDict[str, _Memory | None] = OrderedDict()
        self._specs: dict[tuple[str, str], _Spec | str] = {}  # a string: why it cannot be judged
        self._rings: list[_Spec] = []  # specs with a ring, by the index the memory names
        self.unremembered = 0  # answers that could not be kept (see _Ring.put)
        self.reused = 0  # answers under an id the memory already held (a client's reused id)
        self.quality: dict[str, _VariantQuality] = {}
        self.labelled = 0  # rows labelled
        self.refused = 0  # feedback items refused

    # -- the record stage: after each answer ----------------------------------------------

    def remember_answer(
        self,
        rid: str,
        model: str,
        version: str,
        outputs: Mapping[str, np.ndarray],
        classes: Sequence[Any] | None = None,
    ) -> None:
        """Keep what `model` predicted for request `rid`, until its label comes or it is the
        oldest of `remember` predictions. `classes`: the model's class labels in the column
        order of its scores, when it knows them (read at the version's first answer)."""
        spec = self._specs.get((model, version))
        if spec is None:
            try:
                found = prediction_spec(outputs, self.kind, self._names)
                spec = _Spec(found, model, version, _Ring(found, outputs, self.remember))
                listed = self.classes is not None
                # Listing the classes is the way out only when the model does not say them.
                said = not listed and plain_classes(classes) is not None
                hint = "send the labels the model was trained on" if said else self._hint
                spec.classes = ClassIndex(self.classes if listed else classes, hint, listed=listed)
                spec.index = len(self._rings)
                self._rings.append(spec)
            except ValueError as exc:
                spec = f"model {model!r} version {version!r}: {exc}"
            self._specs[(model, version)] = spec
        if isinstance(spec, str):
            return
        assert spec.ring is not None
        memory = self._memory
        if rid in memory:
            # A client that sends its own ids sent this one before: a label for it could be
            # joined to either answer, so it is joined to neither (refused by name).
            self.reused += 1
            memory[rid] = _REUSED
            return
        rows = len(next(iter(outputs.values())))
        start = spec.ring.put(outputs, rows)
        if start is None:
            self.unremembered += 1
            return
        memory[rid] = (spec.index, start, rows)
        if len(memory) > self.remember:
            memory.popitem(last=False)

    # -- labels ---------------------------------------------------------------------------

    def label(self, items: Sequence[Any], first: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """Join labels to remembered predictions: (items accepted, one error per item
        refused, with its index in the call counted from `first`)."""
        accepted = 0
        errors: list[dict[str, Any]] = []
        for i, item in enumerate(items, start=first):
            rid = item.get("id") if isinstance(item, dict) else None
            try:
                self._label_one(item, rid)
                accepted += 1
            except ValueError as exc:
                self.refused += 1
                errors.append({"index": i, "id": rid, "error": str(exc)})
        return accepted, errors

    def _label_one(self, item: Any, rid: Any) -> None:
        if not isinstance(item, dict) or "label" not in item or not isinstance(rid, str):
            raise ValueError('each item is {"id": "<request id>", "label": <label, or a list: one per row>}')
        forgotten = (
            f"unknown id {rid!r}: not answered through endpoint {self.endpoint!r} since the "
            f"server started, or older than its last {self.remember:,} answers"
        )
        if rid not in self._memory:
            raise ValueError(forgotten)
        kept = self._memory[rid]
        if kept is None:
            raise ValueError(f"id {rid!r} is already labelled")
        if kept is _REUSED:
            raise ValueError(
                f"id {rid!r} was answered more than once (a request id sent again), so its label "
                "cannot be joined to one answer: give each request its own id, or none and keep "
                "the one the answer returns"
            )
        index, start, rows = kept
        spec = self._rings[index]
        assert spec.ring is not None
        found = spec.ring.get(start, rows)
        if found is None:  # written over: requests of many rows filled the ring since
            raise ValueError(forgotten + f" ({self.remember:,} rows per model version)")
        p = spec.prediction
        labels = found.get(p.label) if p.label is not None else None
        scores = found.get(p.scores) if p.scores is not None else None
        values = found.get(p.value) if p.value is not None else None
        raw = item["label"]
        truth = np.asarray(raw if isinstance(raw, list) else [raw])
        if truth.ndim != 1 or len(truth) != rows:
            raise ValueError(f"id {rid!r} answered {rows} row(s): give one label per row, got {raw!r}")
        q = self.quality.get(spec.model)
        if q is None or q.kind != p.kind:
            q = self.quality[spec.model] = _VariantQuality(p.kind, self.window)
        if p.kind == "classifier":
            assert spec.classes is not None
            y = spec.classes(truth, "label")
            predicted = None if labels is None else spec.classes(labels, "the model's label")
            q.window.add(y, predicted=predicted, proba=scores)
        else:
            try:
                y_value = truth.astype(np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"id {rid!r}: a regressor's label must be a number, got {raw!r}") from None
            q.window.add(y_value, predicted=values)
        q.version = spec.version
        self._memory[rid] = None
        self.labelled += rows

    # -- reading ------------------------------------------------------------------------------

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per variant: rows labelled, rows in the window, and each metric (None where
        undefined)."""
        out: dict[str, dict[str, Any]] = {}
        for model, q in self.quality.items():
            out[model] = {
                "kind": q.kind,
                "version": q.version,
                "labelled": q.window.labelled,
                "window": len(q.window),
                **q.window.summary(),
            }
        return out

    def to_json(self) -> dict[str, object]:
        unjudged = {f"{m}/{v}": s for (m, v), s in self._specs.items() if isinstance(s, str)}
        return {
            "window": self.window,
            "remember": self.remember,
            "remembered": len(self._memory),
            "unremembered": self.unremembered,
            "reused_ids": self.reused,
            "labelled": self.labelled,
            "refused": self.refused,
            "quality": self.summary(),
            **({"unjudged": unjudged} if unjudged else {}),
        }
