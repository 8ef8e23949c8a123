"""`mlrt validate`: is a data set fit to train or score on, judged against the reference
profile it should look like? Three families of checks, each named with the figure that
failed:

- schema: every profiled column present; each of a type the profile can take (numbers
  for a numeric feature; for a categorical one, values of the kind its levels are); no
  column the profile does not know, unless allowed (`allow_extra`, or named in `ignore`).
- quality: each column's missing share (nulls and NaN) at most the reference's plus
  `max_null_increase`, and never past `max_null_rate` when given; categorical values never
  seen in the reference (when the reference's levels were complete), at most `max_unseen`;
  numeric values outside the reference's range (its smallest and largest value, compared
  in the dtype the profile bins in), at most `max_out_of_range`; a column constant here
  that varied in the reference; duplicate rows, when `duplicates` is given a limit.
  A figure past its limit fails only when chance does not explain it (`_judge`): the
  same significance level and Holm's correction over features as the drift rule, so a
  60-row batch a few points over the null limit, or a rare level a reference happened
  not to draw, does not fail a pipeline (bench/validate_rates.py measures both rates).
- model (with `model`): the columns map onto the model's inputs as `mlrt predict` maps them
  (runtime/model_columns.py); each feeding column converts to its input's datatype by the
  server's one rule (every value, so a NaN bound for an integer input is found); and the
  profile bins each float column in the dtype the model receives it in, or counts drift in
  a different one than the server sees (a profile fitted on float64 judging a float32 model
  alarms on unchanged data).
- drift: the server's rule, unchanged (runtime/monitor: PSI bands with the sample-size
  guard and Holm's correction); the data fails when the model-level status is `alert`.

The data is read whole (as `mlrt drift` reads it): validate a batch or a split, not a lake.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import MonitorConfig
from ..data import expand_paths, read_table, to_columns
from ..datatypes import is_missing
from ..errors import ConfigError, InvalidInput
from ..monitor.drift import offline_report
from ..monitor.profile import CATEGORICAL, FeatureProfile, Profile
from ..monitor.rule import chi2_sf, holm

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
        return np.array([is_missing(v) for v in col.tolist()], dtype=bool)
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
        if not len(present) and col.dtype == object:
            # Nothing but missing values (an empty CSV column reads as Arrow's null type):
            # no type to judge; the nulls check says what is wrong.
            message = f"{f.name!r}: every value is missing, so its type cannot be told"
            checks.append(Check("schema", "dtype", f.name, True, message, "missing", f.dtype or f.kind))
            continue
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


def _beyond(k: int, m: int, n: int) -> float:
    """The chance that at least k of m fresh draws exceed the largest of n reference draws
    from the same distribution: that the top k of all n + m values are all fresh ones,
    C(m, k) / C(n + m, k). Ties only make a strict excess rarer: with them this bounds the
    chance from above, so the test errs toward passing."""
    if k <= 0:
        return 1.0
    if k > m:
        return 0.0
    lg = math.lgamma
    return math.exp(lg(m + 1) - lg(m - k + 1) - lg(n + m + 1) + lg(n + m - k + 1))


@dataclass
class _Finding:
    """A quality figure past its limit fails only when chance does not explain it: a small
    window, or a reference of a few hundred rows, shows a few points more nulls, a rare
    level the reference never drew, or a value past its extremes, with unchanged data."""

    check: Check  # passed: within its limit
    p: float  # the chance of a figure this far past the reference from unchanged data
    hard: bool = False  # past an absolute cap (--max-null-rate): fails whatever chance says


def _judge(findings: list[_Finding], alpha: float) -> list[Check]:
    """Holm's correction over one check's findings (one per feature), as the drift rule
    corrects over features; a finding past its limit but not significant passes."""
    significant = holm([f.p for f in findings], alpha)
    for f, sig in zip(findings, significant, strict=True):
        if f.check.passed:
            continue
        if sig or f.hard:
            f.check.message += f"; p {f.p:.2g}"
        else:
            f.check.passed = True
            f.check.message += f"; p {f.p:.2g}: chance explains it (alpha {alpha}, Holm's correction)"
    return [f.check for f in findings]


def _g_one_sided(cells: Sequence[tuple[float, float]], above: bool) -> float:
    """One-sided p of a G-test with one degree of freedom from (observed, expected) cells;
    1 when the figure is not above what was expected."""
    if not above:
        return 1.0
    g = 2 * sum(o * math.log(o / e) for o, e in cells if o > 0 and e > 0)
    return chi2_sf(max(g, 0.0), 1) / 2


def _more_missing(k: int, m: int, k_ref: int, n: int) -> float:
    """p of k missing of m rows against k_ref of n in the reference, by chance."""
    if m == 0 or n == 0:
        return 1.0
    pool = (k + k_ref) / (m + n)
    cells = [(k, m * pool), (m - k, m * (1 - pool)), (k_ref, n * pool), (n - k_ref, n * (1 - pool))]
    return _g_one_sided(cells, k / m > k_ref / n)


def _more_unseen(k: int, m: int, counts: Sequence[int]) -> float:
    """p of k of m values at levels a reference with these level counts never drew. The
    chance a fresh value is of a level the reference missed is about the share of its
    levels seen once (Good and Turing); one added keeps it above zero."""
    n = sum(counts)
    p0 = (sum(1 for c in counts if c == 1) + 1) / (n + 1)
    cells = [(k, m * p0), (m - k, m * (1 - p0))]
    return _g_one_sided(cells, k > m * p0)


def _outside(f: FeatureProfile, present: np.ndarray, rows: int, limit: float) -> _Finding | None:
    if f.low is None or f.high is None or present.dtype.kind not in "iufb" or not len(present):
        return None  # a profile from before ranges were kept, or not numbers (the dtype check says)
    x = present.astype(np.float64)
    if f.rounds:  # compare as the profile saw its values: rounded to the model's float
        with np.errstate(over="ignore", invalid="ignore"):
            x = x.astype(f.dtype)
    below = int(np.count_nonzero(x < f.low))
    above = int(np.count_nonzero(x > f.high))
    n, m = int(sum(f.counts[:-1])), len(present)
    share = (below + above) / rows
    check = Check(
        "quality", "out_of_range", f.name, share <= limit,
        f"{f.name!r}: {share:.2%} of rows outside the reference's range [{f.low:.6g}, {f.high:.6g}] "
        f"({below} below, {above} above; limit {limit:.2%})",
        share, limit,
    )  # fmt: skip
    # Unchanged data puts about 2/(n+1) of its values past the extremes of n reference rows.
    return _Finding(check, min(1.0, 2 * min(_beyond(below, m, n), _beyond(above, m, n))))


def _quality(
    profile: Profile,
    columns: dict[str, np.ndarray],
    max_null_increase: float,
    max_null_rate: float | None,
    max_unseen: float,
    max_out_of_range: float,
    alpha: float,
) -> list[Check]:
    checks: list[Check] = []
    found: dict[str, list[_Finding]] = {"nulls": [], "out_of_range": [], "unseen_categories": []}
    for f in profile.features:
        col = columns.get(f.name)
        if col is None or len(col) == 0:
            continue
        missing = _missing(col)
        k = int(missing.sum())
        rate = k / len(col)
        limit = f.null_fraction + max_null_increase
        capped = max_null_rate is not None and rate > max_null_rate + 1e-12
        if max_null_rate is not None:
            limit = min(limit, max_null_rate)
        check = Check(
            "quality", "nulls", f.name, rate <= limit + 1e-12,
            f"{f.name!r}: {rate:.2%} missing, the reference {f.null_fraction:.2%} (limit {limit:.2%})",
            rate, limit,
        )  # fmt: skip
        n_ref = int(sum(f.counts))
        found["nulls"].append(_Finding(check, _more_missing(k, len(col), int(f.counts[-1]), n_ref), capped))
        present = col[~missing]
        if f.kind != CATEGORICAL:
            outside = _outside(f, present, len(col), max_out_of_range)
            if outside is not None:
                found["out_of_range"].append(outside)
        distinct = (
            np.unique(present.astype(str) if present.dtype == object else present) if len(present) else []
        )
        reference_bins = sum(1 for c in f.counts[:-1] if c > 0)  # the missing slot aside
        if len(distinct) == 1 and reference_bins > 1:
            checks.append(
                Check(
                    "quality", "constant", f.name, False,
                    f"{f.name!r}: every value is {distinct[0].item()!r}; "  # 'N', not np.str_('N')
                    f"it took {reference_bins} bins in the reference",
                    1, reference_bins,
                )
            )  # fmt: skip
        if f.kind == CATEGORICAL and f.counts[len(f.levels)] == 0 and len(present):
            # The reference's levels were all it had (its "other" bucket is empty), so a
            # value outside them is new, not just rare.
            levels = set(f.levels)
            unseen = Counter(v for v in present.tolist() if v not in levels)
            k = sum(unseen.values())
            share = k / len(col)
            top = ", ".join(f"{v!r} ({n})" for v, n in unseen.most_common(5))
            check = Check(
                "quality", "unseen_categories", f.name, share <= max_unseen,
                f"{f.name!r}: {share:.2%} of rows hold values the reference never had"
                + (f": {top}" if unseen else ""),
                share, max_unseen,
            )  # fmt: skip
            found["unseen_categories"].append(_Finding(check, _more_unseen(k, len(present), f.counts[:-2])))
    for findings in found.values():
        checks += _judge(findings, alpha)
    return checks


INTEGERS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool")


def _exact_in(col: np.ndarray, dtype: str) -> bool:
    """Whether every value of an integer column survives the trip to `dtype` (so binning it
    as an integer and as the model's float is the same)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return col.dtype.kind in "iub" and bool(np.array_equal(col.astype(dtype).astype(col.dtype), col))


def _model(
    model: str, registry: str | None, ref: Profile, columns: dict[str, np.ndarray], ignore: tuple[str, ...]
) -> list[Check]:
    from ..datatypes import numpy_dtype
    from ..model_columns import feeding_pairs, input_widths, tensor_from_columns
    from ..offline.scoring import ScorerSpec

    # A model that does not load raises ConfigError: a usage error (exit 2), not a failed check.
    scorer = ScorerSpec(model, threads=1, registry=registry, passthrough=ignore).build()
    scorer.profile = ref  # columns map as `mlrt predict --profile REF` maps them
    specs = scorer.model.inputs
    try:
        feeding = scorer.input_columns(list(columns))
    except ConfigError as exc:  # the data lacks a column the model or the profile names
        return [Check("schema", "model_inputs", None, False, str(exc), None, None)]
    pairs = feeding_pairs(specs, feeding)
    if pairs is None:
        widths = input_widths(specs)
        want = ", ".join(f"'{s.name}' {list(s.shape)}" for s in specs)
        return [
            Check(
                "schema", "model_inputs", None, False,
                f"the model's inputs ({want}) take {sum(widths)} columns; the data would feed "
                f"{len(feeding)}: {feeding[:8]}{' ...' if len(feeding) > 8 else ''}",
                len(feeding), sum(widths),
            )
        ]  # fmt: skip
    checks = []
    # String inputs that cannot hold a missing value (onnxruntime's): a null there fails the
    # request, or the batch job, that check_inputs would refuse.
    takes_missing = getattr(scorer.model, "missing_text", False)
    no_nulls = set() if takes_missing else set(getattr(scorer.model, "text_inputs", ()))
    for name, spec in pairs:
        try:
            tensor_from_columns([name], [columns[name]], spec)
            ok, message = True, f"{name!r} feeds input '{spec.name}' ({spec.datatype})"
            missing = int(_missing(columns[name]).sum()) if spec.name in no_nulls else 0
            if missing:
                ok, message = False, (
                    f"{name!r} has {missing} missing value(s), and the model's string input "
                    f"'{spec.name}' cannot take one: fill them first"
                )
        except (ConfigError, InvalidInput) as exc:
            ok, message = False, str(exc)
        dtype = columns[name].dtype.name
        checks.append(Check("schema", "model_dtype", name, ok, message, dtype, spec.datatype))
        served = numpy_dtype(spec.datatype).name if spec.datatype != "BYTES" else None
        try:
            f = ref.feature(name)
        except KeyError:
            continue
        if f.kind == CATEGORICAL or served not in ("float16", "float32"):
            continue  # text, or a dtype that holds the column's values exactly: nothing rounds
        ok = f.dtype == served or (f.dtype in INTEGERS and _exact_in(columns[name], served))
        checks.append(
            Check(
                "schema", "profile_dtype", name, ok,
                f"{name!r}: the profile bins it as {f.dtype or 'its file dtype'}"
                + (
                    ", as the model receives it" if ok else
                    f", the model receives {served}: unchanged data can count into other bins "
                    "(refit with mlrt profile DATA --model MODEL)"
                ),
                f.dtype, served,
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
    rows = len(next(iter(columns.values()))) if columns else 0
    # Under min_rows no status is judged (all "ok"): say so, not "ok", beside each PSI.
    untested = None
    if rows < config.min_rows:
        untested = f"not judged: {rows} rows, under min_rows {config.min_rows}"
    checks = []
    for f in report["features"]:
        psi = f["psi"]
        checks.append(
            Check(
                "drift", "psi", f["name"], f["status"] != "alert",
                f"{f['name']!r}: PSI {psi:.4f} ({untested or f['status']})"
                if psi is not None
                else f"{f['name']!r}: no rows",
                psi, config.alert_psi,
            )
        )  # fmt: skip
    checks.append(
        Check(
            "drift", "model_status", None, report["status"] != "alert",
            f"the data's drift is {untested}" if untested else
            f"the data's drift status is {report['status']} (the server's rule: PSI bands, "
            f"significance at alpha {config.alpha}, at least {config.min_rows} rows)",
            report["status"], "alert",
        )
    )  # fmt: skip
    return checks, report


def validate(
    data: str | Sequence[str] | Any,
    profile: str | Profile,
    *,
    allow_extra: bool = False,
    ignore: Sequence[str] = (),
    max_null_increase: float = 0.05,
    max_null_rate: float | None = None,
    max_unseen: float = 0.0,
    max_out_of_range: float = 0.01,
    duplicates: float | None = None,
    monitor: MonitorConfig | None = None,
    model: str | None = None,
    registry: str | None = None,
) -> ValidationResult:
    """Check `data` (files, folders or globs, or a pyarrow Table) against a reference profile
    (a path or a Profile), and against `model`'s inputs when given (anything `mlrt serve` takes). A
    failing check is a result, not an exception; unreadable input or a model that does
    not load raises ConfigError, FileNotFoundError or ValueError naming the file."""
    shares = (
        ("max_null_increase", max_null_increase),
        ("max_unseen", max_unseen),
        ("max_out_of_range", max_out_of_range),
    )
    for name, value in shares:
        if not 0 <= value <= 1:
            raise ConfigError(f"{name} must be a share from 0 to 1, got {value}")
    ref = profile if isinstance(profile, Profile) else Profile.load(profile)
    if hasattr(data, "column_names") and hasattr(data, "schema"):  # a pyarrow Table already read
        paths, columns = ["<table>"], to_columns(data)
    else:
        paths = expand_paths([data] if isinstance(data, str) else list(data))
        columns = to_columns(read_table(paths))
    rows = len(next(iter(columns.values()))) if columns else 0
    if rows == 0:
        raise ConfigError(f"{', '.join(paths)}: no rows to validate")
    result = ValidationResult(data=paths, rows=rows, profile_rows=int(sum(ref.features[0].counts)))
    result.checks += _schema(ref, columns, allow_extra, set(ignore))
    monitor = monitor or MonitorConfig()
    result.checks += _quality(
        ref, columns, max_null_increase, max_null_rate, max_unseen, max_out_of_range, monitor.alpha
    )
    if duplicates is not None:
        result.checks.append(_duplicates(columns, duplicates))
    if model is not None:
        result.checks += _model(model, registry, ref, columns, tuple(ignore))
    # Drift needs every profiled column, of a type it can bin; the model's checks do not matter to it.
    if all(c.passed for c in result.checks if c.name in ("missing_column", "dtype")):
        drift_checks, result.drift = _drift(ref, columns, monitor)
        result.checks += drift_checks
    else:
        result.checks.append(
            Check("drift", "model_status", None, False, "not judged: the schema checks failed", None, "alert")
        )
    return result
