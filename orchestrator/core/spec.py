"""MonitoredModelSpec: everything one monitored model is configured with.

The same pydantic models back the Dagster Component's YAML (`orchestrator/defs/<model>/defs.yaml`),
so a typo or an invalid value fails when definitions load, with the field named.
"""

import datetime as dt
import re
from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _iso_date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as e:
        raise ValueError(f"{value!r} is not a date in YYYY-MM-DD form") from e


def date_range(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every day from `first` to `last`, both included (empty when last < first)."""
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


class _Strict(BaseModel):
    """Forbids unknown fields and checks numeric bounds declared in `_bounds`.

    Bounds are checked by a validator rather than with `Field(ge=...)` because Dagster's
    component schema derivation rejects constrained (Annotated) fields in nested models.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    _bounds: ClassVar[dict[str, tuple[float, float]]] = {}

    @model_validator(mode="after")
    def _within_bounds(self) -> "_Strict":
        for field_name, (low, high) in self._bounds.items():
            value = getattr(self, field_name)
            if not low <= value <= high:
                raise ValueError(f"{field_name} must be between {low} and {high}, got {value}")
        return self


class FeatureKind(StrEnum):
    NUMERICAL = "numerical"
    CATEGORICAL = "categorical"


class FeatureSpec(_Strict):
    """One model input column and its data contract."""

    name: str
    kind: FeatureKind
    min_value: float | None = None
    max_value: float | None = None
    allowed_values: list[str] | None = Field(
        default=None, description="Closed category set; omit for open sets (drift still watches)."
    )
    max_null_fraction: float = 0.0

    _bounds = {"max_null_fraction": (0.0, 1.0)}

    @model_validator(mode="after")
    def _kind_matches_contract(self) -> "FeatureSpec":
        if self.kind is FeatureKind.CATEGORICAL and (
            self.min_value is not None or self.max_value is not None
        ):
            raise ValueError(f"feature {self.name!r}: min_value/max_value apply to numerical only")
        if self.kind is FeatureKind.NUMERICAL and self.allowed_values is not None:
            raise ValueError(f"feature {self.name!r}: allowed_values applies to categorical only")
        if (
            self.min_value is not None
            and self.max_value is not None
            and self.min_value > self.max_value
        ):
            raise ValueError(f"feature {self.name!r}: min_value is greater than max_value")
        return self


class Threshold(_Strict):
    """Effect-size levels: a statistic at or above `warn` warns, at or above `error` blocks."""

    warn: float
    error: float

    @model_validator(mode="after")
    def _ordered(self) -> "Threshold":
        if min(self.warn, self.error) < 0:
            raise ValueError("warn and error must be non-negative")
        if self.warn > self.error:
            raise ValueError(f"warn ({self.warn}) must not exceed error ({self.error})")
        return self


def _default_thresholds() -> dict[str, Threshold]:
    # Defaults and why (effect sizes, so the verdict does not flip with sample size):
    # - psi 0.1/0.25: the credit-risk convention (<0.1 stable, 0.1-0.25 moderate, >0.25 major).
    # - jensen_shannon 0.1/0.2 (distance, base 2): ~PSI 0.1 for small shifts is JS ~0.11.
    # - wasserstein 0.1/0.2 (in reference std units): 0.1 sigma is Evidently's default.
    # - ks 0.1/0.2 (max CDF gap): a 0.25-sigma mean shift of a normal gives D ~0.1.
    # - chi_square 0.1/0.25 (Cohen's w of the goodness-of-fit test): 0.1 is Cohen's "small"
    #   effect, 0.3 his "medium".
    # - unseen_share 0.01/0.05: 1% of rows in categories the model never saw is worth a look.
    # - null_rate 0.02/0.05 (absolute change of the null fraction).
    return {
        "psi": Threshold(warn=0.1, error=0.25),
        "jensen_shannon": Threshold(warn=0.1, error=0.2),
        "wasserstein": Threshold(warn=0.1, error=0.2),
        "ks": Threshold(warn=0.1, error=0.2),
        "chi_square": Threshold(warn=0.1, error=0.25),
        "unseen_share": Threshold(warn=0.01, error=0.05),
        "null_rate": Threshold(warn=0.02, error=0.05),
    }


class Alpha(_Strict):
    """Significance levels for the opt-in p-value methods, after Benjamini-Hochberg correction:
    an adjusted p-value at or below `warn` warns, at or below `error` blocks."""

    warn: float = 0.05
    error: float = 0.01

    @model_validator(mode="after")
    def _ordered(self) -> "Alpha":
        if not 0 < self.error <= self.warn < 1:
            raise ValueError(f"need 0 < error ({self.error}) <= warn ({self.warn}) < 1")
        return self


class LearnedThresholds(_Strict):
    """Thresholds learned from the reference instead of fixed ones (NannyML's default):
    the reference is cut into `chunks`, each chunk is compared with the rest, and a method
    warns beyond mean + warn_k * std of those statistics and blocks beyond mean + error_k * std.

    The learned levels fit windows of about one chunk's size: choose `chunks` so that
    reference rows / chunks is near the rows of a monitored window.
    """

    chunks: int = 10
    warn_k: float = 2.0
    error_k: float = 3.0
    methods: list[str] = ["psi", "jensen_shannon", "wasserstein", "ks", "chi_square"]

    _bounds = {"chunks": (3, 1000), "warn_k": (0.0, 100.0), "error_k": (0.0, 100.0)}

    @model_validator(mode="after")
    def _ordered(self) -> "LearnedThresholds":
        if self.warn_k > self.error_k:
            raise ValueError(f"warn_k ({self.warn_k}) must not exceed error_k ({self.error_k})")
        return self


class Persistence(_Strict):
    """A column counts as drifted at error level only after `m` of the last `n` windows
    breached it; a single breach before that is reported as a warning."""

    m: int = 1
    n: int = 1

    _bounds = {"m": (1, 365), "n": (1, 365)}

    @model_validator(mode="after")
    def _m_within_n(self) -> "Persistence":
        if self.m > self.n:
            raise ValueError(f"m ({self.m}) must not exceed n ({self.n})")
        return self


class MultivariatePolicy(_Strict):
    """The domain classifier: a model that tries to tell current rows from reference rows.

    A cross-validated AUROC near 0.5 means it cannot; outside the error band, the joint
    distribution changed, even when no single column did (a changed correlation). The bands
    are two-sided, as NannyML's: an AUROC below the low end is judged as well.
    """

    enabled: bool = False
    sample_rows: int = 5000
    folds: int = 5
    warn_band: tuple[float, float] = (0.45, 0.60)
    error_band: tuple[float, float] = (0.45, 0.65)
    min_rows: int = 500
    seed: int = 0

    # Bounds are checked by validators, not Field(ge=...), for the same reason as spec._Strict:
    # Dagster's component schema derivation rejects constrained fields in nested models.
    @field_validator("warn_band", "error_band")
    @classmethod
    def _ordered_band(cls, band: tuple[float, float], info) -> tuple[float, float]:
        low, high = band
        if not 0.0 <= low < high <= 1.0:
            raise ValueError(f"{info.field_name} must satisfy 0 <= low < high <= 1, got {band}")
        return band

    @model_validator(mode="after")
    def _within_bounds(self) -> "MultivariatePolicy":
        if not 2 <= self.folds <= 20:
            raise ValueError(f"folds must be between 2 and 20, got {self.folds}")
        if self.sample_rows < 100:
            raise ValueError(f"sample_rows must be at least 100, got {self.sample_rows}")
        # Stratified folds need at least `folds` rows of each side.
        if self.min_rows < self.folds:
            raise ValueError(f"min_rows must be at least folds ({self.folds}), got {self.min_rows}")
        (warn_low, warn_high), (error_low, error_high) = self.warn_band, self.error_band
        if not error_low <= warn_low < warn_high <= error_high:
            raise ValueError(
                f"error_band {self.error_band} must contain warn_band {self.warn_band}"
            )
        return self


class DriftPolicy(_Strict):
    """Which drift methods run per feature kind, the thresholds they apply, and the rules that
    keep the check quiet unless something changed."""

    numerical_methods: list[str] = ["psi", "jensen_shannon", "wasserstein", "ks", "null_rate"]
    categorical_methods: list[str] = ["chi_square", "jensen_shannon", "unseen_share", "null_rate"]
    thresholds: dict[str, Threshold] = Field(default_factory=_default_thresholds)
    alpha: Alpha = Field(default_factory=Alpha)
    learned_thresholds: LearnedThresholds | None = None
    bins: int = 10
    top_categories: int = Field(
        default=100, description="categories tracked by name; rarer ones count as other"
    )
    min_rows: int = 1000
    window_days: int = Field(default=1, description="days merged into one compared window")
    persistence: Persistence = Field(default_factory=Persistence)
    segment_crosses: list[list[str]] = Field(
        default=[], description="combinations of segment columns judged as segments of their own"
    )
    max_segments: int = Field(default=50, description="values per segment column judged apart")
    min_segment_rows: int = 1000
    multivariate: MultivariatePolicy = Field(default_factory=MultivariatePolicy)

    _bounds = {
        "bins": (2, 100),
        "top_categories": (1, 10_000),
        "min_rows": (1, 1e12),
        "window_days": (1, 366),
        "max_segments": (1, 1000),
        "min_segment_rows": (1, 1e12),
    }

    @field_validator("thresholds", mode="before")
    @classmethod
    def _merge_with_defaults(cls, value: dict) -> dict:
        return {**_default_thresholds(), **(value or {})}

    @model_validator(mode="after")
    def _methods_known(self) -> "DriftPolicy":
        if not self.numerical_methods or not self.categorical_methods:
            raise ValueError("numerical_methods and categorical_methods need one method each")
        # The registry lives with the statistics; imported here, at validation time, not at import.
        from orchestrator.core.drift import METHODS, get_method

        for kind, names in (
            (FeatureKind.NUMERICAL, self.numerical_methods),
            (FeatureKind.CATEGORICAL, self.categorical_methods),
        ):
            for name in names:
                get_method(name, kind)
        effect_sizes = sorted(n for n, m in METHODS.items() if not m.p_value)
        unknown = sorted(set(self.thresholds) - set(effect_sizes))
        if unknown:
            raise ValueError(
                f"thresholds for unknown methods {unknown}; valid: {effect_sizes} "
                "(p-value methods use alpha)"
            )
        if self.learned_thresholds is not None:
            unknown = sorted(set(self.learned_thresholds.methods) - set(effect_sizes))
            if unknown:
                raise ValueError(
                    f"learned_thresholds.methods: unknown {unknown}; valid: {effect_sizes}"
                )
        return self


class FreshnessPolicy(_Strict):
    """The newest partition must have ended no more than `max_age_hours` ago."""

    max_age_hours: float = 30.0

    _bounds = {"max_age_hours": (1e-6, 1e6)}


class RetrainPolicy(_Strict):
    """Guards on the retrain sensor and the evaluation gate the candidate must pass."""

    cooldown_days: int = 7
    budget_per_30_days: int = 2
    min_new_labelled_rows: int = 1000
    training_window_days: int = 7
    holdout_fraction: float = 0.25
    metric: Literal["roc_auc", "accuracy"] = "roc_auc"  # both: higher is better
    evaluation_tolerance: float = 0.01
    min_metric: float = 0.6

    _bounds = {
        "cooldown_days": (0, 3650),
        "budget_per_30_days": (1, 1000),
        "min_new_labelled_rows": (0, 1e12),
        "training_window_days": (1, 3650),
        "holdout_fraction": (0.01, 0.99),
        "evaluation_tolerance": (0.0, 1.0),
        "min_metric": (0.0, 1.0),
    }


class ApprovalPolicy(_Strict):
    """Who may approve a candidate, how many must, and whether its trainer may be one of them.

    `approvers` lists names and groups (`group:<name>`, members under `groups`). A version is
    approved once `required_approvals` distinct eligible people approved it and nobody
    rejected it; an approval lapses when a gate of the version is evaluated again and fails.
    """

    approvers: list[str]
    groups: dict[str, list[str]] = {}
    required_approvals: int = 1
    separation_of_duties: bool = True

    _bounds = {"required_approvals": (1, 100)}

    @model_validator(mode="after")
    def _groups_known(self) -> "ApprovalPolicy":
        unknown = [a for a in self.approvers if a.startswith("group:") and a[6:] not in self.groups]
        if unknown:
            raise ValueError(f"approvers: {unknown} name groups not defined under groups")
        if self.approvers and self.required_approvals > len(self.eligible):
            raise ValueError(
                f"required_approvals ({self.required_approvals}) exceeds the "
                f"{len(self.eligible)} eligible approvers {sorted(self.eligible)}"
            )
        return self

    @property
    def eligible(self) -> set[str]:
        """Every person who may approve: named approvers and members of named groups."""
        people = set()
        for entry in self.approvers:
            people |= set(self.groups[entry[6:]]) if entry.startswith("group:") else {entry}
        return people


class SafeModePolicy(_Strict):
    """Automatic rollback: when the champion's performance check fails at error level after
    it was promoted, champion goes back to the version it replaced (audited, run by Dagster).
    """

    enabled: bool = False
    check: str | None = Field(
        default=None,
        description='the champion\'s performance check as "<asset/key>:<check name>"',
    )

    @model_validator(mode="after")
    def _check_named(self) -> "SafeModePolicy":
        if self.enabled and not self.check:
            raise ValueError("check: safe mode needs the performance check to watch")
        if self.check is not None and (":" not in self.check or self.check.startswith(":")):
            raise ValueError(f"check: {self.check!r} is not '<asset/key>:<check name>'")
        return self

    @property
    def asset_path(self) -> list[str]:
        return self.check.split(":", 1)[0].split("/")

    @property
    def check_name(self) -> str:
        return self.check.split(":", 1)[1]


SLA_METRICS = (
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "error_rate",
    "timeout_rate",
    "fallback_rate",
)


def _default_sla_limits() -> dict[str, Threshold]:
    # p95 within 200 ms and 1% errors are the service levels most serving teams start from;
    # the error levels are where users notice (half a second, one request in twenty).
    return {
        "latency_p95_ms": Threshold(warn=200.0, error=500.0),
        "error_rate": Threshold(warn=0.01, error=0.05),
        "timeout_rate": Threshold(warn=0.01, error=0.05),
    }


class SLAPolicy(_Strict):
    """Service levels, judged per model version and segment on each day's prediction events:
    a metric above `warn` warns, above `error` fails at error level. Metrics left out are
    reported, not judged."""

    limits: dict[str, Threshold] = Field(default_factory=_default_sla_limits)
    min_events: int = Field(
        default=50, description="a version or segment with fewer events is reported, not judged"
    )

    _bounds = {"min_events": (1, 1e12)}

    @field_validator("limits")
    @classmethod
    def _known_metrics(cls, value: dict[str, Threshold]) -> dict[str, Threshold]:
        unknown = sorted(set(value) - set(SLA_METRICS))
        if unknown:
            raise ValueError(f"unknown SLA metrics {unknown}; valid: {list(SLA_METRICS)}")
        return value


# The prediction-event contract's own fields (orchestrator.core.telemetry stores them): a
# declared identifier or pii field may not reuse one, or its raw value could be stored as that
# field, or its hash overwrite another.
EVENT_FIELDS = (
    "schema_version",
    "model_name",
    "model_version",
    "environment",
    "timestamp",
    "request_id",
    "trace_id",
    "latency_ms",
    "status",
    "fallback",
    "subject_id",
    "subject_hash",
    "prediction",
    "score",
    "features",
    "segments",
)


class TelemetryPolicy(_Strict):
    """Prediction events: what they may carry and how the people behind them are protected.

    `identifiers` are fields that identify someone (an account, a device); each is stored only
    as `<name>_hash`, an HMAC-SHA256 keyed with the secret in `$<hmac_key_env>`, as is the
    event's subject (`subject_id` -> `subject_hash`). `pii` fields are dropped before anything
    is written. Any other field outside the contract rejects the event.
    """

    enabled: bool = False
    environment: str = "production"
    identifiers: list[str] = []
    pii: list[str] = []
    hmac_key_env: str = "DRIFTGATE_TELEMETRY_KEY"
    sla: SLAPolicy = Field(default_factory=SLAPolicy)

    @model_validator(mode="after")
    def _fields_distinct(self) -> "TelemetryPolicy":
        both = sorted(set(self.identifiers) & set(self.pii))
        if both:
            raise ValueError(f"fields {both} are declared both as identifiers and as pii")
        for name in [*self.identifiers, *self.pii]:
            if not _NAME.match(name):
                raise ValueError(f"field {name!r} must be lower_snake_case")
            hashed = f"{name}_hash" if name in self.identifiers else name
            if name in EVENT_FIELDS or hashed in EVENT_FIELDS or name.endswith("_hash"):
                raise ValueError(
                    f"field {name!r} is a field of the prediction-event contract (or ends in "
                    "_hash, which driftgate writes); declare the raw field under another name"
                )
        return self


CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "log_loss", "calibration_error")
REGRESSION_METRICS = ("mae", "rmse")


