"""Univariate drift between a reference window and a current partition.

Configuration (`DriftSpec`), calculation (the method registry) and judgement (thresholds ->
`DriftVerdict`) are kept apart, as in Evidently. Every statistic is an effect size, so a verdict
does not flip just because a partition is larger; p-values are reported only as context.

    detector = DriftDetector(spec).fit(reference_df)
    report = detector.compare(current_df)
    report.drifted_columns  # ['income', 'device_os']
"""

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from enum import StrEnum

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats
from scipy.spatial.distance import jensenshannon

from orchestrator.core.errors import DataError, NotFittedError, UnknownMethodError
from orchestrator.core.spec import DriftPolicy, FeatureKind, MonitoredModelSpec, Threshold

# Empty bins would make PSI infinite; this floor is the usual smoothing (Evidently uses 1e-4 too).
_PSI_FLOOR = 1e-4


class DriftVerdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    DRIFT = "drift"
    INSUFFICIENT_DATA = "insufficient_data"
    INVALID = "invalid"


# Order of severity for "the worst of": anything that cannot be judged ranks above a warning.
_SEVERITY = {
    DriftVerdict.OK: 0,
    DriftVerdict.WARN: 1,
    DriftVerdict.INSUFFICIENT_DATA: 2,
    DriftVerdict.INVALID: 3,
    DriftVerdict.DRIFT: 4,
}


def worst_verdict(verdicts: Iterable[DriftVerdict]) -> DriftVerdict:
    return max(verdicts, key=_SEVERITY.__getitem__, default=DriftVerdict.OK)


class DriftSpec(BaseModel):
    """Which columns to watch, their kinds, and the policy that judges them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, FeatureKind]
    policy: DriftPolicy = Field(default_factory=DriftPolicy)

    @classmethod
    def for_model(cls, spec: MonitoredModelSpec) -> "DriftSpec":
        return cls(columns={f.name: f.kind for f in spec.features}, policy=spec.drift)


@dataclass(frozen=True)
class MethodResult:
    """One statistic on one column, with the threshold actually applied and why it judged so."""

    column: str
    method: str
    statistic: float | None
    threshold: Threshold
    verdict: DriftVerdict
    reason: str


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: FeatureKind
    n_reference: int
    n_current: int
    methods: tuple[MethodResult, ...]

    @property
    def verdict(self) -> DriftVerdict:
        return worst_verdict(m.verdict for m in self.methods)

    @property
    def worst(self) -> MethodResult:
        """The method that decided the verdict; among equals, the furthest past its error level."""
        return max(self.methods, key=lambda m: (_SEVERITY[m.verdict], _error_ratio(m)))


def _error_ratio(result: MethodResult) -> float:
    if result.statistic is None or result.threshold.error == 0:
        return 0.0
    return result.statistic / result.threshold.error


@dataclass(frozen=True)
class DriftReport:
    columns: tuple[ColumnDrift, ...]
    n_reference: int
    n_current: int

    @property
    def verdict(self) -> DriftVerdict:
        return worst_verdict(c.verdict for c in self.columns)

    def columns_with(self, verdict: DriftVerdict) -> list[str]:
        return [c.column for c in self.columns if c.verdict is verdict]

    @property
    def drifted_columns(self) -> list[str]:
        return self.columns_with(DriftVerdict.DRIFT)

    def ranked(self) -> list[ColumnDrift]:
        """Columns worst first: by verdict severity, then by how far past the error level."""
        return sorted(
            self.columns,
            key=lambda c: (_SEVERITY[c.verdict], _error_ratio(c.worst)),
            reverse=True,
        )

    def to_records(self) -> list[dict]:
        return [
            {
                "column": m.column,
                "method": m.method,
                "statistic": m.statistic,
                "warn": m.threshold.warn,
                "error": m.threshold.error,
                "verdict": m.verdict.value,
                "reason": m.reason,
            }
            for c in self.ranked()
            for m in c.methods
        ]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame.from_records(self.to_records())


@dataclass(frozen=True)
class ColumnReference:
    """What `fit` learns about one reference column."""

    kind: FeatureKind
    n_rows: int
    null_rate: float
    values: np.ndarray  # numerical: sorted non-null values; categorical: unused (empty)
    edges: np.ndarray  # numerical: interior quantile cut points
    std: float
    categories: dict[str, int] = dataclass_field(default_factory=dict)

    @property
    def n_values(self) -> int:
        return (
            int(self.values.size)
            if self.kind is FeatureKind.NUMERICAL
            else sum(self.categories.values())
        )


@dataclass(frozen=True)
class _Current:
    n_rows: int
    null_rate: float
    values: np.ndarray  # numerical: non-null values; categorical: non-null values as str


# --- the method registry -------------------------------------------------------------------


@dataclass(frozen=True)
class DriftMethod:
    name: str
    kinds: frozenset[FeatureKind]
    compute: Callable[[ColumnReference, _Current], float]
    needs_values: bool = True  # False: judged on row counts (null rate), not on non-null values


def _binned(ref: ColumnReference, cur: _Current) -> tuple[np.ndarray, np.ndarray]:
    """Reference and current fractions over the reference's quantile bins plus a null bin."""
    n_bins = ref.edges.size + 1
    ref_counts = np.bincount(np.searchsorted(ref.edges, ref.values, side="right"), minlength=n_bins)
    cur_counts = np.bincount(np.searchsorted(ref.edges, cur.values, side="right"), minlength=n_bins)
    ref_frac = np.append(ref_counts * (1 - ref.null_rate) / max(ref.values.size, 1), ref.null_rate)
    cur_frac = np.append(cur_counts * (1 - cur.null_rate) / max(cur.values.size, 1), cur.null_rate)
    return ref_frac, cur_frac


