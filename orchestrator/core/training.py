"""Training data preparation, the candidate pipeline, and its evaluation (scikit-learn)."""

import hashlib
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from orchestrator.core.errors import DataError
from orchestrator.core.spec import FeatureKind, MonitoredModelSpec


def build_pipeline(spec: MonitoredModelSpec) -> Pipeline:
    """Impute, scale/one-hot, logistic regression: a robust baseline that trains in a second."""
    numerical = [f.name for f in spec.features if f.kind is FeatureKind.NUMERICAL]
    categorical = [f.name for f in spec.features if f.kind is FeatureKind.CATEGORICAL]
    preprocess = ColumnTransformer(
        [
            (
                "numerical",
                make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
                numerical,
            ),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="__missing__"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                categorical,
            ),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("classifier", LogisticRegression(max_iter=1000))])


def _categoricals_as_object(frame: pd.DataFrame, spec: MonitoredModelSpec) -> pd.DataFrame:
    """scikit-learn's imputer wants object columns, not pandas' string dtype, for categories."""
    converted = frame[spec.feature_names].copy()
    for f in spec.features:
        if f.kind is FeatureKind.CATEGORICAL:
            column = converted[f.name].astype(object)
            converted[f.name] = column.where(column.notna(), np.nan)
    return converted


def split_holdout(
    frame: pd.DataFrame, spec: MonitoredModelSpec, fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out the most recent `fraction` of rows: evaluation looks at the newest data."""
    ordered = frame.sort_values(spec.timestamp_column, kind="stable")
    cut = int(round(len(ordered) * (1 - fraction)))
    train, holdout = ordered.iloc[:cut], ordered.iloc[cut:]
    for part, name in ((train, "training"), (holdout, "holdout")):
        if part[spec.label_column].nunique() < 2:
            raise DataError(f"the {name} split has {len(part)} rows and fewer than two classes")
    return train, holdout


def train_candidate(train: pd.DataFrame, spec: MonitoredModelSpec) -> Pipeline:
    pipeline = build_pipeline(spec)
    pipeline.fit(_categoricals_as_object(train, spec), train[spec.label_column].astype(int))
    return pipeline


def score_model(model: Pipeline, frame: pd.DataFrame, spec: MonitoredModelSpec) -> np.ndarray:
    """The model's output per row: the positive-class probability of a classifier, the value
    of a regressor."""
    inputs = _categoricals_as_object(frame, spec)
    if spec.performance.task == "regression":
        return np.asarray(model.predict(inputs), dtype=float)
    return model.predict_proba(inputs)[:, 1]


def evaluate_model(model: Pipeline, holdout: pd.DataFrame, spec: MonitoredModelSpec) -> dict:
    """Binary-classification metrics on `holdout`: roc_auc, accuracy, log_loss."""
    y = holdout[spec.label_column].astype(int).to_numpy()
    scores = score_model(model, holdout, spec)
    return {
        "roc_auc": float(roc_auc_score(y, scores)),
        "accuracy": float(accuracy_score(y, scores >= 0.5)),
        "log_loss": float(log_loss(y, scores, labels=[0, 1])),
        "rows": float(len(y)),
    }


def data_hash(frame: pd.DataFrame) -> str:
    """Content hash of a training set (row order included), for lineage tags."""
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(row_hashes.tobytes()).hexdigest()[:16]


def prefixed(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    return {f"{prefix}{k}": v for k, v in metrics.items()}
