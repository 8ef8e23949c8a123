"""`mlrt validate`: is a data set fit to train or score on, judged against the reference
profile it should look like? Three families of checks, each named with the figure that
failed:

- schema: every profiled column present; each of a type the profile can take (numbers
  for a numeric feature; for a categorical one, values of the kind its levels are); no
  column the profile does not know, unless allowed (`allow_extra`, or named in `ignore`).
- quality: each column's missing share (nulls and NaN) at most the reference's plus
  `max_null_increase`, and at most `max_null_rate` when given; categorical values never
  seen in the reference (when the reference's levels were complete), at most
  `max_unseen`; a column constant here that varied in the reference; duplicate rows, when
  `duplicates` is given a limit.
- drift: the server's rule, unchanged (runtime/monitor: PSI bands with the sample-size
  guard and Holm's correction); the data fails when the model-level status is `alert`.

The data is read whole (as `mlrt drift` reads it): validate a batch or a split, not a lake.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import MonitorConfig
from ..data import dataset, expand_paths, to_columns
from ..errors import ConfigError
from ..monitor.drift import offline_report
from ..monitor.profile import CATEGORICAL, Profile

__all__ = ["Check", "ValidationResult", "validate"]

#: Bumped when a field of ValidationResult.to_json() changes meaning or disappears.
VALIDATE_SCHEMA = 1


@dataclass
class Check:
    """One check on one column (or on the whole data: column None)."""

    family: str  # schema, quality, drift
    name: str  # missing_column, dtype, unexpected_column, nulls, unseen_categories, ...
    column: str | None
    passed: bool
    message: str
    value: Any = None  # the figure measured
    limit: Any = None  # what it was held to

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "check": self.name,
            "column": self.column,
            "passed": self.passed,
            "value": self.value,
            "limit": self.limit,
            "message": self.message,
        }


@dataclass
class ValidationResult:
    data: list[str]
    rows: int
    profile_rows: int
    checks: list[Check] = field(default_factory=list)
    drift: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": VALIDATE_SCHEMA,
            "passed": self.passed,
            "data": self.data,
            "rows": self.rows,
            "reference_rows": self.profile_rows,
            "failed": len(self.failures),
            "checks": [c.to_json() for c in sorted(self.checks, key=lambda c: c.passed)],
            "drift": self.drift,
        }


def _missing(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind == "f":
        return np.isnan(col)
    if col.dtype == object:
        return np.array([v is None or (isinstance(v, float) and v != v) for v in col.tolist()], dtype=bool)
    return np.zeros(len(col), dtype=bool)


def _kind(values: Sequence[Any]) -> str:
    """'number' or 'text': what a categorical feature's levels (or a column's values) are."""
    return (
        "number" if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) else "text"
    )


def _schema(
    profile: Profile, columns: dict[str, np.ndarray], allow_extra: bool, ignore: set[str]
) -> list[Check]:
    checks = []
    for f in profile.features:
        if f.name not in columns:
            checks.append(Check("schema", "missing_column", f.name, False, f"column {f.name!r} is missing"))
            continue
        col = columns[f.name]
        present = col[~_missing(col)]
        if f.kind == CATEGORICAL:
            want = _kind(f.levels) if f.levels else None
            got = "number" if col.dtype.kind in "iufb" else _kind(present[:1000].tolist())
            ok = want is None or want == got
            message = f"{f.name!r}: categorical, levels are {want}s" + (
                "" if ok else f", the data has {got}s"
            )
        else:
            ok = col.dtype.kind in "iufb"
            got = col.dtype.name if ok else _kind(present[:1000].tolist())
            message = f"{f.name!r}: numeric ({f.dtype or 'any'})" + (
                "" if ok else f", the data has {got} values"
            )
        checks.append(Check("schema", "dtype", f.name, ok, message, got, f.dtype or f.kind))
    known = set(profile.names) | {f.name for f in profile.outputs}
    for name in columns:
        if name in known or name in ignore:
            continue
        checks.append(
            Check(
                "schema", "unexpected_column", name, allow_extra,
                f"column {name!r} is not in the profile" + (" (allowed)" if allow_extra else ""),
            )
        )  # fmt: skip
    return checks


def _quality(
    profile: Profile,
    columns: dict[str, np.ndarray],
    max_null_increase: float,
    max_null_rate: float | None,
    max_unseen: float,
) -> list[Check]:
    checks = []
    for f in profile.features:
        col = columns.get(f.name)
        if col is None or len(col) == 0:
            continue
        missing = _missing(col)
        rate = float(missing.mean())
        limit = f.null_fraction + max_null_increase
        if max_null_rate is not None:
            limit = min(limit, max_null_rate)
        checks.append(
            Check(
                "quality", "nulls", f.name, rate <= limit + 1e-12,
                f"{f.name!r}: {rate:.2%} missing, the reference {f.null_fraction:.2%} (limit {limit:.2%})",
                rate, limit,
            )
        )  # fmt: skip
        present = col[~missing]
        distinct = (
            np.unique(present.astype(str) if present.dtype == object else present) if len(present) else []
        )
        reference_bins = sum(1 for c in f.counts[:-1] if c > 0)  # the missing slot aside
        if len(distinct) == 1 and reference_bins > 1:
            checks.append(
                Check(
                    "quality", "constant", f.name, False,
                    f"{f.name!r}: every value is {distinct[0]!r}; "
                    f"it took {reference_bins} bins in the reference",
                    1, reference_bins,
                )
            )  # fmt: skip
        if f.kind == CATEGORICAL and f.counts[len(f.levels)] == 0 and len(present):
            # The reference's levels were all it had (its "other" bucket is empty), so a
            # value outside them is new, not just rare.
            levels = set(f.levels)
            unseen = Counter(v for v in present.tolist() if v not in levels)
            share = sum(unseen.values()) / len(col)
            top = ", ".join(f"{v!r} ({n})" for v, n in unseen.most_common(5))
            checks.append(
                Check(
                    "quality", "unseen_categories", f.name, share <= max_unseen,
                    f"{f.name!r}: {share:.2%} of rows hold values the reference never had"
                    + (f": {top}" if unseen else ""),
                    share, max_unseen,
                )
            )  # fmt: skip
    return checks


def _duplicates(columns: dict[str, np.ndarray], limit: float) -> Check:
    rows = len(next(iter(columns.values())))
    # NaN never equals itself: as None, two rows missing the same value repeat.
    keys = [
        [None if v != v else v for v in c.tolist()] if c.dtype.kind in "fO" else c.tolist()
        for c in columns.values()
    ]
    seen = Counter(zip(*keys, strict=True))
    repeated = sum(n - 1 for n in seen.values() if n > 1)
    share = repeated / rows if rows else 0.0
    return Check(
        "quality", "duplicates", None, share <= limit,
        f"{repeated} rows repeat an earlier row ({share:.2%}, limit {limit:.2%})", share, limit,
    )  # fmt: skip


def _drift(
    profile: Profile, columns: dict[str, np.ndarray], config: MonitorConfig
) -> tuple[list[Check], dict]:
    report = offline_report(profile, {f.name: columns[f.name] for f in profile.features}, config)
    checks = []
    for f in report["features"]:
        psi = f["psi"]
        checks.append(
            Check(
                "drift", "psi", f["name"], f["status"] != "alert",
                f"{f['name']!r}: PSI {psi:.4f} ({f['status']})"
                if psi is not None
                else f"{f['name']!r}: no rows",
                psi, config.alert_psi,
            )
        )  # fmt: skip
    checks.append(
        Check(
            "drift", "model_status", None, report["status"] != "alert",
            f"the data's drift status is {report['status']} (the server's rule: PSI bands, "
            f"significance at alpha {config.alpha}, at least {config.min_rows} rows)",
            report["status"], "alert",
        )
    )  # fmt: skip
    return checks, report


def validate(
    data: str | Sequence[str],
    profile: str | Profile,
    *,
    allow_extra: bool = False,
    ignore: Sequence[str] = (),
    max_null_increase: float = 0.05,
    max_null_rate: float | None = None,
    max_unseen: float = 0.0,
    duplicates: float | None = None,
    monitor: MonitorConfig | None = None,
) -> ValidationResult:
    """Check `data` (files, folders or globs) against a reference profile (a path or a
    Profile). A failing check is a result, not an exception; unreadable input raises
    ConfigError, FileNotFoundError or ValueError naming the file."""
    for name, value in (("max_null_increase", max_null_increase), ("max_unseen", max_unseen)):
        if not 0 <= value <= 1:
            raise ConfigError(f"{name} must be a share from 0 to 1, got {value}")
    ref = profile if isinstance(profile, Profile) else Profile.load(profile)
    paths = expand_paths([data] if isinstance(data, str) else list(data))
    columns = to_columns(dataset(paths).to_table())
    rows = len(next(iter(columns.values()))) if columns else 0
    if rows == 0:
        raise ConfigError(f"{', '.join(paths)}: no rows to validate")
    result = ValidationResult(data=paths, rows=rows, profile_rows=int(sum(ref.features[0].counts)))
    result.checks += _schema(ref, columns, allow_extra, set(ignore))
    result.checks += _quality(ref, columns, max_null_increase, max_null_rate, max_unseen)
    if duplicates is not None:
        result.checks.append(_duplicates(columns, duplicates))
    if all(c.passed for c in result.checks if c.family == "schema" and c.name != "unexpected_column"):
        drift_checks, result.drift = _drift(ref, columns, monitor or MonitorConfig())
        result.checks += drift_checks
    else:
        result.checks.append(
            Check("drift", "model_status", None, False, "not judged: the schema checks failed", None, "alert")
        )
    return result
