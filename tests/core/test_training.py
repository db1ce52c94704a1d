"""Candidate training, time-ordered holdout and the training data hash."""

import numpy as np
import pandas as pd
import pytest

from orchestrator.core.errors import DataError
from orchestrator.core.training import data_hash, evaluate_model, split_holdout, train_candidate


def labelled(spec, n=600, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC"),
            "x1": x1,
            "x2": rng.normal(size=n),
            "x3": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue"], n),
            "shop": rng.choice(["a", "b"], n),
            "label": (x1 + rng.normal(scale=0.5, size=n) > 0).astype(int),
        }
    )


def test_holdout_is_the_most_recent_rows(spec):
    frame = labelled(spec).sample(frac=1.0, random_state=1)
    train, holdout = split_holdout(frame, spec, 0.25)
    assert len(holdout) == 150
    assert train["timestamp"].max() < holdout["timestamp"].min()


def test_candidate_learns_signal(spec):
    train, holdout = split_holdout(labelled(spec), spec, 0.3)
    metrics = evaluate_model(train_candidate(train, spec), holdout, spec)
    assert metrics["roc_auc"] > 0.85
    assert set(metrics) == {"roc_auc", "accuracy", "log_loss", "rows"}


def test_single_class_split_is_refused(spec):
    frame = labelled(spec).assign(label=0)
    with pytest.raises(DataError, match="fewer than two classes"):
        split_holdout(frame, spec, 0.3)


def test_data_hash_changes_with_content(spec):
    frame = labelled(spec)
    assert data_hash(frame) == data_hash(frame.copy())
    changed = frame.copy()
    changed.loc[0, "x1"] += 1
    assert data_hash(changed) != data_hash(frame)
