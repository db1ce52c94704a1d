"""Multivariate drift: can a classifier tell this partition's rows from the reference rows?

Univariate tests watch one column at a time, so they miss a change in how columns move
together (a correlation that flips sign leaves every marginal as it was). The domain classifier,
as in NannyML's DomainClassifierCalculator, trains a gradient-boosted classifier to separate
reference rows (label 0) from current rows (label 1) and reports its cross-validated AUROC:
about 0.5 means the two are indistinguishable, far from 0.5 means the joint distribution moved.

    detector = DomainClassifierDetector(columns, MultivariatePolicy(enabled=True)).fit(reference)
    result = detector.compare(current)
    result.verdict, result.statistic, result.top_features  # drift, 0.71, (('income', 0.18),)

`MultivariatePolicy.enabled` is for the caller to honour; the detector always computes.
"""

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.core.drift import DriftVerdict
from orchestrator.core.errors import ConfigError, DataError, NotFittedError
from orchestrator.core.profile import category_labels
from orchestrator.core.spec import FeatureKind, MultivariatePolicy

METHOD = "domain_classifier"
# HistGradientBoosting accepts at most 255 categories per column; 249 named + "other" leaves room.
_NAMED_CATEGORIES = 249
_TOP_FEATURES = 5
# Enough trees to find a real difference in seconds; early stopping ends sooner when there is none.
_MAX_ITER = 100


@dataclass(frozen=True)
class MultivariateResult:
    """One domain-classifier judgement, with the bands actually applied and why it judged so."""

    method: str
    statistic: float | None
    warn_band: tuple[float, float]
    error_band: tuple[float, float]
    verdict: DriftVerdict
    reason: str
    n_reference: int
    n_current: int
    top_features: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "statistic": self.statistic,
            "warn_band": list(self.warn_band),
            "error_band": list(self.error_band),
            "verdict": self.verdict.value,
            "reason": self.reason,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "top_features": [{"column": c, "importance": i} for c, i in self.top_features],
        }


class DomainClassifierDetector:
    """Learns a bounded sample of the reference, then asks whether current rows stand apart."""

    def __init__(
        self, columns: Mapping[str, FeatureKind], policy: MultivariatePolicy | None = None
    ):
        self.columns = columns
        self.policy = policy

    def fit(self, reference: pd.DataFrame) -> "DomainClassifierDetector":
        self.policy_ = self.policy if self.policy is not None else MultivariatePolicy()
        self.kinds_ = _feature_kinds(self.columns)
        problem = _frame_problem(self.kinds_, reference)
        if problem is not None:
            raise DataError(f"reference data: {problem}")
        self.n_reference_ = len(reference)
        self.reference_sample_ = _sample(reference, self.kinds_, self.policy_, side=0)
        return self

    def compare(self, current: pd.DataFrame) -> MultivariateResult:
        if not hasattr(self, "reference_sample_"):
            raise NotFittedError("DomainClassifierDetector.compare called before fit(reference)")
        problem = _frame_problem(self.kinds_, current)
        if problem is not None:
            return self._unjudged(DriftVerdict.INVALID, f"current data: {problem}", len(current))
        shortfall = _row_shortfall(self.n_reference_, len(current), self.policy_.min_rows)
        if shortfall is not None:
            return self._unjudged(DriftVerdict.INSUFFICIENT_DATA, shortfall, len(current))
        current_sample = _sample(current, self.kinds_, self.policy_, side=1)
        features, labels = _design_matrix(self.reference_sample_, current_sample, self.kinds_)
        categorical = np.array([k is FeatureKind.CATEGORICAL for k in self.kinds_.values()])
        auroc, importances = _cross_validated_auroc(features, labels, categorical, self.policy_)
        verdict, reason = _judge(auroc, self.policy_)
        return MultivariateResult(
            METHOD,
            auroc,
            self.policy_.warn_band,
            self.policy_.error_band,
            verdict,
            reason,
            self.n_reference_,
            len(current),
            _top_features(list(self.kinds_), importances),
        )

    def _unjudged(self, verdict: DriftVerdict, reason: str, n_current: int) -> MultivariateResult:
        policy = self.policy_
        return MultivariateResult(
            METHOD,
            None,
            policy.warn_band,
            policy.error_band,
            verdict,
            reason,
            self.n_reference_,
            n_current,
            (),
        )


