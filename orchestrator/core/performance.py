"""Model quality: realized once labels arrive, estimated (CBPE) before they do, and judged
against bounds learned from the champion's reference.

Configuration (PerformancePolicy), calculation (the metric registry, `performance_table`,
`PerformanceReference`) and judgement (`evaluate_*`, returning GateResult) stay apart, as in
Evidently and NannyML. A metric that is undefined (ROC AUC with one class, no rows) is None,
never 0 or NaN, and a gate that cannot judge fails closed.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import ValidationError
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    roc_auc_score,
    root_mean_squared_error,
)

from orchestrator.core.errors import ConfigError, DataError, NotFittedError, UnknownMethodError
from orchestrator.core.gates import GateResult, GateVerdict
from orchestrator.core.spec import PerformancePolicy
from orchestrator.core.telemetry import group_label

ALL = "all"  # the segment of every row
SEGMENT_PREFIX = "segment."
PROBABILITY_CLIP = 1e-15  # log loss: a probability of exactly 0 or 1 would be infinitely wrong
CALIBRATION_BINS = 10
FORMAT = "driftgate.performance_reference/1"

# --- the metric registry ---------------------------------------------------------------------

Compute = Callable[[np.ndarray, np.ndarray | None, np.ndarray | None], float | None]


@dataclass(frozen=True)
class PerformanceMetric:
    """One quality metric: its task, which way is better, and whether CBPE estimates it."""

    name: str
    task: Literal["binary_classification", "regression"]
    higher_is_better: bool
    compute: Compute  # (y_true, score, predicted) -> value, or None when undefined
    estimable: bool = False


def _defined(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _roc_auc(y: np.ndarray, score: np.ndarray | None, predicted: np.ndarray | None):
    y, score = _finite_pairs(y, score)
    if len(np.unique(y)) < 2:
        return None
    return _defined(roc_auc_score(y, score))


def _accuracy(y: np.ndarray, score: np.ndarray | None, predicted: np.ndarray | None):
    y, predicted = _finite_pairs(y, predicted)
    return _defined(accuracy_score(y, predicted)) if len(y) else None


def _f1(y: np.ndarray, score: np.ndarray | None, predicted: np.ndarray | None):
    y, predicted = _finite_pairs(y, predicted)
    if not len(y):
        return None
    return _defined(f1_score(y, predicted, pos_label=1, zero_division=np.nan))


def _log_loss(y: np.ndarray, score: np.ndarray | None, predicted: np.ndarray | None):
    y, score = _finite_pairs(y, score)
    if not len(y):
        return None
    clipped = np.clip(score, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return _defined(log_loss(y, clipped, labels=[0, 1]))


def expected_calibration_error(y: np.ndarray, score: np.ndarray) -> float | None:
    """ECE: over 10 equal-width score bins, |observed positive rate - mean score| weighted by
    the bin's share of rows (a score of exactly 1 falls in the last bin)."""
    if not len(y):
        return None
    score = np.clip(score, 0.0, 1.0)
    bins = np.minimum((score * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    positives = np.bincount(bins, weights=y, minlength=CALIBRATION_BINS)
    scores = np.bincount(bins, weights=score, minlength=CALIBRATION_BINS)
    return float(np.abs(positives - scores).sum() / len(y))


def _calibration_error(y: np.ndarray, score: np.ndarray | None, predicted: np.ndarray | None):
    return expected_calibration_error(*_finite_pairs(y, score))


def _mae(y: np.ndarray, score: np.ndarray | None, predicted: np.ndarray | None):
    y, predicted = _finite_pairs(y, predicted)
    return _defined(mean_absolute_error(y, predicted)) if len(y) else None


def _rmse(y: np.ndarray, score: np.ndarray | None, predicted: np.ndarray | None):
    y, predicted = _finite_pairs(y, predicted)
    return _defined(root_mean_squared_error(y, predicted)) if len(y) else None


def _finite_pairs(y: np.ndarray, x: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The rows where both the label and the input the metric needs are known."""
    if x is None:
        return y[:0], y[:0]
    keep = np.isfinite(y) & np.isfinite(x)
    return y[keep], x[keep]


_BINARY, _REGRESSION = "binary_classification", "regression"
METRICS: dict[str, PerformanceMetric] = {
    m.name: m
    for m in (
        PerformanceMetric("roc_auc", _BINARY, True, _roc_auc, estimable=True),
        PerformanceMetric("accuracy", _BINARY, True, _accuracy, estimable=True),
        PerformanceMetric("f1", _BINARY, True, _f1, estimable=True),
        PerformanceMetric("log_loss", _BINARY, False, _log_loss),
        PerformanceMetric("calibration_error", _BINARY, False, _calibration_error),
        PerformanceMetric("mae", _REGRESSION, False, _mae),
        PerformanceMetric("rmse", _REGRESSION, False, _rmse),
    )
}


def get_metric(name: str, task: str | None = None) -> PerformanceMetric:
    """The metric named `name`; UnknownMethodError lists the valid names (of `task`, if given)."""
    metric = METRICS.get(name)
    if metric is None:
        raise UnknownMethodError(
            f"unknown performance metric {name!r}; valid metrics: {sorted(METRICS)}"
        )
    if task is not None and metric.task != task:
        valid = sorted(n for n, m in METRICS.items() if m.task == task)
        raise UnknownMethodError(f"metric {name!r} does not apply to {task}; valid: {valid}")
    return metric


# --- realized metrics ------------------------------------------------------------------------


def _array(values) -> np.ndarray | None:
    if values is None:
        return None
    return pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="coerce").to_numpy(float)


def predicted_class(
    score: np.ndarray | None, prediction: np.ndarray | None, threshold: float
) -> np.ndarray | None:
    """The logged prediction (1 = positive) where there is one, else score >= threshold."""
    from_score = None if score is None else np.where(np.isnan(score), np.nan, score >= threshold)
    if prediction is None:
        return from_score
    logged = np.where(np.isnan(prediction), np.nan, prediction == 1)
    return logged if from_score is None else np.where(np.isnan(logged), from_score, logged)


def _inputs(y_true, score, prediction, policy: PerformancePolicy):
    y, score, prediction = _array(y_true), _array(score), _array(prediction)
    for name, values in (("score", score), ("prediction", prediction)):
        if values is not None and len(values) != len(y):
            raise DataError(f"{name} has {len(values)} rows, the labels {len(y)}")
    if policy.task == _BINARY:
        prediction = predicted_class(score, prediction, policy.decision_threshold)
    return y, score, prediction


def realized_metrics(
    y_true, score, prediction, policy: PerformancePolicy
) -> dict[str, float | None]:
    """Every judged metric of `policy` on labelled rows; None where a metric is undefined.

    Classifiers: `score` is the positive-class probability, `prediction` the logged class
    (missing rows, or None, fall back to score >= decision_threshold). Regression: `prediction`
    is the predicted value and `score` is not used.
    """
    y, score, predicted = _inputs(y_true, score, prediction, policy)
    return {
        name: get_metric(name, policy.task).compute(y, score, predicted)
        for name in policy.judged_metrics
    }


# --- learned thresholds and CBPE -------------------------------------------------------------


@dataclass(frozen=True)
class MetricBound:
    """Where a metric warns and fails, learned from reference chunks, on its worse side only.

    `std` is the chunk-to-chunk sample standard deviation (ddof=1); the bounds use
    max(std, std_floor) so that a reference whose chunks all scored the same does not alarm
    on a single row (see PerformanceReference).
    """

    metric: str
    higher_is_better: bool
    mean: float
    std: float
    std_floor: float
    warn: float
    error: float
    chunks: int  # chunks the metric was defined on

    def worse_than(self, value: float, bound: float) -> bool:
        return value < bound if self.higher_is_better else value > bound

    def verdict(self, value: float) -> GateVerdict:
        if self.worse_than(value, self.error):
            return GateVerdict.BLOCK
        return GateVerdict.WARN if self.worse_than(value, self.warn) else GateVerdict.PASS

    def shortfall(self, value: float) -> float:
        """How many (floored) stds `value` is on the worse side of the mean (negative: better)."""
        gap = self.mean - value if self.higher_is_better else value - self.mean
        return gap / max(self.std, self.std_floor)

    def widened(self, factor: float) -> "MetricBound":
        """The bound for a window `factor` times noisier than a reference chunk: every
        distance from the mean (and the std) grows by the factor."""
        if factor <= 1.0:
            return self
        return dataclasses.replace(
            self,
            std=self.std * factor,
            std_floor=self.std_floor * factor,
            warn=self.mean + (self.warn - self.mean) * factor,
            error=self.mean + (self.error - self.mean) * factor,
        )

    def describe(self, k: float) -> str:
        sign = "-" if self.higher_is_better else "+"
        floored = f" floored at {self.std_floor:.3g}" if self.std < self.std_floor else ""
        return (
            f"mean {self.mean:.4g} {sign} {k:g}·std {self.std:.3g}{floored} "
            f"over {self.chunks} chunks"
        )


def _bound(
    metric: PerformanceMetric, values: list[float | None], chunk_rows: int, policy
) -> MetricBound | None:
    finite = np.array([v for v in values if v is not None], dtype=float)
    if len(finite) < 2:
        return None
    mean, std = float(finite.mean()), float(finite.std(ddof=1))
    # A std of 0 (every chunk scored the same) would put the bound on the mean itself, and one
    # misclassified row would then alarm. The floor is the resolution of a chunk-sized mean:
    # one row of a chunk moves an accuracy by 1/chunk_rows, an error metric by ~|mean|/rows.
    floor = max(1.0, abs(mean)) / max(chunk_rows, 1)
    spread = max(std, floor)
    sign = 1.0 if metric.higher_is_better else -1.0
    return MetricBound(
        metric=metric.name,
        higher_is_better=metric.higher_is_better,
        mean=mean,
        std=std,
        std_floor=floor,
        warn=mean - sign * policy.warn_k * spread,
        error=mean - sign * policy.error_k * spread,
        chunks=len(finite),
    )


class PerformanceReference:
    """The champion's quality on its reference (a holdout it was not trained on): learned
    bounds per metric and, for binary classifiers, the CBPE calibrator.

    The reference is cut, in the given order, into `policy.reference_chunks` contiguous chunks;
    each judged metric is scored per chunk, and warns beyond mean -/+ warn_k·std, fails beyond
    mean -/+ error_k·std on the side where the metric gets worse (an improvement never alarms).
    A metric defined on fewer than two chunks gets no bound and is reported, not judged. The
    bounds fit windows of about `chunk_rows_` rows.
    """

    def __init__(self, policy: PerformancePolicy):
        self.policy = policy

    def fit(self, y_true, score=None, prediction=None) -> "PerformanceReference":
        policy = self.policy
        y, score_, predicted = _inputs(y_true, score, prediction, policy)
        if policy.task == _BINARY and not np.isin(y[np.isfinite(y)], (0.0, 1.0)).all():
            raise DataError("reference labels of a binary classifier must be 0 or 1")
        known = np.isfinite(y)
        rows = int(known.sum())
        if rows < 2 * policy.reference_chunks:
            raise DataError(
                f"the reference has {rows} labelled rows; {policy.reference_chunks} chunks "
                f"need at least {2 * policy.reference_chunks}"
            )
        chunks = np.array_split(np.flatnonzero(known), policy.reference_chunks)
        metrics = [get_metric(n, policy.task) for n in policy.judged_metrics]
        per_chunk = {
            m.name: [m.compute(*_take(i, y, score_, predicted)) for i in chunks] for m in metrics
        }
        self.rows_ = rows
        self.chunk_rows_ = rows // policy.reference_chunks
        self.chunk_values_ = per_chunk
        self.reference_ = {m.name: m.compute(y, score_, predicted) for m in metrics}
        self.bounds_ = {}
        for m in metrics:
            bound = _bound(m, per_chunk[m.name], self.chunk_rows_, policy)
            if bound is not None:
                self.bounds_[m.name] = bound
        self.mean_ = {n: b.mean for n, b in self.bounds_.items()}
        self.std_ = {n: b.std for n, b in self.bounds_.items()}
        self.calibrator_ = self._fit_calibrator(y, score_) if policy.estimates else None
        return self

    @staticmethod
    def _fit_calibrator(y: np.ndarray, score: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Isotonic regression of label on score, kept as its breakpoints: predicting is then
        np.interp (IsotonicRegression.predict interpolates linearly between them and clips
        outside), and the fitted reference serialises as two lists."""
        y, score = _finite_pairs(y, score)
        if len(np.unique(y)) < 2:
            raise DataError("CBPE needs reference scores with both classes among the labels")
        model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(score, y)
        return np.asarray(model.X_thresholds_, float), np.asarray(model.y_thresholds_, float)

    def _require_fit(self) -> None:
        if not hasattr(self, "bounds_"):
            raise NotFittedError("PerformanceReference used before fit(y_true, score)")

    @property
    def fitted(self) -> bool:
        return hasattr(self, "bounds_")

    # -- CBPE --

    def calibrated(self, score) -> np.ndarray:
        """The reference-calibrated probability of the positive class for each score."""
        self._require_fit()
        if self.calibrator_ is None:
            raise ConfigError(
                "CBPE estimation needs a binary classifier with performance.estimation on"
            )
        xs, ys = self.calibrator_
        return np.interp(score, xs, ys)

    def _calibrated_rows(self, score, prediction):
        score, prediction = _array(score), _array(prediction)
        if score is None:
            raise DataError("CBPE needs scores")
        if prediction is not None and len(prediction) != len(score):
            raise DataError(f"prediction has {len(prediction)} rows, the scores {len(score)}")
        predicted = predicted_class(score, prediction, self.policy.decision_threshold)
        keep = np.isfinite(score) & np.isfinite(predicted)
        return score[keep], self.calibrated(score[keep]), predicted[keep] == 1

    def expected_confusion(self, score, prediction=None) -> dict[str, float]:
        """The confusion matrix expected from calibrated probabilities p: a predicted positive
        is a true positive with probability p, a predicted negative a false negative with p."""
        _, p, positive = self._calibrated_rows(score, prediction)
        return _confusion(p, positive)

    def estimate(self, score, prediction=None) -> dict[str, float | None]:
        """CBPE (confidence-based performance estimation, as NannyML defines it): quality
        expected from calibrated scores alone, before labels arrive. NannyML is unmaintained,
        so this is written here from its definition; it assumes the relation between score and
        label holds as in the reference (covariate shift is fine, concept drift is not).

        Estimates the judged metrics CBPE can estimate: roc_auc, accuracy, f1 (not log_loss or
        calibration_error, which CBPE would report as perfect by construction).
        """
        raw, p, positive = self._calibrated_rows(score, prediction)
        confusion = _confusion(p, positive)
        tp, fp, fn, tn = (confusion[k] for k in ("tp", "fp", "fn", "tn"))
        n, f1_denominator = tp + fp + fn + tn, 2 * tp + fp + fn
        values = {
            "roc_auc": _expected_roc_auc(raw, p),
            "accuracy": (tp + tn) / n if n > 0 else None,
            "f1": 2 * tp / f1_denominator if f1_denominator > 0 else None,
        }
        return {m: values[m] for m in self.estimated_metrics}

    @property
    def estimated_metrics(self) -> list[str]:
        return [m for m in self.policy.judged_metrics if get_metric(m).estimable]

    # -- persistence --

    def to_dict(self) -> dict:
        """The fitted reference as JSON-safe values (floats, lists, None), for an asset."""
        self._require_fit()
        return {
            "format": FORMAT,
            "policy": self.policy.model_dump(mode="json"),
            "rows": self.rows_,
            "chunk_rows": self.chunk_rows_,
            "reference": dict(self.reference_),
            "chunk_values": {m: list(v) for m, v in self.chunk_values_.items()},
            "bounds": {
                m: {
                    "higher_is_better": b.higher_is_better,
                    "mean": b.mean,
                    "std": b.std,
                    "std_floor": b.std_floor,
                    "warn": b.warn,
                    "error": b.error,
                    "chunks": b.chunks,
                }
                for m, b in self.bounds_.items()
            },
            "calibrator": None
            if self.calibrator_ is None
            else {"x": self.calibrator_[0].tolist(), "y": self.calibrator_[1].tolist()},
        }

    @classmethod
    def from_dict(cls, payload: Mapping) -> "PerformanceReference":
        """The reference `to_dict` wrote; DataError names what is missing or wrong."""
        if not isinstance(payload, Mapping):
            raise DataError(f"a performance reference is a mapping, got {type(payload).__name__}")
        if payload.get("format") != FORMAT:
            raise DataError(f"not a performance reference: format {payload.get('format')!r}")
        missing = [
            k
            for k in ("policy", "rows", "chunk_rows", "reference", "chunk_values", "bounds")
            if k not in payload
        ] + ([] if "calibrator" in payload else ["calibrator"])
        if missing:
            raise DataError(f"performance reference is missing {missing}")
        try:
            reference = cls(PerformancePolicy.model_validate(payload["policy"]))
        except ValidationError as e:
            raise DataError(f"performance reference has an invalid policy: {e}") from e
        try:
            return reference._restore(payload)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"performance reference is corrupt: {e!r}") from e

    def _restore(self, payload: Mapping) -> "PerformanceReference":
        self.rows_, self.chunk_rows_ = int(payload["rows"]), int(payload["chunk_rows"])
        self.reference_ = {m: _optional(v) for m, v in payload["reference"].items()}
        self.chunk_values_ = {
            m: [_optional(v) for v in values] for m, values in payload["chunk_values"].items()
        }
        self.bounds_ = {}
        for name, b in payload["bounds"].items():
            fields = ("mean", "std", "std_floor", "warn", "error")
            numbers = {f: float(b[f]) for f in fields}
            if not all(math.isfinite(v) for v in numbers.values()):
                raise ValueError(f"bound of {name} is not finite")
            self.bounds_[name] = MetricBound(
                metric=get_metric(name, self.policy.task).name,
                higher_is_better=bool(b["higher_is_better"]),
                chunks=int(b["chunks"]),
                **numbers,
            )
        self.mean_ = {n: b.mean for n, b in self.bounds_.items()}
        self.std_ = {n: b.std for n, b in self.bounds_.items()}
        self.calibrator_ = _calibrator(payload["calibrator"], self.policy.estimates)
        return self


def _optional(value) -> float | None:
    return None if value is None else float(value)


def _calibrator(stored, needed: bool) -> tuple[np.ndarray, np.ndarray] | None:
    if stored is None:
        if needed:
            raise KeyError("calibrator (CBPE is on for this policy)")
        return None
    xs, ys = np.asarray(stored["x"], dtype=float), np.asarray(stored["y"], dtype=float)
    if xs.ndim != 1 or xs.shape != ys.shape or not len(xs):
        raise ValueError("calibrator x and y must be equally long, non-empty lists")
    if np.any(np.diff(xs) < 0) or np.any(np.diff(ys) < 0) or ys.min() < 0 or ys.max() > 1:
        raise ValueError("calibrator must be non-decreasing probabilities over sorted scores")
    return xs, ys


def _take(index: np.ndarray, *arrays: np.ndarray | None) -> list[np.ndarray | None]:
    return [None if a is None else a[index] for a in arrays]


def _confusion(p: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    return {
        "tp": float(p[positive].sum()),
        "fp": float((1 - p[positive]).sum()),
        "fn": float(p[~positive].sum()),
        "tn": float((1 - p[~positive]).sum()),
    }


def _expected_roc_auc(score: np.ndarray, p: np.ndarray) -> float | None:
    """Area under the expected ROC curve: rows ranked by raw score (descending, ties grouped
    into one step, as roc_auc_score does), each contributing p to the expected true positives
    and 1 - p to the expected false positives; trapezoid rule."""
    positives, negatives = p.sum(), (1 - p).sum()
    if not len(p) or positives <= 0 or negatives <= 0:
        return None
    order = np.argsort(-score, kind="stable")
    ranked, p = score[order], p[order]
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]
    tpr = np.r_[0.0, np.cumsum(p)[last_of_tie] / positives]
    fpr = np.r_[0.0, np.cumsum(1 - p)[last_of_tie] / negatives]
    return float(np.clip(np.trapezoid(tpr, fpr), 0.0, 1.0))


# --- tables per model version and segment ----------------------------------------------------


def _groups(frame: pd.DataFrame, segments: Sequence[str]):
    """(model_version, segment, rows) for "all" and every "<segment>=<value>" of each version."""
    if "model_version" not in frame.columns:
        raise DataError(f"the frame has no model_version column; columns: {list(frame.columns)}")
    columns = [f"{SEGMENT_PREFIX}{s}" for s in segments]
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DataError(f"the frame has no segment column {absent}; columns: {list(frame.columns)}")
    versions = frame["model_version"].astype(str)
    for version in sorted(versions.unique()):
        rows = frame[(versions == version).to_numpy()]
        yield version, ALL, rows
        for segment, column in zip(segments, columns, strict=True):
            values = rows[column].astype("string").fillna("(missing)")
            for value in sorted(values.unique()):
                yield version, f"{segment}={value}", rows[(values == value).to_numpy()]


def _column(frame: pd.DataFrame, name: str) -> np.ndarray | None:
    return frame[name].to_numpy() if name in frame.columns else None


def performance_table(
    frame: pd.DataFrame,
    segments: list[str],
    policy: PerformancePolicy,
    *,
    kind: Literal["realized", "estimated"],
    estimator: PerformanceReference | None = None,
) -> pd.DataFrame:
    """One row per model version and segment ("all", then "<segment>=<value>") with its rows,
    its kind and one column per metric.

    realized: `frame` holds labelled predictions (`label`, `score`, `prediction`); rows
    without a label are left out. estimated: `frame` holds predictions (no labels needed) and
    the fitted `estimator` gives the CBPE estimate of the metrics it can estimate.
    """
    if kind == "realized":
        if "label" not in frame.columns:
            raise DataError(f"realized performance needs a label column; got {list(frame.columns)}")
        frame = frame[frame["label"].notna().to_numpy()]
        metrics = policy.judged_metrics

        def measure(rows: pd.DataFrame) -> dict:
            score, prediction = _column(rows, "score"), _column(rows, "prediction")
            return realized_metrics(rows["label"].to_numpy(), score, prediction, policy)

    elif kind == "estimated":
        if estimator is None or not estimator.fitted:
            raise NotFittedError("estimated performance needs a fitted PerformanceReference")
        if "score" not in frame.columns:
            raise DataError(f"CBPE needs a score column; got {list(frame.columns)}")
        metrics = estimator.estimated_metrics

        def measure(rows: pd.DataFrame) -> dict:
            return estimator.estimate(rows["score"].to_numpy(), _column(rows, "prediction"))

    else:
        raise DataError(f"kind must be 'realized' or 'estimated', got {kind!r}")
    records = [
        {"model_version": v, "segment": s, "rows": len(rows), "kind": kind, **measure(rows)}
        for v, s, rows in _groups(frame, segments)
    ]
    columns = ["model_version", "segment", "rows", "kind", *metrics]
    table = pd.DataFrame.from_records(records, columns=columns)
    # object columns keep None (undefined) distinct from a number; never NaN
    for metric in metrics:
        table[metric] = pd.Series(
            [_optional(v) if v is not None and v == v else None for v in table[metric]],
            index=table.index,
            dtype=object,
        )
    return table


# --- judgement -------------------------------------------------------------------------------

NOT_JUDGED = "not judged"
# Expected calibration error of a perfectly calibrated model grows as the rows shrink (bins
# fill with fewer rows): judged only on groups at least a reference chunk large.
SIZE_BIASED = frozenset({"calibration_error"})


def performance_breaches(
    table: pd.DataFrame, reference: PerformanceReference | None, policy: PerformancePolicy
) -> pd.DataFrame:
    """Every group x metric of `table` with its value, learned bounds and verdict (pass, warn,
    block, or "not judged" with the reason in `note`), for a UI table."""
    columns = ["model_version", "segment", "rows", "metric", "value", "warn", "error"]
    records = []
    bounds = reference.bounds_ if reference is not None and reference.fitted else {}
    metrics = [m for m in policy.judged_metrics if m in table.columns]
    chunk_rows = reference.chunk_rows_ if bounds else 0
    for row in table.to_dict("records"):
        whole = row["segment"] == ALL
        needed = policy.min_labelled_rows if whole else policy.min_segment_rows
        # A group smaller than a reference chunk is noisier by sqrt(chunk rows / its rows):
        # its bounds widen by that factor (standard-error scaling).
        factor = math.sqrt(chunk_rows / row["rows"]) if row["rows"] else 1.0
        for metric in metrics:
            value, bound = _optional(row[metric]), bounds.get(metric)
            verdict, note = NOT_JUDGED, ""
            if bound is None:
                note = "no learned bound" if bounds else "no fitted reference"
            elif row["rows"] < needed:
                note = f"{row['rows']} rows; {needed} needed"
            elif value is None:
                note = "undefined"
            elif metric in SIZE_BIASED and factor > 1.0:
                note = f"{metric} reads higher on fewer rows than a reference chunk ({chunk_rows})"
            else:
                bound = bound.widened(factor)
                verdict = bound.verdict(value).value
                if not whole:
                    # With every segment x metric tested daily, warn-level bounds would cry
                    # wolf: a segment warns only past its error bound, and never fails (the
                    # whole version does).
                    past_error = verdict == GateVerdict.BLOCK.value
                    verdict = GateVerdict.WARN.value if past_error else GateVerdict.PASS.value
                    note = "segment past its error bound: warns" if past_error else ""
            records.append(
                {
                    **{c: row[c] for c in ("model_version", "segment", "rows")},
                    "metric": metric,
                    "value": value,
                    "warn": None if bound is None else bound.warn,
                    "error": None if bound is None else bound.error,
                    "verdict": verdict,
                    "note": note,
                    "shortfall": None if bound is None or value is None else bound.shortfall(value),
                }
            )
    return pd.DataFrame.from_records(
        records, columns=[*columns, "verdict", "note", "shortfall"]
    ).astype({"value": object, "warn": object, "error": object, "shortfall": object})


_SEVERITY = {GateVerdict.PASS.value: 0, GateVerdict.WARN.value: 1, GateVerdict.BLOCK.value: 2}


def evaluate_performance(
    table: pd.DataFrame,
    reference: PerformanceReference | None,
    policy: PerformancePolicy,
    *,
    gate: str,
) -> GateResult:
    """BLOCK when a metric of any version or segment with enough rows is past its error bound,
    WARN past its warn bound; fail closed (BLOCK) without a fitted reference, without enough
    rows in any version's "all" row, or when a judged metric is undefined on an "all" row."""
    rows = int(table.loc[table["segment"] == ALL, "rows"].max()) if len(table) else 0
    unjudged = {"performance_breach": False, "rows": rows}
    what = "labelled rows" if _kind(table) == "realized" else "rows"
    if reference is None or not reference.fitted:
        reason = "no fitted performance reference to learn the bounds from"
        return GateResult(gate, GateVerdict.BLOCK, reason, unjudged)
    if rows < policy.min_labelled_rows:
        reason = (
            f"{rows} {what} in the best-covered model version; at least "
            f"{policy.min_labelled_rows} are needed to judge performance"
        )
        threshold = {"min_labelled_rows": policy.min_labelled_rows}
        return GateResult(gate, GateVerdict.BLOCK, reason, unjudged, threshold)
    breaches = performance_breaches(table, reference, policy)
    undefined = breaches[
        (breaches["segment"] == ALL)
        & (breaches["note"] == "undefined")
        & (breaches["rows"] >= policy.min_labelled_rows)
    ]
    if len(undefined):
        first = undefined.iloc[0]
        reason = (
            f"{first['metric']} is undefined on {group_label(first['model_version'], ALL)} "
            f"({first['rows']} {what}, e.g. a single class): cannot judge"
        )
        return GateResult(gate, GateVerdict.BLOCK, reason, unjudged)
    judged = breaches[breaches["verdict"] != NOT_JUDGED]
    if judged.empty:
        reason = f"no metric of {policy.judged_metrics} has a learned bound to judge"
        return GateResult(gate, GateVerdict.BLOCK, reason, unjudged)
    worst = (
        judged.assign(
            _severity=judged["verdict"].map(_SEVERITY),
            _shortfall=judged["shortfall"].astype(float),
        )
        .sort_values(["_severity", "_shortfall"], ascending=False, kind="stable")
        .iloc[0]
    )
    bound, verdict = reference.bounds_[worst["metric"]], GateVerdict(worst["verdict"])
    group, value = group_label(worst["model_version"], worst["segment"]), float(worst["value"])
    blocks = verdict is GateVerdict.BLOCK
    warn, error = float(worst["warn"]), float(worst["error"])  # widened for small groups
    applied, k = (error, policy.error_k) if blocks else (warn, policy.warn_k)
    metrics = {
        "worst_metric": worst["metric"],
        "worst_group": group,
        "worst_value": value,
        "bound": applied,
        "performance_breach": blocks,
        "rows": int(worst["rows"]),
    }
    learned = f"learned: {bound.describe(k)} of {reference.chunk_rows_} reference rows"
    if worst["rows"] < reference.chunk_rows_:
        learned += f", widened by sqrt({reference.chunk_rows_}/{int(worst['rows'])})"
    if verdict is GateVerdict.PASS:
        reason = (
            f"every judged metric within its warn bound; closest {worst['metric']} "
            f"{value:.4g} on {group} (warn bound {applied:.4g}, {learned})"
        )
    else:
        side = "below" if bound.higher_is_better else "above"
        level = "error" if blocks else "warn"
        reason = (
            f"{worst['metric']} {value:.4g} on {group} is {side} its {level} bound "
            f"{applied:.4g} ({learned})"
        )
    return GateResult(gate, verdict, reason, metrics, {"warn": warn, "error": error})


def _kind(table: pd.DataFrame) -> str:
    if "kind" in table.columns and len(table):
        return str(table["kind"].iloc[0])
    return "realized"


def evaluate_disagreement(
    estimated: pd.DataFrame, realized: pd.DataFrame, policy: PerformancePolicy
) -> GateResult:
    """Does CBPE agree with the labels? Compares ROC AUC of each model version's "all" row
    (realized rows with at least min_labelled_rows labels). Disagreement beyond the tolerance
    WARNs (the estimate's assumption, no concept drift, may not hold), it does not block;
    nothing to compare BLOCKs."""
    gate, metric = "estimation_agreement", "roc_auc"
    threshold = {"tolerance": policy.disagreement_tolerance}
    for name, table in (("estimated", estimated), ("realized", realized)):
        if metric not in table.columns:
            reason = f"the {name} table has no {metric} to compare"
            return GateResult(gate, GateVerdict.BLOCK, reason, {"compared": 0}, threshold)
    keys = ["model_version", "segment"]
    both = estimated.loc[estimated["segment"] == ALL, [*keys, metric]].merge(
        realized.loc[realized["segment"] == ALL, [*keys, "rows", metric]],
        on=keys,
        suffixes=("_estimated", "_realized"),
    )
    both = both[
        both[f"{metric}_estimated"].notna()
        & both[f"{metric}_realized"].notna()
        & (both["rows"] >= policy.min_labelled_rows)
    ]
    if both.empty:
        reason = (
            f"no model version has both an estimated and a realized {metric} "
            f"(realized on at least {policy.min_labelled_rows} labelled rows) to compare"
        )
        return GateResult(gate, GateVerdict.BLOCK, reason, {"compared": 0}, threshold)
    gap = both[f"{metric}_estimated"].astype(float) - both[f"{metric}_realized"].astype(float)
    worst = both.loc[gap.abs().idxmax()]
    difference = float(abs(gap.loc[gap.abs().idxmax()]))
    metrics = {
        "model_version": str(worst["model_version"]),
        "estimated": float(worst[f"{metric}_estimated"]),
        "realized": float(worst[f"{metric}_realized"]),
        "difference": difference,
        "compared": len(both),
    }
    described = (
        f"{metric} on {group_label(worst['model_version'], ALL)}: "
        f"estimated {metrics['estimated']:.4f}, "
        f"realized {metrics['realized']:.4f} (|difference| {difference:.4f})"
    )
    if difference > policy.disagreement_tolerance:
        reason = (
            f"{described} exceeds the tolerance {policy.disagreement_tolerance}: the estimate "
            "may be off (concept drift, or a reference that no longer calibrates the scores)"
        )
        return GateResult(gate, GateVerdict.WARN, reason, metrics, threshold)
    reason = f"{described} within the tolerance {policy.disagreement_tolerance}"
    return GateResult(gate, GateVerdict.PASS, reason, metrics, threshold)


# --- one reference per model version ---------------------------------------------------------
# A day's predictions may come from several versions (a promotion mid-day, a canary): each
# version's rows are judged against the reference of that version, never another's.


def _versions(table: pd.DataFrame, references: Mapping[str, PerformanceReference]) -> list[str]:
    present = set(table["model_version"].astype(str))
    return [v for v in sorted(references) if v in present]


def estimated_table(
    events: pd.DataFrame,
    segments: list[str],
    policy: PerformancePolicy,
    references: Mapping[str, PerformanceReference],
) -> pd.DataFrame:
    """CBPE per version with its own reference, over the events that carry a score (a failed
    request has none); versions without a reference are left out."""
    scored = events[events["score"].notna()]
    versions = _versions(scored, references)
    if not versions:
        raise DataError(
            f"no scored predictions of a version with a performance reference {sorted(references)}"
        )
    tables = [
        performance_table(
            scored[scored["model_version"].astype(str) == v],
            segments,
            policy,
            kind="estimated",
            estimator=references[v],
        )
        for v in versions
    ]
    return pd.concat(tables, ignore_index=True)


def evaluate_versions(
    table: pd.DataFrame,
    references: Mapping[str, PerformanceReference],
    policy: PerformancePolicy,
    *,
    gate: str,
) -> GateResult:
    """Each version's rows against its own reference; the worst judged result decides. A
    version that could not be judged (too few rows) only decides when no version could be:
    a canary with fifty rows must not hide the champion's verdict, nor fake one."""
    if table.empty:
        reason = "no labelled predictions to judge" if _kind(table) == "realized" else "no rows"
        return GateResult(gate, GateVerdict.BLOCK, reason, {"performance_breach": False})
    versions = _versions(table, references)
    if not versions:
        present = sorted(set(table["model_version"].astype(str)))
        reason = f"no performance reference for the versions {present} in this partition"
        return GateResult(gate, GateVerdict.BLOCK, reason, {"performance_breach": False})
    results = [
        evaluate_performance(
            table[table["model_version"].astype(str) == v], references[v], policy, gate=gate
        )
        for v in versions
    ]
    judged = [r for r in results if not (r.blocks and not r.metrics.get("performance_breach"))]
    worst = max(judged or results, key=lambda r: _SEVERITY[r.verdict.value])
    # Which versions breached, so that safe mode acts only on the champion's own breach (the
    # labels of days an older version served keep arriving after a promotion).
    breached = [
        v for v, r in zip(versions, results, strict=True) if r.metrics.get("performance_breach")
    ]
    return dataclasses.replace(
        worst, metrics={**worst.metrics, "breached_versions": ",".join(breached)}
    )


def version_breaches(
    table: pd.DataFrame,
    references: Mapping[str, PerformanceReference],
    policy: PerformancePolicy,
) -> pd.DataFrame:
    """performance_breaches of every version against its own reference (no reference: every
    metric reported as not judged)."""
    frames = [
        performance_breaches(rows, references.get(str(version)), policy)
        for version, rows in table.groupby("model_version", sort=True)
    ]
    if not frames:
        return performance_breaches(table, None, policy)
    return pd.concat(frames, ignore_index=True)
