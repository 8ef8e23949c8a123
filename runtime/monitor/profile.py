"""Reference profiles: what "no drift" looks like, fitted once and saved as JSON.

A profile holds, per feature (and per model output), the bins the monitor
counts into and the reference counts of those bins.  Numeric bins are cut at
the reference quantiles; categorical bins are the reference levels.  Every
feature's counts have its bins followed by one missing bucket (categoricals:
levels, then "other", then missing), exactly the native counts layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from . import kernels
from .tabular import Columns, is_numeric, to_columns

SCHEMA = "mlrt.profile"
SCHEMA_VERSION = 1
NUMERIC = "numeric"
CATEGORICAL = "categorical"
#: Levels kept per categorical feature; rarer ones are counted as "other".
DEFAULT_MAX_LEVELS = 100


@dataclass
class FeatureProfile:
    """One feature's bins and reference counts.

    numeric: ``edges`` are the sorted inner edges (bins ``(-inf, e1)``,
    ``[e1, e2)``, ..., ``[ek, +inf)``), counts has ``len(edges) + 2`` slots.
    categorical: ``levels`` in slot order, counts has ``len(levels) + 2`` slots.
    """

    name: str
    kind: str
    counts: list[int]
    edges: list[float] = field(default_factory=list)
    levels: list[Any] = field(default_factory=list)
    null_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in (NUMERIC, CATEGORICAL):
            raise ValueError(f"feature {self.name!r}: kind must be numeric or categorical")
        n_bins = len(self.edges) + 1 if self.kind == NUMERIC else len(self.levels) + 1
        if len(self.counts) != n_bins + 1:
            raise ValueError(
                f"feature {self.name!r}: {self.kind} with {n_bins} bins needs "
                f"{n_bins + 1} counts (bins + missing), got {len(self.counts)}"
            )
        if any(c < 0 for c in self.counts):
            raise ValueError(f"feature {self.name!r}: counts must be >= 0")
        if self.kind == NUMERIC:
            kernels.flatten_edges([np.asarray(self.edges, dtype=np.float64)])

    @property
    def n_slots(self) -> int:
        return len(self.counts)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.kind == NUMERIC:
            out["edges"] = [float(e) for e in self.edges]
        else:
            out["levels"] = list(self.levels)
        out["counts"] = [int(c) for c in self.counts]
        out["null_fraction"] = float(self.null_fraction)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FeatureProfile:
        try:
            return cls(
                name=str(obj["name"]),
                kind=str(obj["kind"]),
                counts=[int(c) for c in obj["counts"]],
                edges=[float(e) for e in obj.get("edges", [])],
                levels=list(obj.get("levels", [])),
                null_fraction=float(obj.get("null_fraction", 0.0)),
            )
        except KeyError as exc:
            raise ValueError(f"profile feature record lacks {exc.args[0]!r}: {obj!r}") from None


@dataclass
class Profile:
    """Reference profile of a model's inputs (``features``) and ``outputs``.

    >>> import numpy as np
    >>> ref = Profile.fit(np.random.default_rng(0).normal(size=(1000, 3)))
    >>> [f.name for f in ref.features], len(ref.features[0].edges)
    (['f0', 'f1', 'f2'], 9)
    """

    features: list[FeatureProfile]
    row_count: int
    fingerprint: str = ""
    bins: int = 10
    outputs: list[FeatureProfile] = field(default_factory=list)
    output_row_count: int = 0

    @classmethod
    def fit(
        cls,
        data: object,
        bins: int = 10,
        categorical: Iterable[str] = (),
        *,
        exclude: Iterable[str] = (),
        names: Sequence[str] | None = None,
        outputs: object = None,
        output_names: Sequence[str] | None = None,
        max_levels: int = DEFAULT_MAX_LEVELS,
    ) -> Profile:
        """Fit from a 2-D array, a mapping of columns, a pyarrow Table or a file path.

        Columns of non-numeric type are categorical; ``categorical`` forces
        numeric ones (codes, ids) to be too.  ``outputs`` (the model's
        predictions on the same rows) is profiled the same way.
        """
        if not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
        if max_levels < 1:
            raise ValueError(f"max_levels must be >= 1, got {max_levels}")
        cat = {str(c) for c in categorical}
        skip = {str(c) for c in exclude}
        in_cols = to_columns(data, names)
        out_cols = to_columns(outputs, output_names) if outputs is not None else {}
        unknown = (cat | skip) - set(in_cols) - set(out_cols)
        if unknown:
            raise ValueError(f"no such column(s): {sorted(unknown)}")
        features, n_rows, digest = _fit_section(data, in_cols, bins, cat, skip, max_levels)
        out_features: list[FeatureProfile] = []
        n_out = 0
        if outputs is not None:
            out_features, n_out, out_digest = _fit_section(outputs, out_cols, bins, cat, skip, max_levels)
            digest.update(out_digest.digest())
        return cls(
            features=features,
            row_count=n_rows,
            fingerprint="blake2b:" + digest.hexdigest(),
            bins=bins,
            outputs=out_features,
            output_row_count=n_out,
        )

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureProfile:
        for f in self.features + self.outputs:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "row_count": self.row_count,
            "fingerprint": self.fingerprint,
            "bins": self.bins,
            "features": [f.to_json() for f in self.features],
            "outputs": [f.to_json() for f in self.outputs],
            "output_row_count": self.output_row_count,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Profile:
        if obj.get("schema") != SCHEMA:
            raise ValueError(f"not an mlrt profile (schema {obj.get('schema')!r})")
        version = obj.get("version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"profile schema version {version!r} is not supported "
                f"(this mlrt reads version {SCHEMA_VERSION})"
            )
        return cls(
            features=[FeatureProfile.from_json(f) for f in obj["features"]],
            row_count=int(obj["row_count"]),
            fingerprint=str(obj.get("fingerprint", "")),
            bins=int(obj.get("bins", 10)),
            outputs=[FeatureProfile.from_json(f) for f in obj.get("outputs", [])],
            output_row_count=int(obj.get("output_row_count", 0)),
        )

    def save(self, path: str | PathLike[str]) -> None:
        # allow_nan=False: edges are finite and levels must be valid JSON.
        text = json.dumps(self.to_json(), indent=1, allow_nan=False)
        Path(path).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | PathLike[str]) -> Profile:
        with open(path, encoding="utf-8") as fh:
            return cls.from_json(json.load(fh))


def _fit_section(
    data: object,
    columns: Columns,
    bins: int,
    cat: set[str],
    skip: set[str],
    max_levels: int,
) -> tuple[list[FeatureProfile], int, Any]:
    n_rows = next(iter(columns.values())).shape[0] if columns else 0
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(n_rows).encode())
    features: list[FeatureProfile] = []
    numeric: list[tuple[int, str, np.ndarray]] = []
    for name, col in columns.items():
        if name in skip:
            continue
        digest.update(name.encode() + b"\0" + str(col.dtype).encode())
        _hash_column(digest, col)
        if name in cat or not is_numeric(col):
            features.append(_fit_categorical(name, col, max_levels))
        else:
            numeric.append((len(features), name, quantile_edges(col, bins)))
            features.append(None)  # type: ignore[arg-type]
    for counts, (pos, name, edges) in zip(_numeric_counts(data, columns, numeric), numeric, strict=True):
        features[pos] = FeatureProfile(
            name=name,
            kind=NUMERIC,
            counts=counts,
            edges=edges.tolist(),
            null_fraction=counts[-1] / n_rows if n_rows else 0.0,
        )
    return features, n_rows, digest


def _numeric_counts(
    data: object, columns: Columns, numeric: list[tuple[int, str, np.ndarray]]
) -> list[list[int]]:
    names = list(columns)
    if isinstance(data, np.ndarray) and data.ndim == 2 and data.dtype.kind in "fiub":
        # One pass over the whole matrix reads a C-order array once instead of
        # once per column.
        cols = [names.index(name) for _, name, _ in numeric]
        flat = kernels.count_numeric(data, [e for _, _, e in numeric], cols=cols)
    else:
        flat = np.concatenate(
            [kernels.count_numeric(columns[name], [e]) for _, name, e in numeric]
            or [np.zeros(0, dtype=np.int64)]
        )
    out, start = [], 0
    for _, _, edges in numeric:
        out.append(flat[start : start + edges.size + 2].tolist())
        start += edges.size + 2
    return out


def _hash_column(digest: Any, col: np.ndarray) -> None:
    # The fingerprint tells "same reference data?" apart, it is not a security
    # hash: CRC-32 of the column bytes (4x cheaper than BLAKE2 on 80 MB) goes
    # into a BLAKE2 digest with names, dtypes and row counts.
    if col.dtype == object:
        crc = 0
        for v in col.tolist():
            crc = zlib.crc32(repr(v).encode(), crc)
    else:
        crc = zlib.crc32(memoryview(np.ascontiguousarray(col)).cast("B"))
    digest.update(crc.to_bytes(4, "little"))


def quantile_edges(col: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges at the reference quantiles 1/bins .. (bins-1)/bins.

    Each edge is a data value (the ``floor(q * n)``-th smallest), so with
    left-closed bins about a fraction q of the rows fall below it.  Ties and
    constant columns give repeated candidates, which are merged (never a
    zero-width bin); infinite candidates are dropped so +-inf fall in the tails.
    """
    x = col if col.dtype.kind == "f" else col.astype(np.float64)
    nan = np.isnan(x)
    n_nan = int(np.count_nonzero(nan))
    valid = x[~nan] if n_nan else np.array(x, copy=True)
    n = valid.size
    if n == 0 or bins == 1:
        return np.zeros(0, dtype=np.float64)
    ranks = np.minimum((np.arange(1, bins) * n) // bins, n - 1)
    # In-place partition of our own copy: O(n) per column, no full sort.
    valid.partition(ranks)
    cand = valid[ranks].astype(np.float64)
    return np.unique(cand[np.isfinite(cand)])


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


def _json_level(v: object) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def _fit_categorical(name: str, col: np.ndarray, max_levels: int) -> FeatureProfile:
    n = col.shape[0]
    if col.dtype.kind in "iub":
        values, freq = np.unique(col, return_counts=True)
        tally = Counter(dict(zip(values.tolist(), freq.tolist(), strict=True)))
        n_missing = 0
    elif col.dtype.kind == "f":
        nan = np.isnan(col)
        values, freq = np.unique(col[~nan], return_counts=True)
        tally = Counter(dict(zip(values.tolist(), freq.tolist(), strict=True)))
        n_missing = int(nan.sum())
    else:
        tally = Counter()
        n_missing = 0
        for v in col.tolist():
            if _is_missing(v):
                n_missing += 1
            else:
                tally[_json_level(v)] += 1
    merged: Counter[Any] = Counter()
    for v, c in tally.items():
        merged[_json_level(v)] += c
    kept = [v for v, _ in merged.most_common(max_levels)]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in kept):
        # Mixed level types would not sort; a str key keeps one slot order.
        merged = Counter()
        for v, c in tally.items():
            merged[str(_json_level(v))] += c
        kept = [v for v, _ in merged.most_common(max_levels)]
    levels = sorted(kept)
    counts = [merged[v] for v in levels]
    counts.append(sum(merged.values()) - sum(counts))  # other: levels past max_levels
    counts.append(n_missing)
    return FeatureProfile(
        name=name,
        kind=CATEGORICAL,
        counts=counts,
        levels=levels,
        null_fraction=n_missing / n if n else 0.0,
    )