def _feature_kinds(columns: Mapping[str, FeatureKind]) -> dict[str, FeatureKind]:
    if not columns:
        raise ConfigError("DomainClassifierDetector needs at least one column")
    try:
        return {column: FeatureKind(kind) for column, kind in columns.items()}
    except ValueError as e:
        raise ConfigError(f"columns: {e}; valid kinds: {[k.value for k in FeatureKind]}") from e


def _frame_problem(kinds: Mapping[str, FeatureKind], frame: pd.DataFrame) -> str | None:
    missing = [c for c in kinds if c not in frame.columns]
    if missing:
        return f"columns {missing} are missing"
    for column, kind in kinds.items():
        series = frame[column]
        numeric = pd.api.types.is_numeric_dtype(series) or series.isna().all()
        if kind is FeatureKind.NUMERICAL and not numeric:
            return f"column {column!r} should be numerical but has dtype {series.dtype}"
    return None


def _row_shortfall(n_reference: int, n_current: int, min_rows: int) -> str | None:
    sides = ((n_current, "current"), (n_reference, "reference"))
    short = [f"{n} {side}" for n, side in sides if n < min_rows]
    if not short:
        return None
    return f"{' and '.join(short)} rows; at least {min_rows} needed"


def _sample(
    frame: pd.DataFrame, kinds: Mapping[str, FeatureKind], policy: MultivariatePolicy, side: int
) -> dict[str, np.ndarray]:
    """At most `sample_rows` rows, numbers as float (NaN = missing), categories as text labels."""
    # A separate seeded stream per side, so the two samples are drawn independently.
    rng = np.random.default_rng([policy.seed, side])
    n_rows = len(frame)
    rows = rng.choice(n_rows, size=min(n_rows, policy.sample_rows), replace=False)
    return {column: _values(frame[column].iloc[rows], kind) for column, kind in kinds.items()}


def _values(series: pd.Series, kind: FeatureKind) -> np.ndarray:
    if kind is FeatureKind.NUMERICAL:
        numbers = series.to_numpy(dtype=float, na_value=np.nan, copy=True)
        # HistGradientBoosting rejects infinities; it learns from missing values instead.
        numbers[~np.isfinite(numbers)] = np.nan
        return numbers
    present = series.notna().to_numpy()
    labels = np.full(len(series), None, dtype=object)
    labels[present] = category_labels(series[present]).to_numpy(dtype=object)
    return labels


def _design_matrix(
    reference: Mapping[str, np.ndarray],
    current: Mapping[str, np.ndarray],
    kinds: Mapping[str, FeatureKind],
) -> tuple[np.ndarray, np.ndarray]:
    """Reference rows (label 0) stacked over current rows (label 1), one float column each."""
    columns = []
    for column, kind in kinds.items():
        stacked = np.concatenate([reference[column], current[column]])
        columns.append(stacked if kind is FeatureKind.NUMERICAL else _category_codes(stacked))
    n_rows = [len(next(iter(sample.values()))) for sample in (reference, current)]
    return np.column_stack(columns), np.repeat([0, 1], n_rows)


