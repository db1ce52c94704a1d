"""Gates fail closed: missing or unjudgeable evidence is BLOCK with a reason."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from orchestrator.core.drift import DriftDetector, DriftSpec
from orchestrator.core.gates import (
    ExpectationFailure,
    GateVerdict,
    evaluate_candidate,
    evaluate_contract,
    evaluate_drift,
    evaluate_freshness,
)
from orchestrator.core.spec import FeatureKind, FreshnessPolicy, RetrainPolicy


@pytest.fixture(scope="module")
def fitted() -> DriftDetector:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(list("ab"), 2000)})
    columns = {"x": FeatureKind.NUMERICAL, "c": FeatureKind.CATEGORICAL}
    return DriftDetector(DriftSpec(columns=columns)).fit(reference)


def test_missing_column_blocks(fitted):
    current = pd.DataFrame({"x": np.random.default_rng(4).normal(size=500)})
    result = evaluate_drift(fitted.compare(current))
    assert result.verdict is GateVerdict.BLOCK
    assert "'c'" in result.reason


def test_empty_partition_blocks(fitted):
    result = evaluate_drift(fitted.compare(pd.DataFrame({"x": [], "c": []})))
    assert result.verdict is GateVerdict.BLOCK
    assert "cannot judge" in result.reason


def test_all_nan_column_blocks(fitted):
    rng = np.random.default_rng(5)
    current = pd.DataFrame({"x": np.full(500, np.nan), "c": rng.choice(list("ab"), 500)})
    result = evaluate_drift(fitted.compare(current))
    assert result.verdict is GateVerdict.BLOCK
    assert result.metrics["worst_column"] == "x"


def test_no_report_blocks():
    assert evaluate_drift(None).verdict is GateVerdict.BLOCK


def test_clean_partition_passes_and_carries_the_threshold_applied(fitted):
    rng = np.random.default_rng(6)
    current = pd.DataFrame({"x": rng.normal(size=2000), "c": rng.choice(list("ab"), 2000)})
    result = evaluate_drift(fitted.compare(current))
    assert result.verdict is GateVerdict.PASS
    assert set(result.threshold) == {"warn", "error"}


def test_freshness():
    policy = FreshnessPolicy(max_age_hours=30)
    end = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert evaluate_freshness(None, end, policy).verdict is GateVerdict.BLOCK
    assert evaluate_freshness(end, end + dt.timedelta(hours=2), policy).verdict is GateVerdict.PASS
    stale = evaluate_freshness(end, end + dt.timedelta(hours=31), policy)
    assert stale.verdict is GateVerdict.BLOCK and "31.0 h" in stale.reason
    assert stale.threshold == {"max_age_hours": 30}


def test_contract():
    assert evaluate_contract(0, []).verdict is GateVerdict.BLOCK
    failure = ExpectationFailure("expect_column_values_to_be_in_set", "color", "['purple']")
    blocked = evaluate_contract(10, [failure])
    assert blocked.verdict is GateVerdict.BLOCK and "color" in blocked.reason
    assert evaluate_contract(10, []).verdict is GateVerdict.PASS


@pytest.mark.parametrize(
    ("candidate", "champion", "verdict"),
    [
        ({"roc_auc": 0.80}, {"roc_auc": 0.80}, GateVerdict.PASS),
        ({"roc_auc": 0.795}, {"roc_auc": 0.80}, GateVerdict.PASS),  # within tolerance 0.01
        ({"roc_auc": 0.78}, {"roc_auc": 0.80}, GateVerdict.BLOCK),
        (None, {"roc_auc": 0.80}, GateVerdict.BLOCK),
        ({"roc_auc": float("nan")}, None, GateVerdict.BLOCK),
        ({"roc_auc": 0.7}, {}, GateVerdict.BLOCK),  # champion exists but could not be scored
        ({"roc_auc": 0.7}, None, GateVerdict.PASS),  # first model: above min_metric 0.6
        ({"roc_auc": 0.55}, None, GateVerdict.BLOCK),
    ],
)
def test_candidate_evaluation(candidate, champion, verdict):
    policy = RetrainPolicy(evaluation_tolerance=0.01, min_metric=0.6)
    assert evaluate_candidate(candidate, champion, policy).verdict is verdict