def _category_counts(ref: ColumnReference, cur: _Current) -> tuple[np.ndarray, np.ndarray]:
    """Non-null counts per category, reference categories first, then the unseen ones."""
    cur_counts = pd.Series(cur.values).value_counts()
    names = list(ref.categories) + [c for c in cur_counts.index if c not in ref.categories]
    ref_c = np.array([ref.categories.get(n, 0) for n in names], dtype=float)
    cur_c = np.array([cur_counts.get(n, 0) for n in names], dtype=float)
    return ref_c, cur_c


def _category_fractions(ref: ColumnReference, cur: _Current) -> tuple[np.ndarray, np.ndarray]:
    ref_c, cur_c = _category_counts(ref, cur)
    ref_frac = np.append(ref_c * (1 - ref.null_rate) / max(ref_c.sum(), 1), ref.null_rate)
    cur_frac = np.append(cur_c * (1 - cur.null_rate) / max(cur_c.sum(), 1), cur.null_rate)
    return ref_frac, cur_frac


def population_stability_index(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins used by either side, empty bins floored."""
    used = (expected > 0) | (actual > 0)
    e = np.clip(expected[used], _PSI_FLOOR, None)
    a = np.clip(actual[used], _PSI_FLOOR, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _psi(ref: ColumnReference, cur: _Current) -> float:
    return population_stability_index(*_binned(ref, cur))


def _jensen_shannon(ref: ColumnReference, cur: _Current) -> float:
    fractions = _binned if ref.kind is FeatureKind.NUMERICAL else _category_fractions
    return float(jensenshannon(*fractions(ref, cur), base=2))


def _wasserstein(ref: ColumnReference, cur: _Current) -> float:
    scale = ref.std if ref.std > 0 else 1.0
    return float(stats.wasserstein_distance(ref.values, cur.values) / scale)


def _ks(ref: ColumnReference, cur: _Current) -> float:
    return float(stats.ks_2samp(ref.values, cur.values).statistic)


def _chi_square(ref: ColumnReference, cur: _Current) -> float:
    """Cohen's w, the effect size of the chi-square goodness-of-fit test of current against
    reference proportions: sqrt(sum((p_cur - p_ref)^2 / p_ref)) over the reference's categories.

    Unlike the chi-square statistic or Cramér's V it does not grow with sample size. Sampling
    noise alone gives w^2 about (k - 1)(1/n_cur + 1/n_ref) for k categories, enough to cross a
    0.1 warn level on a day of a few thousand rows with many categories; that expectation is
    subtracted (as in Bergsma's bias-corrected Cramér's V), so small windows do not cry wolf.
    Categories the reference never saw are left to `unseen_share`.
    """
    ref_counts, cur_counts = _category_counts(ref, cur)
    known = ref_counts > 0
    n_ref, n_cur = ref_counts[known].sum(), cur_counts[known].sum()
    if n_cur == 0:
        return 1.0  # every current value is new: all the mass left the known categories
    p_ref, p_cur = ref_counts[known] / n_ref, cur_counts[known] / n_cur
    w_squared = np.sum((p_cur - p_ref) ** 2 / p_ref)
    noise = (known.sum() - 1) * (1 / n_cur + 1 / n_ref)
    return float(math.sqrt(max(w_squared - noise, 0.0)))


def _unseen_share(ref: ColumnReference, cur: _Current) -> float:
    unseen = ~pd.Series(cur.values).isin(ref.categories.keys())
    return float(unseen.mean())


def _null_rate(ref: ColumnReference, cur: _Current) -> float:
    return abs(cur.null_rate - ref.null_rate)


_BOTH = frozenset(FeatureKind)
METHODS: dict[str, DriftMethod] = {
    m.name: m
    for m in (
        DriftMethod("psi", frozenset({FeatureKind.NUMERICAL}), _psi),
        DriftMethod("jensen_shannon", _BOTH, _jensen_shannon),
        DriftMethod("wasserstein", frozenset({FeatureKind.NUMERICAL}), _wasserstein),
        DriftMethod("ks", frozenset({FeatureKind.NUMERICAL}), _ks),
        DriftMethod("chi_square", frozenset({FeatureKind.CATEGORICAL}), _chi_square),
        DriftMethod("unseen_share", frozenset({FeatureKind.CATEGORICAL}), _unseen_share),
        DriftMethod("null_rate", _BOTH, _null_rate, needs_values=False),
    )
}


def get_method(name: str, kind: FeatureKind) -> DriftMethod:
    method = METHODS.get(name)
    if method is None:
        raise UnknownMethodError(f"unknown drift method {name!r}; valid methods: {sorted(METHODS)}")
    if kind not in method.kinds:
        valid = sorted(n for n, m in METHODS.items() if kind in m.kinds)
        raise UnknownMethodError(
            f"drift method {name!r} does not apply to {kind.value} columns; valid: {valid}"
        )
    return method


# --- the detector --------------------------------------------------------------------------


class DriftDetector:
    """Learns the reference distribution of every watched column, then judges current data."""

    def __init__(self, spec: DriftSpec):
        self.spec = spec
        self._methods = {
            column: [get_method(name, kind) for name in self._method_names(kind)]
            for column, kind in spec.columns.items()
        }

    def _method_names(self, kind: FeatureKind) -> list[str]:
        policy = self.spec.policy
        return (
            policy.numerical_methods
            if kind is FeatureKind.NUMERICAL
            else (policy.categorical_methods)
        )

    def fit(self, reference: pd.DataFrame) -> "DriftDetector":
        missing = [c for c in self.spec.columns if c not in reference.columns]
        if missing:
            raise DataError(f"reference data lacks watched columns {missing}")
        self.reference_ = {
            column: _fit_column(reference[column], kind, self.spec.policy.bins)
            for column, kind in self.spec.columns.items()
        }
        self.n_reference_ = len(reference)
        return self

    def compare(self, current: pd.DataFrame) -> DriftReport:
        if not hasattr(self, "reference_"):
            raise NotFittedError("DriftDetector.compare called before fit(reference)")
        columns = tuple(self._compare_column(column, current) for column in self.spec.columns)
        return DriftReport(columns=columns, n_reference=self.n_reference_, n_current=len(current))

    def _compare_column(self, column: str, current: pd.DataFrame) -> ColumnDrift:
        ref = self.reference_[column]
        methods = self._methods[column]
        problem = _column_problem(column, ref.kind, current)
        if problem is not None:
            results = [self._unjudged(column, m, DriftVerdict.INVALID, problem) for m in methods]
            return ColumnDrift(column, ref.kind, ref.n_rows, 0, tuple(results))
        cur = _current_column(current[column], ref.kind)
        results = [self._judge(column, m, ref, cur) for m in methods]
        return ColumnDrift(column, ref.kind, ref.n_rows, cur.n_rows, tuple(results))

    def _judge(
        self, column: str, method: DriftMethod, ref: ColumnReference, cur: _Current
    ) -> MethodResult:
        min_rows = self.spec.policy.min_rows
        n_ref, n_cur = (
            (ref.n_values, cur.values.size) if method.needs_values else (ref.n_rows, cur.n_rows)
        )
        rows_kind = "non-null values" if method.needs_values else "rows"
        if min(n_ref, n_cur) < min_rows:
            return self._unjudged(
                column,
                method,
                DriftVerdict.INSUFFICIENT_DATA,
                f"{n_cur} current and {n_ref} reference {rows_kind}; at least {min_rows} needed",
            )
        statistic = method.compute(ref, cur)
        threshold = self.spec.policy.thresholds[method.name]
        verdict, reason = _judge_statistic(statistic, threshold)
        return MethodResult(column, method.name, statistic, threshold, verdict, reason)

    def _unjudged(
        self, column: str, method: DriftMethod, verdict: DriftVerdict, reason: str
    ) -> MethodResult:
        threshold = self.spec.policy.thresholds[method.name]
        return MethodResult(column, method.name, None, threshold, verdict, reason)


def _judge_statistic(statistic: float, threshold: Threshold) -> tuple[DriftVerdict, str]:
    if not math.isfinite(statistic):
        return DriftVerdict.INVALID, f"statistic is {statistic}"
    if statistic >= threshold.error:
        return DriftVerdict.DRIFT, f"{statistic:.4g} >= error level {threshold.error}"
    if statistic >= threshold.warn:
        return DriftVerdict.WARN, f"{statistic:.4g} >= warn level {threshold.warn}"
    return DriftVerdict.OK, f"{statistic:.4g} < warn level {threshold.warn}"


def _column_problem(column: str, kind: FeatureKind, frame: pd.DataFrame) -> str | None:
    if column not in frame.columns:
        return f"column {column!r} is missing from the current data"
    if kind is FeatureKind.NUMERICAL and not (
        pd.api.types.is_numeric_dtype(frame[column]) or frame[column].isna().all()
    ):
        return f"column {column!r} should be numerical but has dtype {frame[column].dtype}"
    return None


def _fit_column(series: pd.Series, kind: FeatureKind, bins: int) -> ColumnReference:
    problem = _column_problem(series.name, kind, series.to_frame())
    if problem is not None:
        raise DataError(f"reference data: {problem}")
    nulls = series.isna()
    n_rows = len(series)
    null_rate = float(nulls.mean()) if n_rows else 0.0
    values = series[~nulls]
    if kind is FeatureKind.CATEGORICAL:
        counts = category_labels(values).value_counts()
        return ColumnReference(
            kind,
            n_rows,
            null_rate,
            np.empty(0),
            np.empty(0),
            0.0,
            {str(k): int(v) for k, v in counts.items()},
        )
    numbers = np.sort(values.to_numpy(dtype=float))
    quantiles = np.quantile(numbers, np.linspace(0, 1, bins + 1)[1:-1]) if numbers.size else []
    edges = np.unique(np.asarray(quantiles, dtype=float))
    std = float(numbers.std()) if numbers.size else 0.0
    return ColumnReference(kind, n_rows, null_rate, numbers, edges, std)


def category_labels(values: pd.Series) -> pd.Series:
    """Non-null category values as text, with whole numbers written as integers.

    An integer-coded column becomes float as soon as a partition holds a null (1 -> 1.0);
    comparing text as-is would make every category look new.
    """
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype=float)
        if np.all(np.isfinite(numbers)) and np.all(numbers == np.round(numbers)):
            return pd.Series(numbers.astype(np.int64), index=values.index).astype(str)
    return values.astype(str)


def _current_column(series: pd.Series, kind: FeatureKind) -> _Current:
    nulls = series.isna()
    n_rows = len(series)
    null_rate = float(nulls.mean()) if n_rows else 0.0
    values = series[~nulls]
    array = (
        category_labels(values).to_numpy()
        if kind is FeatureKind.CATEGORICAL
        else (values.to_numpy(dtype=float))
    )
    return _Current(n_rows, null_rate, array)


def summarize(report: DriftReport) -> Mapping[str, object]:
    """The few facts a timeline or a status line needs about a report."""
    worst = report.ranked()[0] if report.columns else None
    return {
        "verdict": report.verdict.value,
        "drifted_columns": report.drifted_columns,
        "worst_column": worst.column if worst else None,
        "worst_method": worst.worst.method if worst else None,
        "worst_statistic": worst.worst.statistic if worst else None,
    }