def _category_codes(labels: np.ndarray) -> np.ndarray:
    """Integer codes for the most frequent labels of both samples, one "other" code, NaN for null.

    The vocabulary is chosen on both samples together, by frequency alone, never by side. A
    vocabulary chosen on the reference would be a leak: reference rows could never hold an
    unseen or a below-the-cut label while current rows could, so a high-cardinality column
    would look drifted when nothing changed. Counting both sides treats them alike.
    """
    series = pd.Series(labels, dtype=object)
    counts = series.value_counts()
    # Sort by count then label, so ties resolve the same way in every run.
    ranked = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
    vocabulary = {label: code for code, (label, _) in enumerate(ranked[:_NAMED_CATEGORIES])}
    codes = series.map(vocabulary).to_numpy(dtype=float, copy=True)
    codes[np.isnan(codes) & series.notna().to_numpy()] = len(vocabulary)
    return codes


def _cross_validated_auroc(
    features: np.ndarray, labels: np.ndarray, categorical: np.ndarray, policy: MultivariatePolicy
) -> tuple[float, np.ndarray]:
    """Out-of-fold AUROC, and how much of it each column carries (held-out permutation)."""
    # Imported here so that importing the core (as Dagster does to load definitions) stays fast.
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits  # installed with scikit-learn, which uses it

    # Shuffled folds: the rows arrive reference-first, and an ordered split would hold out one side.
    folds = StratifiedKFold(n_splits=policy.folds, shuffle=True, random_state=policy.seed)
    rng = np.random.default_rng([policy.seed, 2])
    scores = np.empty(len(labels))
    permuted = np.empty((features.shape[1], len(labels)))
    # One OpenMP thread: on a sample this small extra threads barely help, and when other steps
    # share the cores (Dagster runs steps in parallel processes) the threads' barriers stall a
    # comparison from under 1 s to 10-30 s. One thread keeps the runtime bounded.
    with threadpool_limits(limits=1, user_api="openmp"):
        for train, test in folds.split(features, labels):
            model = _classifier(categorical, policy.seed).fit(features[train], labels[train])
            scores[test] = model.predict_proba(features[test])[:, 1]
            permuted[:, test] = _permuted_scores(model, features[test], rng)
    auroc = float(roc_auc_score(labels, scores))
    importances = np.array([auroc - roc_auc_score(labels, column) for column in permuted])
    return auroc, importances


def _classifier(categorical: np.ndarray, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=_MAX_ITER,
        early_stopping=True,
        categorical_features=categorical if categorical.any() else None,
        random_state=seed,
    )


def _permuted_scores(model, held_out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scores of the held-out rows with one column shuffled at a time, one row per column."""
    n_rows, n_columns = held_out.shape
    # One predict call for every column: a copy per column, stacked, is faster than a loop.
    shuffled = np.tile(held_out, (n_columns, 1))
    for j in range(n_columns):
        shuffled[j * n_rows : (j + 1) * n_rows, j] = rng.permutation(held_out[:, j])
    return model.predict_proba(shuffled)[:, 1].reshape(n_columns, n_rows)


def _top_features(names: list[str], importances: np.ndarray) -> tuple[tuple[str, float], ...]:
    ranked = sorted(zip(names, importances, strict=True), key=lambda item: -item[1])
    return tuple((name, float(value)) for name, value in ranked[:_TOP_FEATURES] if value > 0)


def _band_text(band: tuple[float, float]) -> str:
    return f"[{band[0]:.2f}, {band[1]:.2f}]"


def _judge(auroc: float, policy: MultivariatePolicy) -> tuple[DriftVerdict, str]:
    separable = "a classifier tells current rows from reference rows"
    error_low, error_high = policy.error_band
    if not error_low <= auroc <= error_high:
        band = _band_text(policy.error_band)
        return DriftVerdict.DRIFT, f"AUROC {auroc:.3f} outside error band {band}: {separable}"
    warn_low, warn_high = policy.warn_band
    if not warn_low <= auroc <= warn_high:
        band = _band_text(policy.warn_band)
        return DriftVerdict.WARN, f"AUROC {auroc:.3f} outside warn band {band}: {separable}"
    return DriftVerdict.OK, f"AUROC {auroc:.3f} within warn band {_band_text(policy.warn_band)}"