class PerformancePolicy(_Strict):
    """Model quality: realized once delayed labels arrive, estimated (CBPE) before they do.

    Thresholds are learned from the champion's reference: its holdout is cut into
    `reference_chunks`, each chunk is scored, and a metric warns beyond mean -/+ warn_k * std
    and fails beyond mean -/+ error_k * std, on the side where the metric gets worse.
    """

    task: Literal["binary_classification", "regression"] = "binary_classification"
    metrics: list[str] | None = Field(default=None, description="default: every metric of the task")
    decision_threshold: float = Field(
        default=0.5, description="score at or above which a classifier predicts the positive class"
    )
    label_lookback_days: int = Field(
        default=14, description="labels attach to predictions at most this many days older"
    )
    reference_chunks: int = 10
    warn_k: float = 2.0
    error_k: float = 3.0
    min_labelled_rows: int = Field(
        default=200, description="fewer labelled rows in a partition cannot be judged"
    )
    min_segment_rows: int = Field(
        default=200, description="a segment with fewer rows is reported, not judged"
    )
    estimation: bool = Field(
        default=True, description="estimate binary-classifier quality before labels (CBPE)"
    )
    disagreement_tolerance: float = Field(
        default=0.05, description="|estimated - realized| ROC AUC beyond this is flagged"
    )

    _bounds = {
        "decision_threshold": (0.0, 1.0),
        "label_lookback_days": (0, 3650),
        "reference_chunks": (3, 1000),
        "warn_k": (0.0, 100.0),
        "error_k": (0.0, 100.0),
        "min_labelled_rows": (1, 1e12),
        "min_segment_rows": (1, 1e12),
        "disagreement_tolerance": (0.0, 1.0),
    }

    @model_validator(mode="after")
    def _metrics_of_task(self) -> "PerformancePolicy":
        if self.warn_k > self.error_k:
            raise ValueError(f"warn_k ({self.warn_k}) must not exceed error_k ({self.error_k})")
        valid = self.task_metrics
        unknown = sorted(set(self.metrics or []) - set(valid))
        if unknown:
            raise ValueError(f"metrics {unknown} do not apply to {self.task}; valid: {list(valid)}")
        if self.metrics is not None and not self.metrics:
            raise ValueError("metrics: name at least one metric, or leave it out for all")
        return self

    @property
    def task_metrics(self) -> tuple[str, ...]:
        return (
            CLASSIFICATION_METRICS if self.task == "binary_classification" else REGRESSION_METRICS
        )

    @property
    def judged_metrics(self) -> list[str]:
        return list(self.metrics) if self.metrics else list(self.task_metrics)

    @property
    def estimates(self) -> bool:
        return self.estimation and self.task == "binary_classification"


