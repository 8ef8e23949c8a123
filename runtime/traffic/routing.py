"""Endpoints: a name clients call like a model, routed to weighted variants (A/B tests,
canary releases), optionally sticky on a key the request carries.

A sticky key is hashed with BLAKE2b (never Python's salted `hash()`), so a key goes to
the same variant in every process and after every restart while the weights stand.
Among the variants, the key goes to the one with the highest weighted rendezvous score
`-w / ln(u)`, u being the key's hash with that variant's name, uniform in (0, 1): each
variant wins a share of keys equal to its share of the weight, and a change of weights
moves only the keys it must (those the grown variant now wins, or those the shrunk one
lost). Requests without a key (or endpoints that are not sticky) are spread by weight
at random. An endpoint's shadows (shadow.py) get copies of its requests, whichever
variant answered them. An endpoint may log what it answered (predlog.py) and remember it
for labels that come later (feedback.py); its requests then always carry an id. A model
called by its own name records the same way through an endpoint of its own (`own`): one
variant, itself, that routes nothing.

Everything here runs on the event loop's thread: the counts are plain integers.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, InvalidInput
from .feedback import Feedback
from .predlog import PredictionLog
from .rollback import Rollback
from .shadow import Shadow

log = logging.getLogger("mlrt.traffic")

__all__ = ["Endpoint", "Router", "Variant", "parameter_key", "sticky_key"]

_TWO64 = float(2**64)
_ID_PREFIX = secrets.token_hex(6)
_ids = itertools.count(1)  # next() on it is atomic: ids may be drawn on decode threads too


@dataclass
class Variant:
    model: str
    weight: float
    requests: int = 0  # answered through the endpoint (counted when chosen)


def sticky_key(sticky: str | None, where: str) -> tuple[bytes | None, str | None]:
    """Where a request's sticky key is: (the header, lower-cased as HTTP servers hand header
    names over, or None; the V2 request parameter, or None). Both None: not sticky."""
    if sticky is None:
        return None, None
    kind, _, name = sticky.partition(":")
    name = name.strip()
    if kind == "header" and name:
        return name.lower().encode("latin-1"), None
    if kind == "parameter" and name:
        return None, name
    raise ConfigError(f'{where}: sticky must be "header:NAME" or "parameter:NAME", got {sticky!r}')


def parameter_key(value: object, name: str) -> bytes | None:
    """A V2 request parameter as a sticky key: strings and integers (as their text), so
    `"user_id": 42` and `"user_id": "42"` go to the same variant."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value).encode()
    raise InvalidInput(
        f"parameter {name!r} is this endpoint's sticky key: give a string or an integer, got {value!r}"
    )


def _check_weights(weights: Mapping[str, float], where: str) -> None:
    for model, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"{where}: the weight of {model!r} must be a number >= 0, got {w!r}")
    if not sum(weights.values()) > 0:
        raise ConfigError(f"{where}: at least one variant needs a weight above 0")


