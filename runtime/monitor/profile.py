"""Reference profiles: what "no drift" looks like, fitted once and saved as JSON.

A profile holds, per feature (and per model output), the bins the monitor
counts into and the reference counts of those bins.  Numeric bins are cut
between the reference quantiles; categorical bins are the reference levels.
Every feature's counts have its bins followed by one missing bucket
(categoricals: levels, then "other", then missing), exactly the native counts
layout.

Each feature records the dtype the model receives it in (``dtype``).  Values are
rounded to that dtype before they are binned, when the profile is fitted and
whenever data is counted against it, so a row counts into the same bin offline
(a float64 CSV) and online (the float32 tensor the model gets).  Edges sit
halfway between adjacent distinct values of the reference, so no value of any
dtype at least as precise as the reference's can land on the other side of one
by rounding.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Columns, is_numeric, to_columns, unknown_columns
from . import kernels

SCHEMA = "mlrt.profile"
SCHEMA_VERSION = 2
#: Versions `Profile.load` reads.  Version 1 has no per-feature dtype and edges on data values.
READABLE_VERSIONS = (1, 2)
NUMERIC = "numeric"
CATEGORICAL = "categorical"
#: Levels kept per categorical feature; rarer ones are counted as "other".
DEFAULT_MAX_LEVELS = 100
#: The dtypes a feature may be binned in.  Integers are binned as float64 (exact below 2**53).
DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64", "bool")  # fmt: skip


class DtypeWarning(UserWarning):
    """The reference data loses information in the dtype the model receives it in."""


#: `Profile.fit`'s dtypes: one dtype for every column, or one per column name.
DtypeSpec = str | np.dtype | type | Mapping[str, Any] | None


@dataclass
class FeatureProfile:
    """One feature's bins and reference counts.

    numeric: ``edges`` are the sorted inner edges (bins ``(-inf, e1)``,
    ``[e1, e2)``, ..., ``[ek, +inf)``), counts has ``len(edges) + 2`` slots.
    categorical: ``levels`` in slot order, counts has ``len(levels) + 2`` slots.
    ``dtype``: the numpy dtype name values are rounded to before binning (the
    model's input dtype); None for profiles written before dtypes were recorded.
    ``low``/``high``: a numeric feature's smallest and largest finite reference value
    (as served); None when it had none, or for profiles written before ranges were kept.
    """

    name: str
    kind: str
    counts: list[int]
    edges: list[float] = field(default_factory=list)
    levels: list[Any] = field(default_factory=list)
    null_fraction: float = 0.0
    dtype: str | None = None
    low: float | None = None
    high: float | None = None

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
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"feature {self.name!r}: dtype must be one of {', '.join(DTYPES)}, "
                             f"got {self.dtype!r}")
        if self.kind == NUMERIC:
            kernels.flatten_edges([np.asarray(self.edges, dtype=np.float64)])

    @property
    def rounds(self) -> bool:
        """Whether values must be rounded to a narrower float before binning."""
        return self.dtype in ("float16", "float32")

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
        if self.dtype is not None:
            out["dtype"] = self.dtype
        if self.low is not None and self.high is not None:
            out["low"], out["high"] = float(self.low), float(self.high)
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
                dtype=None if obj.get("dtype") is None else str(obj["dtype"]),
                low=None if obj.get("low") is None else float(obj["low"]),
                high=None if obj.get("high") is None else float(obj["high"]),
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
        dtypes: DtypeSpec = None,
        output_dtypes: DtypeSpec = None,
    ) -> Profile:
        """Fit from a 2-D array, a mapping of columns, a pyarrow Table or a file path.

        Columns of non-numeric type are categorical; ``categorical`` forces
        numeric ones (codes, ids) to be too.  ``outputs`` (the model's
        predictions on the same rows) is profiled the same way.

        ``dtypes`` (one dtype, or a mapping of column name to dtype) is the dtype
        the model receives each column in; numeric columns are rounded to it
        before they are binned (default: the column's own dtype).  Fit with the
        model's dtype and the same rows served to the model count exactly as the
        reference.  A `DtypeWarning` says when rounding merges distinct values.
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
            raise ValueError(f"no such column(s): {unknown_columns(sorted(unknown), [*in_cols, *out_cols])}")
        if not set(in_cols) - skip:
            raise ValueError("no columns to profile")
        if next(iter(in_cols.values())).shape[0] == 0:
            raise ValueError("no rows to profile: the data has a header but no values")
        features, n_rows, digest = _fit_section(
            data, in_cols, bins, cat, skip, max_levels, _dtype_map(dtypes, in_cols)
        )
        out_features: list[FeatureProfile] = []
        n_out = 0
        if outputs is not None:
            out_features, n_out, out_digest = _fit_section(
                outputs, out_cols, bins, cat, skip, max_levels, _dtype_map(output_dtypes, out_cols)
            )
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
        if version not in READABLE_VERSIONS:
            raise ValueError(
                f"profile schema version {version!r} is not supported "
                f"(this mlrt reads versions {', '.join(map(str, READABLE_VERSIONS))})"
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
        try:
            fh = open(path, encoding="utf-8")
        except FileNotFoundError:
            # Still a FileNotFoundError (callers tell it apart), worded for the commands'
            # one-line errors rather than as "[Errno 2] No such file or directory".
            raise FileNotFoundError(
                f"no such profile: {os.fspath(path)} (make one with `mlrt profile DATA -o REF.json`)"
            ) from None
        with fh:
            try:
                doc = json.load(fh)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ValueError(
                    f"{path} is not a profile: not JSON ({exc}); "
                    "make one with `mlrt profile DATA -o REF.json`"
                ) from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path} is not a profile: JSON {type(doc).__name__}, not an object")
        try:
            return cls.from_json(doc)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def _dtype_map(spec: DtypeSpec, columns: Columns) -> dict[str, np.dtype]:
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        unknown = set(spec) - set(columns)
        if unknown:
            raise ValueError(f"dtypes given for no such column(s): {sorted(unknown)}")
        return {str(k): _serving_dtype(v, str(k)) for k, v in spec.items()}
    dt = _serving_dtype(spec, "every column")
    return {name: dt for name in columns}


def _serving_dtype(value: object, what: str) -> np.dtype:
    try:
        dt = np.dtype(value)  # type: ignore[call-overload]
    except TypeError:
        raise ValueError(f"dtype for {what}: {value!r} is not a numpy dtype") from None
    if dt.name not in DTYPES:
        if dt.kind in "OSU":
            return dt  # text: categorical, nothing to round
        raise ValueError(f"dtype for {what}: {dt} is not one of {', '.join(DTYPES)}")
    return dt


def _fit_section(
    data: object,
    columns: Columns,
    bins: int,
    cat: set[str],
    skip: set[str],
    max_levels: int,
    dtypes: Mapping[str, np.dtype],
) -> tuple[list[FeatureProfile], int, Any]:
    n_rows = next(iter(columns.values())).shape[0] if columns else 0
    digest = hashlib.blake2b(digest_size=16)
    digest.update(str(n_rows).encode())
    features: list[FeatureProfile] = []
    numeric: list[tuple[int, str, np.ndarray, np.ndarray, str]] = []
    for name, col in columns.items():
        if name in skip:
            continue
        digest.update(name.encode() + b"\0" + str(col.dtype).encode())
        _hash_column(digest, col)
        served, dtype = as_served(col, dtypes.get(name), name)
        if name in cat or not is_numeric(col):
            features.append(_fit_categorical(name, served, max_levels, dtype))
        else:
            numeric.append((len(features), name, served, quantile_edges(served, bins), dtype))
            features.append(None)  # type: ignore[arg-type]
    for counts, (pos, name, served, edges, dtype) in zip(_numeric_counts(numeric), numeric, strict=True):
        low, high = value_range(served)
        features[pos] = FeatureProfile(
            name=name,
            kind=NUMERIC,
            counts=counts,
            edges=edges.tolist(),
            null_fraction=counts[-1] / n_rows if n_rows else 0.0,
            dtype=dtype,
            low=low,
            high=high,
        )
    return features, n_rows, digest


def as_served(col: np.ndarray, dtype: np.dtype | None, name: str) -> tuple[np.ndarray, str | None]:
    """The column as the model receives it, and the dtype name the profile records.

    Numeric columns are rounded to ``dtype`` (default: their own); rounding that
    merges distinct values or overflows to infinity is warned about, since the
    reference then holds less than the data did.
    """
    if not is_numeric(col):
        return col, None
    if dtype is None or dtype.kind not in "fiub":
        dtype = col.dtype
    name_of = dtype.name if dtype.name in DTYPES else "float64"
    if dtype == col.dtype or dtype.kind != "f":
        # Integers (and bools) bin as float64, exactly: nothing to round.
        return col, name_of
    with np.errstate(over="ignore", invalid="ignore"):
        served = col.astype(dtype)
    if dtype.itemsize < col.dtype.itemsize or col.dtype.kind != "f":
        _warn_if_lossy(col, served, name, name_of)
    return served, name_of


def value_range(col: np.ndarray) -> tuple[float | None, float | None]:
    """The smallest and largest finite value of a numeric column (None, None without one)."""
    x = col if col.dtype.kind == "f" else col.astype(np.float64)
    finite = x[np.isfinite(x)] if x.dtype.kind == "f" else x
    if finite.size == 0:
        return None, None
    return float(finite.min()), float(finite.max())


def _warn_if_lossy(col: np.ndarray, served: np.ndarray, name: str, dtype: str) -> None:
    finite = np.isfinite(col) if col.dtype.kind == "f" else np.ones(col.shape, dtype=bool)
    overflow = int(np.count_nonzero(finite & ~np.isfinite(served)))
    if overflow:
        warnings.warn(
            f"column {name!r}: {overflow} finite value(s) overflow {dtype} and become infinite "
            "when the model receives them",
            DtypeWarning,
            stacklevel=5,
        )
        return
    # Distinct values that round to one: the model cannot tell them apart either.
    before = np.unique(col[finite]).size
    after = np.unique(served[finite]).size
    if after < before:
        warnings.warn(
            f"column {name!r}: {before} distinct values become {after} in {dtype}, the dtype the "
            f"model receives; the profile bins what the model sees",
            DtypeWarning,
            stacklevel=5,
        )


def _numeric_counts(numeric: list[tuple[int, str, np.ndarray, np.ndarray, str]]) -> list[list[int]]:
    out = []
    for _, _, col, edges, _ in numeric:
        x = col if col.dtype.kind == "f" else col.astype(np.float64)
        out.append(kernels.count_numeric(x, [edges]).tolist())
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
    """Inner edges between the reference quantiles 1/bins .. (bins-1)/bins.

    The quantile candidates are data values (the ``floor(q * n)``-th smallest);
    each edge is put between its candidate ``v`` and the largest value below it,
    so the data split exactly as at ``v`` (left-closed bins) but no value sits on
    an edge: a value that differs from a reference value only by rounding (float32
    against float64, a decimal re-read from text) still lands in the same bin.
    Ties and constant columns give repeated candidates, which are merged (never a
    zero-width bin, no edge below the smallest value); infinite candidates are
    dropped so +-inf fall in the tails.  Work in the column's own dtype: round
    first (see `as_served`).
    """
    x = col if col.dtype.kind == "f" else col.astype(np.float64)
    nan = np.isnan(x)
    valid = x[~nan] if nan.any() else np.array(x, copy=True)
    n = valid.size
    if n == 0 or bins == 1:
        return np.zeros(0, dtype=np.float64)
    ranks = np.minimum((np.arange(1, bins) * n) // bins, n - 1)
    # In-place partition of our own copy: O(n) per column, no full sort.  Afterwards
    # the values between two ranks lie between those ranks' values.
    valid.partition(ranks)
    edges: list[float] = []
    for i, r in enumerate(ranks):
        v = valid[r]
        if (i and valid[ranks[i - 1]] == v) or not np.isfinite(v):
            continue
        seg = valid[ranks[i - 1] : r] if i else valid[:r]
        below = seg[seg < v]
        if below.size == 0:
            continue  # v is the smallest value: nothing to split off
        edges.append(_between(float(below.max()), float(v)))
    return np.unique(np.array(edges, dtype=np.float64))


def _between(lo: float, hi: float) -> float:
    """A short decimal near the middle of (lo, hi]: readable in reports, and as far
    from both values as a decimal of that length gets."""
    if not math.isfinite(lo):
        return hi
    mid = lo / 2 + hi / 2
    if not lo < mid < hi:
        return hi  # adjacent doubles: hi itself is the only cut
    slack = (hi - lo) / 4
    for digits in range(1, 18):
        d = float(f"{mid:.{digits}g}")
        if lo < d < hi and abs(d - mid) <= slack:
            return d
    return mid


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


def _fit_categorical(name: str, col: np.ndarray, max_levels: int, dtype: str | None) -> FeatureProfile:
    n = col.shape[0]
    if col.dtype.kind == "b":
        # Levels 0 and 1, the numbers the monitor counts a bool as (as text, 'False' and
        # 'True', no served row would ever match them).
        col = col.view(np.uint8)
    if col.dtype.kind in "iub":
        values, freq = np.unique(col, return_counts=True)
        tally = Counter(dict(zip(values.tolist(), freq.tolist(), strict=True)))
        n_missing = 0
    elif col.dtype.kind == "f":
        nan = np.isnan(col)
        values, freq = np.unique(col[~nan], return_counts=True)
        # A float32 level is written as the shortest decimal that rounds back to it
        # (0.1, not 0.10000000149011612); the monitor rounds levels to the dtype again.
        level_values = values.tolist() if col.dtype.itemsize == 8 else [float(str(v)) for v in values]
        tally = Counter(dict(zip(level_values, freq.tolist(), strict=True)))
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
    # An infinity is no level (JSON has no number for it): it counts as "other", as it will
    # when served.
    kept = [v for v, _ in merged.most_common() if not (isinstance(v, float) and math.isinf(v))][:max_levels]
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
        dtype=dtype,
    )