class SourceSpec(_Strict):
    """Where the daily partitions of the feature table land, and the label files."""

    features_path: str = Field(
        description="Parquet path template with {partition}, relative to DRIFTGATE_HOME or absolute"
    )
    labels_path: str = Field(
        description="Parquet path template with {partition}: the labels that arrived that day, "
        "as request id and label, for predictions of that day or up to "
        "performance.label_lookback_days before"
    )


class MonitoredModelSpec(_Strict):
    """One monitored model: its data, its contract, and the policies that guard it."""

    name: str
    description: str = ""
    source: SourceSpec
    partitions_start: str = Field(description="first daily partition, YYYY-MM-DD")
    timestamp_column: str = "timestamp"
    request_id_column: str = "request_id"
    label_column: str = "label"
    features: list[FeatureSpec]
    segments: list[str] = []
    reference_window: list[str] = Field(
        description="[first, last] day (YYYY-MM-DD) of the data the first model is trained on"
    )
    drift: DriftPolicy = Field(default_factory=DriftPolicy)
    freshness: FreshnessPolicy = Field(default_factory=FreshnessPolicy)
    retrain: RetrainPolicy = Field(default_factory=RetrainPolicy)
    approval: ApprovalPolicy
    safe_mode: SafeModePolicy = Field(default_factory=SafeModePolicy)
    telemetry: TelemetryPolicy = Field(default_factory=TelemetryPolicy)
    performance: PerformancePolicy = Field(default_factory=PerformancePolicy)

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower_snake_case (it names assets, jobs and sensors)")
        return value

    @field_validator("partitions_start")
    @classmethod
    def _is_date(cls, value: str) -> str:
        return _iso_date(value).isoformat()

    @field_validator("reference_window")
    @classmethod
    def _is_date_pair(cls, value: list[str]) -> list[str]:
        if len(value) != 2:
            raise ValueError("must be [first, last]")
        return [_iso_date(v).isoformat() for v in value]

    @model_validator(mode="after")
    def _columns_consistent(self) -> "MonitoredModelSpec":
        if not self.features:
            raise ValueError("features: at least one feature is needed")
        if not self.approval.approvers:
            raise ValueError("approval.approvers: at least one approver is needed")
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"features: duplicate names {duplicates}")
        unknown_segments = [s for s in self.segments if s not in names]
        if unknown_segments:
            raise ValueError(f"segments: {unknown_segments} are not declared in features")
        numerical = [s for s in self.segments if self.feature(s).kind is FeatureKind.NUMERICAL]
        if numerical:
            raise ValueError(f"segments: {numerical} are numerical; segments are categorical")
        for cross in self.drift.segment_crosses:
            if len(cross) < 2 or not set(cross) <= set(self.segments):
                raise ValueError(
                    f"drift.segment_crosses: {cross} must name two or more of segments "
                    f"{self.segments}"
                )
        declared = sorted(set(self.telemetry.identifiers + self.telemetry.pii) & set(names))
        if declared:
            raise ValueError(
                f"telemetry: {declared} are model features; identifiers and pii never are"
            )
        first, last = self.reference_dates
        if first > last or first < self.start_date:
            raise ValueError("reference_window: must be [first, last] on or after partitions_start")
        return self

    @property
    def start_date(self) -> dt.date:
        return dt.date.fromisoformat(self.partitions_start)

    @property
    def reference_dates(self) -> tuple[dt.date, dt.date]:
        first, last = self.reference_window
        return dt.date.fromisoformat(first), dt.date.fromisoformat(last)

    @property
    def reference_days(self) -> list[dt.date]:
        return date_range(*self.reference_dates)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureSpec:
        return next(f for f in self.features if f.name == name)