class Endpoint:
    """One endpoint's variants and how a request picks one."""

    def __init__(
        self,
        name: str,
        variants: Sequence[tuple[str, float]],
        sticky: str | None = None,
        shadows: Sequence[Shadow] = (),
        log: PredictionLog | None = None,
        feedback: Feedback | None = None,
        rollbacks: Sequence[Rollback] = (),
        own: bool = False,
    ) -> None:
        where = f"model {name!r}" if own else f"endpoint {name!r}"
        if not variants:
            raise ConfigError(f"{where}: needs at least one variant")
        models = [m for m, _ in variants]
        if len(set(models)) != len(models):
            raise ConfigError(f"{where}: a model is listed twice among the variants: {models}")
        _check_weights(dict(variants), where)
        shadowed = [s.model for s in shadows]
        if len(set(shadowed)) != len(shadowed):
            raise ConfigError(f"{where}: a model is listed twice among the shadows: {shadowed}")
        both = sorted(set(shadowed) & set(models))
        if both:
            raise ConfigError(f"{where}: {both} cannot be both a variant and a shadow")
        if rollbacks and len(variants) < 2:
            raise ConfigError(f"{where}: a rollback compares a variant with the others: add another variant")
        if own and (shadows or rollbacks or sticky or [m for m, _ in variants] != [name]):
            raise ConfigError(f"{where}: a model records its own answers only (log, feedback)")
        self.name = name
        self.own = own  # a model's own recorder: never routes, called with or without a version
        self.shadows = list(shadows)
        self.rollbacks = list(rollbacks)
        self.log = log
        self.feedback = feedback
        # Whether each answer is recorded (logged, remembered): then every request needs an id.
        self.records = log is not None or feedback is not None
        for s in self.shadows:
            s.log = log
        self.sticky = sticky
        self.header, self.parameter = sticky_key(sticky, where)
        self.variants = [Variant(m, float(w)) for m, w in variants]
        # The key's hash is salted with each variant's name once, here.
        self._salts = [hashlib.blake2b(v.model.encode(), digest_size=16).digest() for v in self.variants]
        self._total = sum(v.weight for v in self.variants)

    def new_id(self) -> str:
        """An id for a request that came without one: unique within the process (a
        counter), and across processes and restarts (a random prefix)."""
        return f"{_ID_PREFIX}-{next(_ids)}"

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """New weights for some or all variants (the others keep theirs)."""
        where = f"endpoint {self.name!r}"
        known = {v.model for v in self.variants}
        unknown = sorted(set(weights) - known)
        if unknown:
            raise ConfigError(f"{where}: no variant(s) {unknown}; its variants are {sorted(known)}")
        merged = {v.model: weights.get(v.model, v.weight) for v in self.variants}
        _check_weights(merged, where)  # before any conversion: null, "50" or true are refused
        for v in self.variants:
            v.weight = float(merged[v.model])
        self._total = sum(merged.values())

    def provisional(self) -> Variant:
        """The variant that decodes a request whose key is in its body (a V2 parameter),
        before the key is known: the first with a weight. Not counted: `choose` counts the
        one that answers. Variants of an endpoint take the same inputs, so any decodes it."""
        return next(v for v in self.variants if v.weight > 0)

    def choose(self, key: bytes | None = None) -> Variant:
        """The variant a request goes to: by `key` when given, else at random by weight."""
        if key is None:
            x = random.random() * self._total
            for v in self.variants:
                x -= v.weight
                if x < 0 and v.weight > 0:
                    chosen = v
                    break
            else:  # rounding left x at the total's edge: the last variant with a weight
                chosen = [v for v in self.variants if v.weight > 0][-1]
        else:
            chosen = self.variants[self.rank(key)]
        chosen.requests += 1
        return chosen

    def rank(self, key: bytes) -> int:
        """The index of the variant `key` goes to: weighted rendezvous hashing."""
        best, best_score = -1, -math.inf
        for i, (v, salt) in enumerate(zip(self.variants, self._salts, strict=True)):
            if v.weight <= 0:
                continue
            digest = hashlib.blake2b(key, digest_size=8, key=salt).digest()
            u = (int.from_bytes(digest, "big") + 0.5) / _TWO64  # in (0, 1)
            score = -v.weight / math.log(u)
            if score > best_score:
                best, best_score = i, score
        return best

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "sticky": self.sticky,
            "variants": [
                {"model": v.model, "weight": v.weight, "requests": v.requests} for v in self.variants
            ],
            "shadows": [s.to_json() for s in self.shadows],
            "rollbacks": [r.to_json() for r in self.rollbacks],
            "log": self.log.to_json() if self.log is not None else None,
            "feedback": self.feedback.to_json() if self.feedback is not None else None,
        }


def _inputs_of(model_of: Callable[[str], Any], name: str) -> str | None:
    """A model's inputs as a request must fit them (Router.check_inputs), or None when it is
    not loaded."""
    try:
        inputs = model_of(name).inputs
    except Exception:  # not loaded (yet): its requests say so when it is called
        return None
    return ", ".join(
        f"{t.name}:{'BYTES' if t.datatype == 'BYTES' else 'number'}{list(t.shape[1:])}"
        for t in sorted(inputs, key=lambda t: t.name)
    )


class Router:
    """The server's endpoints by name, and the models that record their own answers."""

    def __init__(self, endpoints: Sequence[Endpoint] = ()) -> None:
        self.endpoints = {e.name: e for e in endpoints if not e.own}
        self.recorders = {e.name: e for e in endpoints if e.own}

    def get(self, name: str) -> Endpoint | None:
        """The endpoint (routing to variants) called `name`."""
        return self.endpoints.get(name)

    def through(self, name: str) -> Endpoint | None:
        """What a request that names `name` goes through: its endpoint, or the model's own
        recorder when `name` is a model that logs or takes feedback."""
        return self.endpoints.get(name) or self.recorders.get(name)

    def all(self) -> list[Endpoint]:
        return [*self.endpoints.values(), *self.recorders.values()]

    def check_inputs(self, model_of: Callable[[str], Any]) -> None:
        """Refuse an endpoint whose variants take different inputs: clients send one request
        body to it, which would fail on the variants it does not fit. A shadow that takes
        other inputs is only warned about: its copies fail and are counted, the answers do
        not. `model_of(name)`: the served model, or raises when it is not loaded (not
        checked then). Datatypes may differ between numbers (a request's numbers convert by
        the one rule); names, shapes after the batch dimension and text must not."""
        for endpoint in self.endpoints.values():
            takes = {m: _inputs_of(model_of, m) for m in [v.model for v in endpoint.variants]}
            takes = {m: sig for m, sig in takes.items() if sig is not None}
            if len(set(takes.values())) > 1:
                listed = "; ".join(f"{m} takes ({sig})" for m, sig in takes.items())
                raise ConfigError(
                    f"endpoint {endpoint.name!r}: its variants must take the same inputs, as "
                    f"clients send one request to all of them: {listed}"
                )
            primary = next(iter(takes.values()), None)
            for s in endpoint.shadows:
                sig = _inputs_of(model_of, s.model)
                if primary is not None and sig is not None and sig != primary:
                    log.warning(
                        "endpoint %s: shadow %s takes (%s), its variants (%s): every copy will fail",
                        endpoint.name, s.model, sig, primary,
                    )  # fmt: skip

    def __bool__(self) -> bool:
        return bool(self.endpoints or self.recorders)
