"""Configuration is validated and errors name the field."""

import pytest
from pydantic import ValidationError

from tests.conftest import small_spec


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"name": "Churn-Model"}, "lower_snake_case"),
        ({"segments": ["nope"]}, "segments: ['nope'] are not declared"),
        ({"reference_window": ["2026-01-05", "2026-01-01"]}, "reference_window"),
        ({"partitions_start": "01/01/2026"}, "not a date in YYYY-MM-DD"),
        ({"retrain": {"holdout_fraction": 1.5}}, "holdout_fraction must be between"),
        ({"retrain": {"cooldown": 3}}, "cooldown\n  Extra inputs are not permitted"),
        ({"drift": {"thresholds": {"psi": {"warn": 0.3, "error": 0.1}}}}, "must not exceed"),
        ({"drift": {"numerical_methods": ["psy"]}}, "unknown drift method 'psy'"),
        ({"approval": {"approvers": []}}, "at least one approver"),
        ({"telemetry": {"pii": ["trace_id"]}}, "'trace_id' is a field of the prediction-event"),
        ({"telemetry": {"identifiers": ["subject"]}}, "'subject' is a field"),  # subject_hash
        ({"telemetry": {"identifiers": ["email"], "pii": ["email"]}}, "both as identifiers"),
        ({"telemetry": {"pii": ["x1"]}}, "['x1'] are model features"),
        ({"telemetry": {"sla": {"limits": {"p95": {"warn": 1, "error": 2}}}}}, "unknown SLA"),
        ({"performance": {"task": "regression", "metrics": ["roc_auc"]}}, "do not apply to"),
        ({"performance": {"warn_k": 4, "error_k": 3}}, "must not exceed error_k"),
    ],
)
def test_invalid_configuration_names_the_problem(override, message):
    with pytest.raises(ValidationError) as error:
        small_spec(**override)
    assert message in str(error.value)


def test_feature_contract_must_match_its_kind():
    features = [{"name": "c", "kind": "categorical", "min_value": 0}]
    with pytest.raises(ValidationError, match="apply to numerical only"):
        small_spec(features=features, segments=[])


def test_partial_thresholds_keep_the_documented_defaults():
    spec = small_spec(drift={"thresholds": {"psi": {"warn": 0.2, "error": 0.4}}})
    assert spec.drift.thresholds["psi"].error == 0.4
    assert spec.drift.thresholds["ks"].error == 0.2
